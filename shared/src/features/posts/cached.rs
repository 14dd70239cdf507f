//! Cache-aside reads of posts and the invalidation every write performs.
//!
//! - `post:{id}`: the post at its version, TTL 300 s, or "absent" at the version of the
//!   tombstone the reader found, TTL 30 s (reads after a delete are hits). Writes leave a
//!   tombstone at the new version, so a slow reader's older fill cannot land (see `cache`).
//! - List pages, TTL 60 s, all under the generation `gen` read from `posts:list:gen`:
//!   `posts:list:{gen}:{limit}:p{page}` for pages asked for by number and
//!   `posts:list:{gen}:{limit}:c:{cursor tag}` for pages asked for by cursor. A write bumps the
//!   generation, which makes every cached page unreachable at once without KEYS or SCAN;
//!   orphaned pages expire on their own. A reader that read the old generation can only fill a
//!   page nobody will read again, which closes the race for lists. The key space per generation
//!   is small: four allowed limits, at most 1,000 / limit numbered pages each, and only cursors
//!   this service signed.
//! - Page `P` by number is read by position too: it starts where page `P - 1` (itself cached,
//!   under the same generation) ended, so a client walking pages in order costs one Query of
//!   `limit + 1` items per page. A cold deep page walks from the nearest cached page before it,
//!   filling each page on the way (collapsed like any fill); `page × limit ≤ 1,000` bounds that.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cache::{Cache, CacheStatus, Ttls};
use crate::deadline::Deadline;
use crate::posts::{Cursors, PUBLISHED_LIST};
use crate::posts::{FeedPosition, FeedSlice, Post, PostId, PostPage, PostSummary, PostsError, PostsRepo};

/// How long a cached post lives: 300 s.
pub const POST_TTL: Duration = Duration::from_secs(300);
/// "No such post" is kept shorter: an id that is absent now is the rarer thing to read often.
pub const ABSENT_TTL: Duration = Duration::from_secs(30);
/// How long a cached list page lives: 60 s (a write makes it unreachable sooner).
pub const LIST_TTL: Duration = Duration::from_secs(60);
/// The Redis counter whose value is the current list generation.
pub const LIST_GENERATION_KEY: &str = "posts:list:gen";

/// The TTLs of `post:{id}`: [`POST_TTL`] for a post, [`ABSENT_TTL`] for "no such post".
pub const POST_TTLS: Ttls = Ttls { value: POST_TTL, absent: ABSENT_TTL };
const LIST_TTLS: Ttls = Ttls { value: LIST_TTL, absent: LIST_TTL };

/// The cache key of one post: `post:{id}`.
pub fn post_key(id: &PostId) -> String {
    format!("post:{id}")
}

/// The cache key of page `page` by number: `posts:list:{generation}:{limit}:p{page}`.
pub fn numbered_page_key(generation: u64, limit: u32, page: u32) -> String {
    format!("posts:list:{generation}:{limit}:p{page}")
}

/// The cache key of the page after `cursor`, named by the cursor's tag rather than the whole cursor.
pub fn cursor_page_key(generation: u64, limit: u32, cursor: &str) -> String {
    format!("posts:list:{generation}:{limit}:c:{}", Cursors::cache_name(cursor))
}

fn post_version(post: &Post) -> u64 {
    post.version
}

/// A page as cached: what is served, plus the position the next page starts at (so the next
/// numbered page needs no cursor check).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CachedPage {
    page: PostPage,
    next: Option<FeedPosition>,
}

/// Pages are not versioned: the generation in their key does that job.
fn page_version(_: &CachedPage) -> u64 {
    0
}

/// The posts table behind its cache: every read and invalidation the posts functions do.
#[derive(Clone, Debug)]
pub struct CachedPosts {
    /// The source of truth, for reads on a miss and for writes.
    pub repo: PostsRepo,
    /// The Redis cache in front of it.
    pub cache: Cache,
}

impl CachedPosts {
    /// Reads of `repo` cached in `cache`.
    pub fn new(repo: PostsRepo, cache: Cache) -> Self {
        Self { repo, cache }
    }

    /// A post as readers see it: `None` when missing *or unpublished*.
    pub async fn published_post(
        &self,
        id: &PostId,
        deadline: Deadline,
    ) -> Result<(Option<Post>, CacheStatus), PostsError> {
        let key = post_key(id);
        let (post, status) =
            self.cache.get_or_load(&key, POST_TTLS, post_version, deadline, || self.repo.get(id)).await?;
        Ok((post.filter(|p| p.published), status))
    }

    /// Page `page` (1-based) of published posts, newest first, `limit` per page. Callers bound
    /// `page × limit`.
    pub async fn page_by_number(
        &self,
        cursors: &Cursors,
        page: u32,
        limit: u32,
        deadline: Deadline,
    ) -> Result<(PostPage, CacheStatus), PostsError> {
        let Some(generation) = self.cache.counter(LIST_GENERATION_KEY).await else {
            // Cache unavailable: skip it entirely rather than pay a timeout per page.
            let mut slice = self.repo.feed_after(None, limit).await?;
            for _ in 1..page {
                slice = match &slice.next {
                    Some(after) => self.repo.feed_after(Some(after), limit).await?,
                    None => FeedSlice { items: Vec::new(), next: None },
                };
            }
            return Ok((served(cursors, slice, limit, Some(page)).page, CacheStatus::Miss));
        };
        let (cached, status) = self.numbered(cursors, generation, page, limit, deadline).await?;
        Ok((cached.page, status))
    }

    /// Numbered page `page` at `generation`: cached, and loaded from where page `page - 1` ends.
    async fn numbered(
        &self,
        cursors: &Cursors,
        generation: u64,
        page: u32,
        limit: u32,
        deadline: Deadline,
    ) -> Result<(CachedPage, CacheStatus), PostsError> {
        let key = numbered_page_key(generation, limit, page);
        let (found, status) = self
            .cache
            .get_or_load(&key, LIST_TTLS, page_version, deadline, || async {
                let after = match self.position_before(cursors, generation, page, limit, deadline).await? {
                    Start::At(after) => after,
                    // Past the end of the list: an empty page, no further reads.
                    Start::PastTheEnd => {
                        let empty = FeedSlice { items: Vec::new(), next: None };
                        return Ok::<_, PostsError>(Some(served(cursors, empty, limit, Some(page))));
                    }
                };
                let slice = self.repo.feed_after(after.as_ref(), limit).await?;
                Ok(Some(served(cursors, slice, limit, Some(page))))
            })
            .await?;
        let cached = found.ok_or_else(|| PostsError::Malformed("cached list page is empty".into()))?;
        Ok((cached, status))
    }

    /// Where numbered page `page` starts: after the last item of page `page - 1`. Looks back for
    /// the nearest page already cached (usually `page - 1`, for a client walking in order), then
    /// fills the pages between it and `page` one Query each, in order. A loop, not a recursion:
    /// page 100 at limit 10 would otherwise nest 100 fills deep.
    async fn position_before(
        &self,
        cursors: &Cursors,
        generation: u64,
        page: u32,
        limit: u32,
        deadline: Deadline,
    ) -> Result<Start, PostsError> {
        let mut known = 0;
        let mut after = None;
        for earlier in (1..page).rev() {
            if let Some(cached) = self.cache.peek::<CachedPage>(&numbered_page_key(generation, limit, earlier)).await {
                match cached.next {
                    Some(next) => after = Some(next),
                    None => return Ok(Start::PastTheEnd),
                }
                known = earlier;
                break;
            }
        }
        for missing in known + 1..page {
            let key = numbered_page_key(generation, limit, missing);
            let from = after.clone();
            let (found, _) = self
                .cache
                .get_or_load(&key, LIST_TTLS, page_version, deadline, || async {
                    let slice = self.repo.feed_after(from.as_ref(), limit).await?;
                    Ok::<_, PostsError>(Some(served(cursors, slice, limit, Some(missing))))
                })
                .await?;
            match found.and_then(|c| c.next) {
                Some(next) => after = Some(next),
                None => return Ok(Start::PastTheEnd),
            }
        }
        Ok(Start::At(after))
    }

    /// The page after `position`, which the caller read from `cursor` (already verified).
    pub async fn page_after(
        &self,
        cursors: &Cursors,
        cursor: &str,
        position: &FeedPosition,
        limit: u32,
        deadline: Deadline,
    ) -> Result<(PostPage, CacheStatus), PostsError> {
        let Some(generation) = self.cache.counter(LIST_GENERATION_KEY).await else {
            let slice = self.repo.feed_after(Some(position), limit).await?;
            return Ok((served(cursors, slice, limit, None).page, CacheStatus::Miss));
        };
        let key = cursor_page_key(generation, limit, cursor);
        let (found, status) = self
            .cache
            .get_or_load(&key, LIST_TTLS, page_version, deadline, || async {
                let slice = self.repo.feed_after(Some(position), limit).await?;
                Ok::<_, PostsError>(Some(served(cursors, slice, limit, None)))
            })
            .await?;
        let cached = found.ok_or_else(|| PostsError::Malformed("cached list page is empty".into()))?;
        Ok((cached.page, status))
    }

    /// Called after every successful write of `id` that produced `version` (for a delete: the
    /// deleted version + 1). Runs after the database write, never before, so a reader can never
    /// fill from a state older than the tombstone.
    pub async fn invalidate_after_write(&self, id: &PostId, version: u64) {
        self.cache.invalidate_versioned(&post_key(id), version, POST_TTL).await;
        self.bump_lists().await;
    }

    /// Makes every cached list page unreachable (a new generation).
    pub async fn bump_lists(&self) {
        self.cache.bump(LIST_GENERATION_KEY).await;
    }
}

/// Where a numbered page starts.
enum Start {
    At(Option<FeedPosition>),
    PastTheEnd,
}

fn served(cursors: &Cursors, slice: FeedSlice, limit: u32, page: Option<u32>) -> CachedPage {
    let next_cursor = slice.next.as_ref().map(|p| cursors.issue(PUBLISHED_LIST, limit, p));
    CachedPage {
        page: PostPage {
            items: slice.items.iter().map(PostSummary::of).collect(),
            limit,
            page,
            has_more: next_cursor.is_some(),
            next_cursor,
        },
        next: slice.next,
    }
}
