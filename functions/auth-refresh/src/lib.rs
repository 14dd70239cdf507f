//! auth-refresh: `POST /auth/refresh`, `POST /auth/logout` and `POST /auth/logout-all` over the
//! Redis-backed refresh-token store in `shared::auth::refresh`.

pub mod handler;
pub mod settings;
