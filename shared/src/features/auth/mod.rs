//! Tokens: short-lived signed access tokens (JWT) and the Redis-backed refresh-token store.

pub mod access;
mod bearer;
mod problem;
pub mod refresh;

pub use access::{AccessClaims, AccessTokenError, AccessTokens};
pub use bearer::{authenticate, bearer_user, unauthorized};
pub use refresh::{
    RefreshError, RefreshSettings, RefreshToken, RefreshTokenStore, Rejection, Session, SessionError, Sessions,
};

crate::id::define_id!(
    /// A user id ([`crate::id`]). It is used inside Redis hash tags (`{…}`), which is why braces
    /// and other punctuation are refused up front.
    UserId,
    InvalidUserId,
    "a user id"
);
