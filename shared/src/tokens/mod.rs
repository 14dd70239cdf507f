//! Tokens: short-lived Ed25519-signed access tokens (JWT) and the Redis-backed refresh-token store.

pub mod access;
pub mod refresh;
pub mod refresh_token;
pub mod session_scripts;

pub use access::{AccessClaims, AccessTokenError, AccessTokenSigner, AccessTokens};
pub use refresh::{
    RefreshError, RefreshSettings, RefreshToken, RefreshTokenStore, Rejection, Session, SessionError, Sessions,
};
pub use refresh_token::RefreshTokenKey;

/// A user id as the token layer accepts it: 1 to 64 of `A-Z a-z 0-9 - _`. The id is used inside
/// Redis hash tags (`{…}`), so braces and other punctuation are refused up front.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a user id is 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'")]
pub struct InvalidUserId;

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, InvalidUserId> {
        let ok =
            (1..=64).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok { Ok(Self(raw.to_owned())) } else { Err(InvalidUserId) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
