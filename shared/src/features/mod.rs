//! Features: one folder per domain, built on the mechanisms. A feature may use another feature's
//! types (a post's author is an [`auth::UserId`]), never a function's policy.

pub mod auth;
pub mod email;
pub mod payments;
pub mod posts;
pub mod uploads;
