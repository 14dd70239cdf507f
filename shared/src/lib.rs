//! The one crate of clients shared by every function of the bundle, in two layers.
//!
//! Arrows point down only: functions → features → mechanisms. A mechanism never names a
//! feature (`shared/tests/layers.rs` checks it).
//!
//! Mechanisms (`mechanisms/`), the platform and the generic patterns:
//! - [`config`]: typed settings from the environment; one error names every bad variable.
//! - [`telemetry`]: JSON logs that carry the Lambda request id.
//! - [`clock`]: every "now" (epoch seconds, milliseconds, RFC 3339).
//! - [`deadline`]: the invocation's deadline, and what is left of it.
//! - [`runtime`]: the tokio runtime and the one `main` of every function (HTTP or events).
//! - [`clients`]: one SdkConfig → DynamoDB / S3 / SESv2 / SQS, Redis, typed DynamoDB errors.
//! - [`outbound`]: the reqwest client: timeouts, retries with backoff, `Retry-After`, deadline.
//! - [`http`]: problem+json, CORS, cookies, request decoding, respond; knows no feature.
//! - [`cache`]: cache-aside with versions, tombstones and a stampede guard.
//! - [`idempotency`]: claim / complete / release records with DynamoDB conditional writes.
//! - [`metrics`]: counters flushed as CloudWatch Embedded Metric Format lines, once per invocation.
//! - [`id`]: the one rule for ids in URLs and keys, and the macro that declares an id type.
//! - [`text`]: what counts as invisible or control text in user input.
//! - [`xray`]: the invocation's X-Ray trace header on every AWS call, and each AWS call and Redis round trip of a sampled invocation as a subsegment sent to the X-Ray daemon.
//!
//! Features (`features/`), each a folder whose `mod.rs` says what it is:
//! - [`auth`]: access tokens, refresh sessions, [`auth::UserId`], the bearer-user helper.
//! - [`posts`]: the posts table, cached reads, writes with invalidation, signed cursors.
//! - [`uploads`]: presigned uploads, filenames, avatars.
//! - [`payments`]: Stripe signature verification and events, orders, subscriptions.
//! - [`email`]: jobs, the queue, templates, transports, money.

#![warn(missing_docs)]

mod features;
mod mechanisms;

pub use features::{auth, email, payments, posts, uploads};
pub use mechanisms::{
    cache, clients, clock, config, deadline, http, id, idempotency, metrics, outbound, runtime, telemetry, text, xray,
};
