//! auth-refresh: `POST /auth/session` (a browser signs in with an OIDC ID token), and
//! `POST /auth/refresh`, `POST /auth/logout` and `POST /auth/logout-all` over the Redis-backed
//! refresh-token store in `shared::auth::refresh`.

pub mod browser;
pub mod handler;
pub mod settings;
