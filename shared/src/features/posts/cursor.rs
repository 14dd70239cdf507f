//! Opaque, authenticated list cursors.
//!
//! A cursor carries a [`FeedPosition`] (the index key a page ended at), the list it belongs to
//! and the page size it was made for, signed with HMAC-SHA256 under `POSTS_CURSOR_SECRET`:
//! `base64url(payload) "." base64url(tag)`. Only positions this service handed out are ever
//! sent to DynamoDB as `ExclusiveStartKey`; a forged, altered or truncated cursor, or one made
//! for another list or another `limit`, is refused before anything is read. Cursors do not
//! expire: a position stays meaningful (keyset pagination), and a key rotation simply makes old
//! cursors invalid (clients start again from the first page).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::{EnvReader, Secret};
use crate::posts::{FeedPosition, PostId};

/// The only list today: published posts, newest first.
pub const PUBLISHED_LIST: &str = "published";
/// Longer than any cursor this module makes (a 64-character id and the signature fit in ~250).
pub const MAX_CURSOR_CHARS: usize = 512;
/// Shortest `POSTS_CURSOR_SECRET` accepted, in bytes (the HMAC-SHA256 output size).
pub const MIN_SECRET_BYTES: usize = 32;
/// Domain separation: the same key could never make a tag that verifies as something else.
const CONTEXT: &[u8] = b"posts-cursor/v1\n";

type HmacSha256 = Hmac<Sha256>;

#[derive(Serialize, Deserialize)]
struct Payload {
    /// list
    l: String,
    /// limit
    n: u32,
    /// createdAt of the position
    c: String,
    /// id of the position
    i: String,
}

/// Why a cursor was refused; each becomes a 400 problem with its own detail.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Too long, not two base64url parts, or a payload that does not decode to a position.
    #[error("the cursor is malformed or truncated; use the nextCursor of a previous page as it is")]
    Malformed,
    /// The tag does not match: not a cursor this service signed, or signed under an older key.
    #[error("the cursor was not issued by this service (signature mismatch)")]
    Forged,
    /// Signed for a list other than the one asked for.
    #[error("the cursor belongs to another list")]
    OtherList,
    #[error("the cursor was made for limit={made_for}; repeat that limit or start again without a cursor")]
    /// Signed for another page size than the one asked for.
    OtherLimit {
        /// The `limit` the cursor was made for.
        made_for: u32,
    },
}

/// Signs and verifies cursors. Built once per execution environment.
#[derive(Clone)]
pub struct Cursors {
    key: Secret,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cursors { key: <redacted> }")
    }
}

impl Cursors {
    /// Signs and verifies with `key` (at least [`MIN_SECRET_BYTES`]).
    pub fn new(key: Secret) -> Self {
        Self { key }
    }

    /// `POSTS_CURSOR_SECRET`: at least 32 bytes.
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let expected = "at least 32 random bytes (openssl rand -base64 48)";
        let key = env.secret("POSTS_CURSOR_SECRET", expected);
        if !key.expose().is_empty() && key.expose().len() < MIN_SECRET_BYTES {
            env.reject("POSTS_CURSOR_SECRET", expected, "too short");
        }
        Self { key }
    }

    fn mac(&self) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.key.expose().as_bytes()).expect("HMAC takes any key length");
        mac.update(CONTEXT);
        mac
    }

    /// The cursor for the page after `position`, in `list`, at `limit` items per page.
    pub fn issue(&self, list: &str, limit: u32, position: &FeedPosition) -> String {
        let payload = Payload {
            l: list.to_owned(),
            n: limit,
            c: position.created_at.clone(),
            i: position.id.as_str().to_owned(),
        };
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&json);
        let tag = mac.finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&json), URL_SAFE_NO_PAD.encode(tag))
    }

    /// The position a cursor carries, if this service issued it for `list` and `limit`. The tag
    /// is checked (in constant time) before the payload is even parsed.
    pub fn open(&self, cursor: &str, list: &str, limit: u32) -> Result<FeedPosition, CursorError> {
        if cursor.is_empty() || cursor.len() > MAX_CURSOR_CHARS {
            return Err(CursorError::Malformed);
        }
        let (payload, tag) = cursor.split_once('.').ok_or(CursorError::Malformed)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| CursorError::Malformed)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| CursorError::Malformed)?;
        if tag.len() != 32 {
            return Err(CursorError::Malformed);
        }
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag).map_err(|_| CursorError::Forged)?;
        // Authentic from here on; still checked, so a bug elsewhere cannot become a bad key.
        let p: Payload = serde_json::from_slice(&payload).map_err(|_| CursorError::Malformed)?;
        if p.l != list {
            return Err(CursorError::OtherList);
        }
        if p.n != limit {
            return Err(CursorError::OtherLimit { made_for: p.n });
        }
        let id = PostId::parse(&p.i).map_err(|_| CursorError::Malformed)?;
        if p.c.is_empty() || p.c.len() > 64 {
            return Err(CursorError::Malformed);
        }
        Ok(FeedPosition { created_at: p.c, id })
    }

    /// A short, stable name for the position a cursor names (its tag), for cache keys.
    pub fn cache_name(cursor: &str) -> &str {
        cursor.rsplit_once('.').map_or(cursor, |(_, tag)| tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursors(key: &str) -> Cursors {
        Cursors::new(Secret::new(key))
    }

    fn position() -> FeedPosition {
        FeedPosition { created_at: "2026-01-02T03:04:05.678Z".into(), id: PostId::parse("0199abc").unwrap() }
    }

    const KEY: &str = "test-only-cursor-key-0123456789abcdef";

    #[test]
    fn a_cursor_round_trips_for_its_list_and_limit_only() {
        let c = cursors(KEY);
        let cursor = c.issue(PUBLISHED_LIST, 20, &position());
        assert!(cursor.len() < 200, "{cursor}");
        assert!(cursor.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "URL-safe: {cursor}");
        assert_eq!(c.open(&cursor, PUBLISHED_LIST, 20), Ok(position()));
        assert_eq!(c.open(&cursor, PUBLISHED_LIST, 50), Err(CursorError::OtherLimit { made_for: 20 }));
        assert_eq!(c.open(&cursor, "drafts", 20), Err(CursorError::OtherList));
    }

    #[test]
    fn forged_altered_and_truncated_cursors_are_refused() {
        let c = cursors(KEY);
        let cursor = c.issue(PUBLISHED_LIST, 20, &position());
        let other_key = cursors("another-key-of-thirty-two-bytes-or-more").issue(PUBLISHED_LIST, 20, &position());
        assert_eq!(c.open(&other_key, PUBLISHED_LIST, 20), Err(CursorError::Forged));

        // Same signature, payload changed to start somewhere else.
        let (_, tag) = cursor.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"l":"published","n":20,"c":"9999","i":"x"}"#);
        assert_eq!(c.open(&format!("{forged_payload}.{tag}"), PUBLISHED_LIST, 20), Err(CursorError::Forged));

        let truncated = &cursor[..cursor.len() - 3];
        assert_eq!(c.open(truncated, PUBLISHED_LIST, 20), Err(CursorError::Malformed));
        for bad in ["", ".", "abc", "a.b", "%%%.%%%", "x".repeat(MAX_CURSOR_CHARS + 1).as_str(), "é.é"] {
            assert_eq!(c.open(bad, PUBLISHED_LIST, 20), Err(CursorError::Malformed), "{bad:?}");
        }
        // A flipped bit anywhere in the signature.
        let mut bytes = cursor.clone().into_bytes();
        let last = bytes.len() - 5;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert!(matches!(c.open(&flipped, PUBLISHED_LIST, 20), Err(CursorError::Forged | CursorError::Malformed)));
    }

    #[test]
    fn short_keys_are_refused_at_init() {
        let mut env = EnvReader::from_fn(|k| (k == "POSTS_CURSOR_SECRET").then(|| "short".to_owned()));
        Cursors::from_env(&mut env);
        let err = env.finish(()).unwrap_err();
        assert_eq!(err.problems[0].variable, "POSTS_CURSOR_SECRET");
    }
}
