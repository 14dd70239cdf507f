//! The refresh token on the wire: `<userId>.<familyId>.<seq>.<mac>`, and the key that makes it.
//!
//! Why this shape:
//! - `familyId` is 16 random bytes (base64url, 22 chars), chosen when the session starts; `seq`
//!   counts the session's rotations (decimal, from 0); `mac` is
//!   `HMAC-SHA256(familyKey, seq as 8 big-endian bytes)` (base64url, 43 chars), where
//!   `familyKey = HMAC-SHA256(REFRESH_TOKEN_SECRET, "refresh-family-v1" 0 userId 0 familyId)`.
//! - So every token a family ever had, and the one it will have next, can be recomputed from the
//!   family id and a number: Redis keeps only the family's *current* sequence number, never a
//!   token, a hash of one, or a key. Any earlier token is recognised as reuse by its number
//!   alone, which is what keeps a session's footprint constant however often it rotates.
//! - The MAC covers the user, the family and the number: editing any of them (another user's hash
//!   tag, a later number) makes a token that fails here, before Redis is asked anything.
//! - A dump of Redis, or `MONITOR` on it, yields user ids, family ids and numbers: without
//!   `REFRESH_TOKEN_SECRET` (auth-refresh's environment only) none of it is a credential.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::TryRngCore;
use sha2::Sha256;

use super::UserId;
use super::refresh::{RefreshError, Rejection};
use crate::config::{EnvReader, Secret};

type HmacSha256 = Hmac<Sha256>;

/// Random bytes in a family id (128 bits: unique per user without coordination).
pub const FAMILY_BYTES: usize = 16;
/// Characters in a family id: base64url of [`FAMILY_BYTES`], unpadded.
pub const FAMILY_CHARS: usize = 22;
/// base64url of a full HMAC-SHA256 output.
pub const MAC_CHARS: usize = 43;
/// Sequence numbers stay below 10^15, exact in the doubles of Redis's Lua (2^53); at one rotation
/// a second that is 31 million years of a session.
pub const MAX_SEQ_DIGITS: usize = 15;
/// The longest well-formed token; anything longer is refused before any work.
pub const MAX_TOKEN_CHARS: usize = 64 + 1 + FAMILY_CHARS + 1 + MAX_SEQ_DIGITS + 1 + MAC_CHARS;
/// HMAC keys shorter than the hash output weaken it (RFC 2104 §3).
pub const MIN_SECRET_BYTES: usize = 32;

const FAMILY_KEY_LABEL: &[u8] = b"refresh-family-v1";

/// The secret refresh tokens are derived from: `REFRESH_TOKEN_SECRET`. Changing it ends every
/// session (no token of the old secret verifies).
#[derive(Clone)]
pub struct RefreshTokenKey(Secret);

impl std::fmt::Debug for RefreshTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshTokenKey(***)")
    }
}

impl PartialEq for RefreshTokenKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for RefreshTokenKey {}

/// A refresh token, parsed and verified. `Debug` shows the user only: it is a bearer credential.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    raw: String,
    user: UserId,
    family: String,
    seq: u64,
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshToken").field("user", &self.user).field("seq", &self.seq).finish_non_exhaustive()
    }
}

pub(crate) fn is_base64url(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A canonical decimal: no sign, no leading zero (except "0"), at most [`MAX_SEQ_DIGITS`].
fn parse_seq(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.len() <= MAX_SEQ_DIGITS
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

impl RefreshTokenKey {
    /// A key over `secret` as given (tests, tools); [`RefreshTokenKey::from_env`] also checks its
    /// length.
    pub fn new(secret: Secret) -> Self {
        Self(secret)
    }

    /// Reads `REFRESH_TOKEN_SECRET`; `env` records it missing or shorter than [`MIN_SECRET_BYTES`].
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let expected = "a random secret of at least 32 bytes";
        let secret = env.secret("REFRESH_TOKEN_SECRET", expected);
        if !secret.expose().is_empty() && secret.expose().len() < MIN_SECRET_BYTES {
            env.reject("REFRESH_TOKEN_SECRET", expected, "too short");
        }
        Self(secret)
    }

    fn family_key(&self, user: &UserId, family: &str) -> HmacSha256 {
        let mut outer = HmacSha256::new_from_slice(self.0.expose().as_bytes()).expect("HMAC takes any key length");
        for part in [FAMILY_KEY_LABEL, b"\0", user.as_str().as_bytes(), b"\0", family.as_bytes()] {
            outer.update(part);
        }
        let key = outer.finalize().into_bytes();
        HmacSha256::new_from_slice(&key).expect("HMAC takes any key length")
    }

    fn mac(&self, user: &UserId, family: &str, seq: u64) -> HmacSha256 {
        let mut mac = self.family_key(user, family);
        mac.update(&seq.to_be_bytes());
        mac
    }

    /// The token number `seq` of `family`: what the family's holder was (or will be) given.
    pub fn token(&self, user: &UserId, family: &str, seq: u64) -> RefreshToken {
        let mac = URL_SAFE_NO_PAD.encode(self.mac(user, family, seq).finalize().into_bytes());
        RefreshToken { raw: format!("{user}.{family}.{seq}.{mac}"), user: user.clone(), family: family.to_owned(), seq }
    }

    /// The first token of a new family.
    pub fn new_family(&self, user: &UserId) -> Result<RefreshToken, RefreshError> {
        let mut bytes = [0u8; FAMILY_BYTES];
        // The OS source directly, not a user-space generator: no state that a frozen and thawed
        // execution environment could replay.
        rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|_| RefreshError::Random)?;
        Ok(self.token(user, &URL_SAFE_NO_PAD.encode(bytes), 0))
    }

    /// Parses `<userId>.<familyId>.<seq>.<mac>` and checks the MAC (in constant time).
    /// `Malformed` for anything that is not of the shape, `Forged` for a MAC that does not match.
    pub fn verify(&self, raw: &str) -> Result<RefreshToken, RefreshError> {
        let malformed = RefreshError::Rejected(Rejection::Malformed);
        if raw.len() > MAX_TOKEN_CHARS {
            return Err(malformed);
        }
        let mut parts = raw.split('.');
        let (Some(user), Some(family), Some(seq), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed);
        };
        let user = UserId::parse(user).map_err(|_| RefreshError::Rejected(Rejection::Malformed))?;
        let seq = parse_seq(seq).ok_or(RefreshError::Rejected(Rejection::Malformed))?;
        if !is_base64url(family, FAMILY_CHARS) || !is_base64url(mac, MAC_CHARS) {
            return Err(malformed);
        }
        let presented = URL_SAFE_NO_PAD.decode(mac).map_err(|_| RefreshError::Rejected(Rejection::Malformed))?;
        self.mac(&user, family, seq).verify_slice(&presented).map_err(|_| RefreshError::Rejected(Rejection::Forged))?;
        Ok(RefreshToken { raw: raw.to_owned(), user, family: family.to_owned(), seq })
    }
}

impl RefreshToken {
    /// The token itself, for the response body and the cookie. Never log it.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The user the token's session belongs to (its hash tag in Redis).
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The session's family id: its field in the user's sessions hash.
    pub fn family(&self) -> &str {
        &self.family
    }

    /// How many rotations of its family came before this token.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> RefreshTokenKey {
        RefreshTokenKey::new(Secret::new(secret))
    }
    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    #[test]
    fn tokens_verify_carry_their_parts_and_are_deterministic() {
        let k = key(SECRET);
        let first = k.new_family(&user("user-1")).unwrap();
        let parts: Vec<&str> = first.expose().split('.').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!((parts[0], parts[2]), ("user-1", "0"));
        assert_eq!(parts[1].len(), FAMILY_CHARS);
        assert_eq!(parts[3].len(), MAC_CHARS);
        assert_eq!(k.verify(first.expose()).unwrap(), first);

        let next = k.token(first.user(), first.family(), 1);
        assert_eq!(k.verify(next.expose()).unwrap().seq(), 1);
        assert_eq!(next, k.token(first.user(), first.family(), 1), "the successor is a function of the number");
        assert_ne!(next.expose(), first.expose());
        assert_ne!(k.new_family(first.user()).unwrap().family(), first.family());
    }

    #[test]
    fn editing_any_part_or_another_secret_is_forged() {
        let k = key(SECRET);
        let t = k.token(&user("user-1"), "AAAAAAAAAAAAAAAAAAAAAA", 5);
        let [u, fam, seq, mac]: [&str; 4] = t.expose().split('.').collect::<Vec<_>>().try_into().unwrap();
        let forged = |raw: String| matches!(k.verify(&raw), Err(RefreshError::Rejected(Rejection::Forged)));
        assert!(forged(format!("user-2.{fam}.{seq}.{mac}")), "another user's hash tag");
        assert!(forged(format!("{u}.BAAAAAAAAAAAAAAAAAAAAA.{seq}.{mac}")), "another family");
        assert!(forged(format!("{u}.{fam}.6.{mac}")), "a later number");
        assert!(forged(format!("{u}.{fam}.{seq}.{}", "A".repeat(MAC_CHARS))), "a made-up MAC");
        assert!(matches!(
            key("another-secret-another-secret-xx").verify(t.expose()),
            Err(RefreshError::Rejected(Rejection::Forged))
        ));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let k = key(SECRET);
        let good = k.token(&user("u"), "AAAAAAAAAAAAAAAAAAAAAA", 0);
        let (fam, mac) = (good.family().to_owned(), good.expose().rsplit('.').next().unwrap().to_owned());
        let long_user = "x".repeat(65);
        let cases = [
            String::new(),
            "garbage".into(),
            format!("u.{fam}.{mac}"),
            format!("u.{fam}.0.{mac}.x"),
            format!(".{fam}.0.{mac}"),
            format!("{{u}}.{fam}.0.{mac}"),
            format!("{long_user}.{fam}.0.{mac}"),
            format!("u.{fam}x.0.{mac}"),
            format!("u.{fam}.00.{mac}"),
            format!("u.{fam}.-1.{mac}"),
            format!("u.{fam}.+1.{mac}"),
            format!("u.{fam}.{}.{mac}", "9".repeat(16)),
            format!("u.{fam}.0.{}", &mac[1..]),
            format!("u.{fam}.0.{}+", &mac[1..]),
            format!("u.{}é.0.{mac}", &fam[2..]),
            "a".repeat(10_000),
        ];
        for case in cases {
            assert!(
                matches!(k.verify(&case), Err(RefreshError::Rejected(Rejection::Malformed))),
                "{case:?} was accepted"
            );
        }
    }

    #[test]
    fn debug_never_prints_the_token_or_the_key() {
        let k = key(SECRET);
        let t = k.new_family(&user("u")).unwrap();
        let printed = format!("{t:?} {k:?}");
        assert!(!printed.contains(t.expose()) && !printed.contains(t.family()), "{printed}");
        assert!(!printed.contains(SECRET), "{printed}");
    }

    #[test]
    fn short_secrets_are_a_config_error() {
        let mut env = EnvReader::from_fn(|k| (k == "REFRESH_TOKEN_SECRET").then(|| "short".to_owned()));
        RefreshTokenKey::from_env(&mut env);
        assert_eq!(env.finish(()).unwrap_err().problems[0].variable, "REFRESH_TOKEN_SECRET");
    }
}
