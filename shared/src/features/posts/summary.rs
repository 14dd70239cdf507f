//! What a list page shows of a post: a summary whose size is bounded whatever the post holds.
//!
//! Lambda refuses a response payload over 6 MB, and that payload is the function's response
//! JSON: the page's JSON, escaped once more as the `body` string of the API Gateway proxy
//! response. A character can grow up to 7 bytes on the way (U+0001 is 1 byte stored, `\u0001`
//! in the page, `\\u0001` in the payload), and data written around the API (an import, an
//! operator, an older version of the code) may hold anything up to DynamoDB's 400 KB item
//! limit. So a list never carries bodies: each item is a summary in which every string is
//! clipped to a fixed number of characters, which makes one item at most
//! [`SUMMARY_MAX_PAYLOAD_BYTES`] and a page of 100 at most [`PAGE_MAX_PAYLOAD_BYTES`], by
//! construction. The whole post is `GET /posts/{id}`. See `docs/limits.md`.

use serde::{Deserialize, Serialize};

use crate::posts::{Post, PostId, TITLE_MAX_CHARS};
use crate::text::clip;

/// Characters of the body a summary carries.
pub const EXCERPT_MAX_CHARS: usize = 280;
/// Characters kept of the author id and of each timestamp. Real values are far shorter (an
/// author is a `UserId`, a timestamp 24 characters): this only bounds what was written around
/// the API.
pub const SHORT_FIELD_MAX_CHARS: usize = 64;
/// The most bytes one character can take in the response payload: a control character
/// escaped twice (`\\u0001`). Quotes and backslashes take 4 (`\\\"`), a 4-byte character 4.
pub const MAX_PAYLOAD_BYTES_PER_CHAR: usize = 7;
/// The member names, punctuation and numbers of one summary, escaped twice, with room to spare
/// (the test below measures the real figure).
const SUMMARY_STRUCTURE_BYTES: usize = 256;
/// The largest one summary can be in the response payload.
pub const SUMMARY_MAX_PAYLOAD_BYTES: usize = SUMMARY_STRUCTURE_BYTES
    + MAX_PAYLOAD_BYTES_PER_CHAR
        * (crate::id::MAX_ID_LEN + TITLE_MAX_CHARS + EXCERPT_MAX_CHARS + 3 * SHORT_FIELD_MAX_CHARS);
/// The largest page size a list accepts.
pub const MAX_LIST_LIMIT: usize = 100;
/// Everything of a page that is not an item (limit, page, hasMore, the cursor, the proxy
/// response's status and headers), with room to spare: the cursor is at most
/// [`crate::posts::MAX_CURSOR_CHARS`] base64url characters (no escaping) and the headers are
/// the function's own.
pub const PAGE_FRAME_MAX_PAYLOAD_BYTES: usize = 8 * 1024;
/// The largest response payload of a list page: well under Lambda's 6 MB.
pub const PAGE_MAX_PAYLOAD_BYTES: usize = PAGE_FRAME_MAX_PAYLOAD_BYTES + MAX_LIST_LIMIT * SUMMARY_MAX_PAYLOAD_BYTES;

/// DynamoDB's largest item (400 KB, names and values together): the bound of a stored post.
pub const DYNAMODB_ITEM_MAX_BYTES: usize = 400 * 1024;
/// The largest response payload of one whole post (`GET /posts/{id}`, and what posts-write
/// answers): every byte of the largest item escaped at the worst rate, plus the frame. Under
/// 6 MB because DynamoDB bounds the item; the write path bounds what it stores far lower.
pub const POST_MAX_PAYLOAD_BYTES: usize =
    PAGE_FRAME_MAX_PAYLOAD_BYTES + MAX_PAYLOAD_BYTES_PER_CHAR * DYNAMODB_ITEM_MAX_BYTES;

// Both well under Lambda's 6 MB (6,291,456 bytes), checked when the crate compiles: a page
// under a quarter of it, a whole post under half.
const _: () = assert!(PAGE_MAX_PAYLOAD_BYTES < 6 * 1024 * 1024 / 4);
const _: () = assert!(POST_MAX_PAYLOAD_BYTES < 6 * 1024 * 1024 / 2);

/// One post in a list page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostSummary {
    /// The post's id: `GET /posts/{id}` answers the whole post.
    pub id: PostId,
    /// The title, at most [`TITLE_MAX_CHARS`] characters.
    pub title: String,
    /// The first [`EXCERPT_MAX_CHARS`] characters of the body.
    pub excerpt: String,
    /// Whether the body goes on after the excerpt.
    pub truncated: bool,
    /// The author's user id.
    pub author_id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
    /// The post's version (its `ETag` on `GET /posts/{id}`).
    pub version: u64,
}

impl PostSummary {
    /// The summary of `post`, every string clipped to its bound.
    pub fn of(post: &Post) -> Self {
        let short = |s: &str| clip(s, SHORT_FIELD_MAX_CHARS).0.to_owned();
        let (excerpt, truncated) = clip(&post.body, EXCERPT_MAX_CHARS);
        Self {
            id: post.id.clone(),
            title: clip(&post.title, TITLE_MAX_CHARS).0.to_owned(),
            excerpt: excerpt.to_owned(),
            truncated,
            author_id: short(&post.author_id),
            created_at: short(&post.created_at),
            updated_at: short(&post.updated_at),
            version: post.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of `value` once it is the `body` string of a proxy response: serialized, then
    /// serialized again as a JSON string.
    fn payload_bytes(value: &impl Serialize) -> usize {
        let page = serde_json::to_string(value).unwrap();
        serde_json::to_string(&page).unwrap().len()
    }

    fn worst(chars: usize, c: char) -> String {
        std::iter::repeat_n(c, chars + 1000).collect()
    }

    #[test]
    fn a_summary_of_the_worst_post_stays_within_its_bound() {
        for c in ['\u{1}', '"', '\\', '😀', '\u{85}'] {
            let post = Post {
                id: PostId::parse(&"a".repeat(crate::id::MAX_ID_LEN)).unwrap(),
                title: worst(TITLE_MAX_CHARS, c),
                body: worst(400 * 1024, c),
                author_id: worst(SHORT_FIELD_MAX_CHARS, c),
                published: true,
                created_at: worst(SHORT_FIELD_MAX_CHARS, c),
                updated_at: worst(SHORT_FIELD_MAX_CHARS, c),
                version: u64::MAX,
            };
            let summary = PostSummary::of(&post);
            assert!(summary.truncated);
            assert_eq!(summary.excerpt.chars().count(), EXCERPT_MAX_CHARS);
            assert_eq!(summary.title.chars().count(), TITLE_MAX_CHARS);
            let bytes = payload_bytes(&summary);
            assert!(bytes <= SUMMARY_MAX_PAYLOAD_BYTES, "{:04X}: {bytes} > {SUMMARY_MAX_PAYLOAD_BYTES}", c as u32);
        }
    }

    #[test]
    fn a_short_body_is_its_own_excerpt() {
        let post = Post {
            id: PostId::parse("p1").unwrap(),
            title: "t".into(),
            body: "short body".into(),
            author_id: "user-1".into(),
            published: true,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            version: 2,
        };
        let summary = PostSummary::of(&post);
        assert_eq!((summary.excerpt.as_str(), summary.truncated), ("short body", false));
        assert_eq!(summary.created_at, post.created_at);
    }
}
