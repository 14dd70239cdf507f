//! Creating, changing and deleting posts: validation into typed input, conditional writes, and
//! the cache invalidation that follows every successful write.
//!
//! Lists and the index lag: `byFeed` is a GSI, updated asynchronously after the table write. The
//! list generation is bumped right after the write (cached pages go at once), but a reader in
//! the gap before the index catches up would read the pre-write page and cache it under the new
//! generation. So a write that changes the list then reads the post back through the index
//! (a few ms when it has caught up, polled up to `POSTS_INDEX_WAIT_MS`) and bumps the
//! generation again: what was cached in the gap becomes unreachable before the write answers.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::UserId;
use crate::clock::timestamp_now;
use crate::config::EnvReader;
use crate::deadline::Deadline;
use crate::posts::CachedPosts;
use crate::posts::{Post, PostChanges, PostId, WriteError};

/// Longest title accepted, in characters.
pub const TITLE_MAX_CHARS: usize = 200;
/// Largest body accepted, in bytes of UTF-8 (50 KiB).
pub const BODY_MAX_BYTES: usize = 50 * 1024;

/// One invalid field of a request body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The JSON member at fault (`title`, an unknown name, ...), or `""` for the body as a whole.
    pub field: String,
    /// What is wrong with it, for the client.
    pub message: String,
}

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.to_owned(), message: message.into() }
}

/// All the problems of a body, so a client can fix them in one round.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid fields: {0:?}")]
pub struct InvalidFields(pub Vec<FieldError>);

/// A validated `POST /posts` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPost {
    /// 1 to [`TITLE_MAX_CHARS`] characters, not blank, no control or invisible characters.
    pub title: String,
    /// At most [`BODY_MAX_BYTES`], no invisible characters, no control characters but tab and
    /// newline.
    pub body: String,
    /// Whether readers see it; `false` when the body leaves it out.
    pub published: bool,
}

const FIELDS: [&str; 3] = ["title", "body", "published"];

fn object(value: &Value) -> Result<&Map<String, Value>, InvalidFields> {
    value.as_object().ok_or_else(|| InvalidFields(vec![field_error("", "the body must be a JSON object")]))
}

fn check_title(v: &Value, errors: &mut Vec<FieldError>) -> Option<String> {
    let Some(t) = v.as_str() else {
        errors.push(field_error("title", "must be a string"));
        return None;
    };
    let chars = t.chars().count();
    if t.trim().is_empty() || chars > TITLE_MAX_CHARS {
        errors.push(field_error("title", format!("must be 1 to {TITLE_MAX_CHARS} characters, not blank")));
    } else if t.chars().any(char::is_control) {
        errors.push(field_error("title", "must not contain control characters (CR, LF, ...)"));
    } else if let Some(message) = invisible_message(t) {
        errors.push(field_error("title", message));
    } else {
        return Some(t.to_owned());
    }
    None
}

fn check_body(v: &Value, errors: &mut Vec<FieldError>) -> Option<String> {
    match v.as_str() {
        None => errors.push(field_error("body", "must be a string")),
        Some(b) if b.len() > BODY_MAX_BYTES => {
            errors.push(field_error("body", format!("must be at most {BODY_MAX_BYTES} bytes (is {})", b.len())))
        }
        Some(b) => match control_message(b).or_else(|| invisible_message(b)) {
            Some(message) => errors.push(field_error("body", message)),
            None => return Some(b.to_owned()),
        },
    }
    None
}

/// Control characters in a body: only tab and newline are text. The others (CR, NUL, ESC,
/// the C1 range, ...) print as nothing or garbage and cost up to 7 bytes each in a response
/// (see `docs/limits.md`), so they are refused with the position of the first one.
fn control_message(text: &str) -> Option<String> {
    crate::text::first_control(text, &['\t', '\n']).map(|(at, c)| {
        format!(
            "must not contain control characters other than tab and newline: U+{:04X} at character {}",
            c as u32,
            at + 1
        )
    })
}

/// Bidi controls can make a title or a body read differently from what it says (the
/// "Trojan Source" trick), and zero-width characters hide text or make look-alike titles; both
/// are refused with the position of the first one, using the same list as upload filenames.
fn invisible_message(text: &str) -> Option<String> {
    crate::text::first_invisible(text).map(|(at, c)| {
        format!(
            "must not contain invisible formatting characters (bidi controls, zero-width characters): U+{:04X} at character {}",
            c as u32,
            at + 1
        )
    })
}

fn check_published(v: &Value, errors: &mut Vec<FieldError>) -> Option<bool> {
    let p = v.as_bool();
    if p.is_none() {
        errors.push(field_error("published", "must be true or false"));
    }
    p
}

fn unknown_fields(map: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    for key in map.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        errors.push(field_error(key, "unknown field"));
    }
}

impl NewPost {
    /// Validates a `POST /posts` body, reporting every bad or unknown field at once.
    pub fn parse(value: &Value) -> Result<Self, InvalidFields> {
        let map = object(value)?;
        let mut errors = Vec::new();
        unknown_fields(map, &mut errors);
        let title = match map.get("title") {
            Some(v) => check_title(v, &mut errors),
            None => {
                errors.push(field_error("title", "is required"));
                None
            }
        };
        let body = match map.get("body") {
            Some(v) => check_body(v, &mut errors),
            None => {
                errors.push(field_error("body", "is required"));
                None
            }
        };
        let published = map.get("published").map_or(Some(false), |v| check_published(v, &mut errors));
        match (title, body, published) {
            (Some(title), Some(body), Some(published)) if errors.is_empty() => Ok(Self { title, body, published }),
            _ => Err(InvalidFields(errors)),
        }
    }
}

/// Parses a `PATCH /posts/{id}` body: any non-empty subset of the fields.
pub fn parse_changes(value: &Value) -> Result<PostChanges, InvalidFields> {
    let map = object(value)?;
    let mut errors = Vec::new();
    unknown_fields(map, &mut errors);
    let changes = PostChanges {
        title: map.get("title").and_then(|v| check_title(v, &mut errors)),
        body: map.get("body").and_then(|v| check_body(v, &mut errors)),
        published: map.get("published").and_then(|v| check_published(v, &mut errors)),
    };
    if errors.is_empty() && changes == PostChanges::default() {
        errors.push(field_error("", "give at least one of title, body, published"));
    }
    if errors.is_empty() { Ok(changes) } else { Err(InvalidFields(errors)) }
}

/// Why a create, update or delete did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PostWriteError {
    /// No post with that id (404).
    #[error("post not found")]
    NotFound,
    /// The caller is not the post's author (403).
    #[error("only the author may change a post")]
    Forbidden,
    /// `precondition`: the client's If-Match named another version (412); otherwise a
    /// concurrent write won the race (409).
    #[error("the post was changed by another request")]
    VersionMismatch {
        /// Whether the client's If-Match failed (412) rather than a concurrent write (409).
        precondition: bool,
    },
    /// Reading or writing the table failed.
    #[error("posts store: {0}")]
    Store(#[from] crate::posts::PostsError),
}

/// `POSTS_INDEX_WAIT_MS`: how long a write waits for the index to show it before the last bump.
pub fn index_wait_from_env(env: &mut EnvReader<'_>) -> Duration {
    env.millis("POSTS_INDEX_WAIT_MS", 2000, 0..=8000)
}

/// Time kept back from the write's deadline to answer after waiting for the index.
const ANSWER_RESERVE: Duration = Duration::from_millis(500);

/// What the index must show once it has caught up with a write.
struct Indexed<'a> {
    id: &'a PostId,
    created_at: &'a str,
    published: bool,
    version: u64,
}

/// Creates, changes and deletes posts, invalidating the cache after each write.
#[derive(Clone, Debug)]
pub struct PostWriter {
    /// The table and cache written to.
    pub posts: CachedPosts,
    /// How long a list-changing write waits for the index to show it (`POSTS_INDEX_WAIT_MS`).
    pub index_wait: Duration,
}

impl PostWriter {
    /// Writes to `posts`, waiting up to `index_wait` for the index.
    pub fn new(posts: CachedPosts, index_wait: Duration) -> Self {
        Self { posts, index_wait }
    }

    /// Creates a post by `author` at version 1, then invalidates and, if published, settles the lists.
    pub async fn create(&self, author: &UserId, new: NewPost, deadline: Deadline) -> Result<Post, PostWriteError> {
        let now = timestamp_now();
        let post = Post {
            id: PostId::generate(),
            title: new.title,
            body: new.body,
            author_id: author.as_str().to_owned(),
            published: new.published,
            created_at: now.clone(),
            updated_at: now,
            version: 1,
        };
        self.posts.repo.create(&post).await.map_err(|e| match e {
            // A UUIDv7 collision: practically impossible, and safe to report as a conflict.
            WriteError::Conflict => PostWriteError::VersionMismatch { precondition: false },
            WriteError::Store(e) => PostWriteError::Store(e.into()),
        })?;
        self.posts.invalidate_after_write(&post.id, post.version).await;
        if post.published {
            let shown = Indexed { id: &post.id, created_at: &post.created_at, published: true, version: 1 };
            self.settle_lists(shown, deadline).await;
        }
        Ok(post)
    }

    /// Reads the current post and checks existence, authorship and the client's If-Match.
    async fn current(&self, author: &UserId, id: &PostId, if_match: Option<u64>) -> Result<Post, PostWriteError> {
        let post = self.posts.repo.get(id).await?.ok_or(PostWriteError::NotFound)?;
        if post.author_id != author.as_str() {
            return Err(PostWriteError::Forbidden);
        }
        if if_match.is_some_and(|v| v != post.version) {
            return Err(PostWriteError::VersionMismatch { precondition: true });
        }
        Ok(post)
    }

    /// Applies `changes` as the author, if the post is still at `if_match` (when given), and
    /// returns the post as written.
    pub async fn update(
        &self,
        author: &UserId,
        id: &PostId,
        if_match: Option<u64>,
        changes: &PostChanges,
        deadline: Deadline,
    ) -> Result<Post, PostWriteError> {
        let current = self.current(author, id, if_match).await?;
        let updated =
            self.posts.repo.update(id, author.as_str(), current.version, changes).await.map_err(|e| match e {
                WriteError::Conflict => PostWriteError::VersionMismatch { precondition: if_match.is_some() },
                WriteError::Store(e) => PostWriteError::Store(e.into()),
            })?;
        self.posts.invalidate_after_write(id, updated.version).await;
        if current.published || updated.published {
            let shown =
                Indexed { id, created_at: &updated.created_at, published: updated.published, version: updated.version };
            self.settle_lists(shown, deadline).await;
        }
        Ok(updated)
    }

    /// Deletes the post as the author, if it is still at `if_match` (when given).
    pub async fn delete(
        &self,
        author: &UserId,
        id: &PostId,
        if_match: Option<u64>,
        deadline: Deadline,
    ) -> Result<(), PostWriteError> {
        let current = self.current(author, id, if_match).await?;
        self.posts.repo.delete(id, author.as_str(), current.version).await.map_err(|e| match e {
            WriteError::Conflict => PostWriteError::VersionMismatch { precondition: if_match.is_some() },
            WriteError::Store(e) => PostWriteError::Store(e.into()),
        })?;
        // One past the deleted version: no reader's fill of the deleted post can land.
        self.posts.invalidate_after_write(id, current.version + 1).await;
        if current.published {
            let shown = Indexed { id, created_at: &current.created_at, published: false, version: current.version + 1 };
            self.settle_lists(shown, deadline).await;
        }
        Ok(())
    }

    /// Waits (bounded) until the index shows the write, then bumps the list generation again.
    /// Returns whether the index caught up in time. When it did not, the bump still happens, and
    /// a page cached from the lagging index can be served until its TTL (60 s); that is logged.
    async fn settle_lists(&self, shown: Indexed<'_>, deadline: Deadline) -> bool {
        let latest = deadline.at.checked_sub(ANSWER_RESERVE).unwrap_or(deadline.at);
        let until = (Instant::now() + self.index_wait).min(latest);
        let mut poll = Duration::from_millis(20);
        let caught_up = loop {
            match self.posts.repo.index_shows(shown.id, shown.created_at, shown.published, shown.version).await {
                Ok(true) => break true,
                Ok(false) => {}
                Err(e) => tracing::warn!(id = %shown.id, error = %e, "reading the write back through the index failed"),
            }
            let now = Instant::now();
            if now >= until {
                break false;
            }
            tokio::time::sleep(poll.min(until - now)).await;
            poll = (poll * 2).min(Duration::from_millis(200));
        };
        if !caught_up {
            tracing::warn!(id = %shown.id, wait_ms = self.index_wait.as_millis() as u64,
                "the byFeed index had not caught up with the write; cached lists may lag it until their TTL");
        }
        self.posts.bump_lists().await;
        caught_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(e: InvalidFields) -> Vec<String> {
        e.0.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn new_posts_are_validated_field_by_field() {
        let ok = NewPost::parse(&json!({"title": "Hi", "body": "text"})).unwrap();
        assert_eq!(ok, NewPost { title: "Hi".into(), body: "text".into(), published: false });

        let err = NewPost::parse(&json!({"title": "", "body": 5, "published": "yes", "extra": 1})).unwrap_err();
        assert_eq!(fields(err), ["extra", "title", "body", "published"]);

        let err = NewPost::parse(&json!({"title": "a\r\nb", "body": "x".repeat(BODY_MAX_BYTES + 1)})).unwrap_err();
        assert_eq!(fields(err), ["title", "body"]);

        let long = "é".repeat(TITLE_MAX_CHARS);
        assert!(NewPost::parse(&json!({"title": long, "body": ""})).is_ok(), "200 characters, not bytes");
        let err = NewPost::parse(&json!({"title": "x".repeat(TITLE_MAX_CHARS + 1), "body": ""})).unwrap_err();
        assert_eq!(fields(err), ["title"]);
        assert!(NewPost::parse(&json!([1, 2])).is_err());
    }

    #[test]
    fn bidi_overrides_and_zero_width_characters_are_refused() {
        for (title, body, bad) in [
            ("evil\u{202E}txt.exe", "b", vec!["title"]),
            ("ok", "hidden\u{200B}word", vec!["body"]),
            ("a\u{2066}b", "\u{FEFF}", vec!["title", "body"]),
        ] {
            let err = NewPost::parse(&json!({"title": title, "body": body})).unwrap_err();
            assert!(err.0.iter().all(|e| e.message.contains("U+")), "{:?}", err.0);
            assert_eq!(fields(err), bad, "{title:?} {body:?}");
        }
        let err = parse_changes(&json!({"title": "x\u{202D}y"})).unwrap_err();
        assert_eq!(
            err.0[0].message,
            "must not contain invisible formatting characters (bidi controls, zero-width characters): U+202D at character 2"
        );
        assert!(
            NewPost::parse(&json!({"title": "שלום and 中文", "body": "é ß"})).is_ok(),
            "right-to-left letters are fine"
        );
    }

    #[test]
    fn bodies_refuse_c0_and_c1_controls_but_keep_tab_and_newline() {
        assert!(NewPost::parse(&json!({"title": "t", "body": "line 1\n\tline 2"})).is_ok());
        for c in ['\u{0}', '\u{1}', '\r', '\u{1B}', '\u{7F}', '\u{85}', '\u{9F}'] {
            let err = NewPost::parse(&json!({"title": "t", "body": format!("ok{c}")})).unwrap_err();
            assert_eq!(
                err.0,
                [field_error(
                    "body",
                    format!(
                        "must not contain control characters other than tab and newline: U+{:04X} at character 3",
                        c as u32
                    )
                )]
            );
            assert_eq!(fields(parse_changes(&json!({"body": format!("{c}")})).unwrap_err()), ["body"]);
            assert_eq!(fields(parse_changes(&json!({"title": format!("a{c}")})).unwrap_err()), ["title"], "C1 too");
        }
    }

    #[test]
    fn changes_need_at_least_one_known_field() {
        assert_eq!(parse_changes(&json!({"published": true})).unwrap().published, Some(true));
        assert_eq!(fields(parse_changes(&json!({})).unwrap_err()), [""]);
        assert_eq!(fields(parse_changes(&json!({"authorId": "me"})).unwrap_err()), ["authorId"]);
    }
}
