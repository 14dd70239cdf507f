//! Mechanisms: the platform plumbing and the generic patterns. Nothing here names a feature.

pub mod cache;
pub mod clients;
pub mod clock;
pub mod config;
pub mod deadline;
pub mod http;
pub mod id;
pub mod idempotency;
pub mod metrics;
pub mod outbound;
pub mod runtime;
pub mod telemetry;
pub mod text;
pub mod xray;
