//! A local stand-in for the AWS Lambda service: it serves the Lambda Runtime API (2018-06-01) on
//! loopback and runs a real function binary ("bootstrap") under it, started the way Lambda starts it.
//!
//! `make test` uses it to invoke every sample event in `events/` through the real binaries
//! ([`check::run_check`], the `check` subcommand), and `make bench` to measure cold init, warm latency
//! and peak RSS ([`Function::wait_ready`], [`Invocation::latency`], [`Function::peak_rss_bytes`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), lambda_harness::HarnessError> {
//! use std::time::Duration;
//! use lambda_harness::{Function, SpawnOptions};
//!
//! let function = Function::start("target/debug/posts-read", &SpawnOptions::default()).await?;
//! let cold_init = function.wait_ready(Duration::from_secs(10)).await?;
//! let event = serde_json::json!({ "rawPath": "/posts" });
//! let answer = function.invoke(&event, Duration::from_secs(3)).await?;
//! println!("{cold_init:?} {:?} {:?} {}", answer.status_code(), answer.latency, function.peak_rss_bytes()?);
//! assert!(!function.logs().contains("panicked"));
//! function.stop().await;
//! # Ok(()) }
//! ```

pub mod check;
pub mod env;
mod error;
mod function;
mod runtime_api;

pub use error::HarnessError;
pub use function::{DEFAULT_REGION, Function, SpawnOptions, StopReport};
pub use runtime_api::{InitFailure, Invocation, MAX_RESPONSE_BYTES, RuntimeApi};
