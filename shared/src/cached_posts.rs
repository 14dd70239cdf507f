//! Cache-aside reads of posts: `post:{id}` (TTL 300 s) and list pages (TTL 60 s).
//!
//! List keys carry a generation, `posts:list:{gen}:{page}:{limit}`, read from `posts:list:gen`.
//! A write bumps the generation, which makes every cached page unreachable at once without
//! KEYS or SCAN; the orphaned pages expire on their own TTL.

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
        let (post, status) = self.cache.get_or_load(&key, POST_TTL, || self.repo.get(id)).await?;
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
            .get_or_load(&key, LIST_TTL, || async { self.repo.list_published(page, limit).await.map(Some) })
            .await?;
        let page = found.ok_or_else(|| PostsError::Malformed("list loader returned nothing".into()))?;
        Ok((page, status))
    }
}
