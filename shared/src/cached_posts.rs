//! Cache-aside reads of posts and the invalidation every write performs.
//!
//! - `post:{id}`: the post (or "not found") at its version, TTL 300 s. Writes leave a tombstone
//!   at the new version, so a slow reader's older fill cannot land (see `cache`).
//! - List pages: `posts:list:{gen}:{page}:{limit}`, TTL 60 s, where `gen` is read from
//!   `posts:list:gen`. A write bumps the generation, which makes every cached page unreachable at
//!   once without KEYS or SCAN; orphaned pages expire on their own. A reader that read the old
//!   generation can only fill a page nobody will read again, which closes the race for lists.

use std::time::Duration;

use crate::cache::{Cache, CacheStatus};
use crate::posts::{Post, PostId, PostPage, PostsError, PostsRepo};

pub const POST_TTL: Duration = Duration::from_secs(300);
pub const LIST_TTL: Duration = Duration::from_secs(60);
pub const LIST_GENERATION_KEY: &str = "posts:list:gen";

pub fn post_key(id: &PostId) -> String {
    format!("post:{id}")
}

pub fn list_key(generation: u64, page: u32, limit: u32) -> String {
    format!("posts:list:{generation}:{page}:{limit}")
}

fn post_version(post: &Option<Post>) -> u64 {
    post.as_ref().map_or(0, |p| p.version)
}

/// Pages are not versioned: the generation in their key does that job.
fn page_version(_: &Option<PostPage>) -> u64 {
    0
}

#[derive(Clone, Debug)]
pub struct CachedPosts {
    pub repo: PostsRepo,
    pub cache: Cache,
}

impl CachedPosts {
    pub fn new(repo: PostsRepo, cache: Cache) -> Self {
        Self { repo, cache }
    }

    /// A post as readers see it: `None` when missing *or unpublished*.
    pub async fn published_post(&self, id: &PostId) -> Result<(Option<Post>, CacheStatus), PostsError> {
        let key = post_key(id);
        let (post, status) = self.cache.get_or_load(&key, POST_TTL, post_version, || self.repo.get(id)).await?;
        Ok((post.filter(|p| p.published), status))
    }

    /// One page of published posts, newest first.
    pub async fn page(&self, page: u32, limit: u32) -> Result<(PostPage, CacheStatus), PostsError> {
        let Some(generation) = self.cache.counter(LIST_GENERATION_KEY).await else {
            // Cache unavailable: skip it entirely rather than pay a second timeout.
            return Ok((self.repo.list_published(page, limit).await?, CacheStatus::Miss));
        };
        let key = list_key(generation, page, limit);
        let (found, status) = self
            .cache
            .get_or_load(&key, LIST_TTL, page_version, || async {
                self.repo.list_published(page, limit).await.map(Some)
            })
            .await?;
        let page = found.ok_or_else(|| PostsError::Malformed("cached list page is empty".into()))?;
        Ok((page, status))
    }

    /// Called after every successful write of `id` that produced `version` (for a delete: the
    /// deleted version + 1). Runs after the database write, never before, so a reader can never
    /// fill from a state older than the tombstone.
    pub async fn invalidate_after_write(&self, id: &PostId, version: u64) {
        self.cache.invalidate_versioned(&post_key(id), version, POST_TTL).await;
        self.cache.bump(LIST_GENERATION_KEY).await;
    }
}
