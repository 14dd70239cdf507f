//! Clients, configuration and HTTP shapes shared by every function of the bundle.
//! One module per concern; no Lambda event types below the handler layer except in `api`.

pub mod api;
pub mod avatars;
pub mod cache;
pub mod cached_posts;
pub mod clients;
pub mod config;
pub mod deadline;
pub mod email;
pub mod email_jobs;
pub mod idempotency;
pub mod orders;
pub mod outbound;
pub mod post_cursor;
pub mod post_writes;
pub mod posts;
pub mod runtime;
pub mod storage;
pub mod stripe;
pub mod telemetry;
pub mod text;
pub mod tokens;
