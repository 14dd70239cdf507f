//! Auth: short-lived Ed25519-signed access tokens (JWT, [`access`]), the caller of a request
//! ([`bearer_user`]), and refresh sessions kept in Redis at constant size per session
//! ([`refresh`], with the token format in [`refresh_token`] and the Lua in [`session_scripts`]),
//! and sign-in by an OIDC ID token ([`oidc`]) of a user found or created by identity ([`identities`]).

pub mod access;
mod bearer;
pub mod identities;
pub mod oidc;
mod problem;
pub mod refresh;
pub mod refresh_token;
pub mod session_scripts;

pub use access::{AccessClaims, AccessTokenError, AccessTokenSigner, AccessTokens};
pub use bearer::{authenticate, bearer_user, unauthorized};
pub use refresh::{
    RefreshError, RefreshSettings, RefreshToken, RefreshTokenStore, Rejection, Session, SessionError, Sessions,
};
pub use refresh_token::RefreshTokenKey;

crate::id::define_id!(
    /// A user id ([`crate::id`]). It is used inside Redis hash tags (`{…}`), which is why braces
    /// and other punctuation are refused up front.
    UserId,
    InvalidUserId,
    "a user id"
);
