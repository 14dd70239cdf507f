//! A tiny Lambda function for the harness's own tests, built on the real `lambda_runtime`.
//!
//! It answers `{"statusCode": 200, "body": "<the event as JSON text>"}`, and lets the event steer it:
//! `"status": N` sets the status code, `"fail": true` returns a function error, `"panic": true`
//! panics in the handler, `"exit": N` exits the process mid-invocation, `"sleepMs": N` sleeps first,
//! `"env": "NAME"` answers with that environment variable in `body`, `"log": "text"` prints a line,
//! `"countStatus": true` answers with status 200 + the number of earlier invocations of this process.
//! With `ECHO_EXIT_AT_INIT=N` in its environment it exits with code N before polling for work, like
//! a function whose configuration is broken.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    if let Ok(code) = std::env::var("ECHO_EXIT_AT_INIT") {
        eprintln!("echo-function: exiting at init as asked");
        std::process::exit(code.parse().unwrap_or(1));
    }
    lambda_runtime::run(service_fn(handle)).await
}

/// Invocations handled by this process so far.
static INVOCATIONS: AtomicU64 = AtomicU64::new(0);

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let earlier = INVOCATIONS.fetch_add(1, Ordering::SeqCst);
    let payload = event.payload;
    if let Some(text) = payload.get("log").and_then(Value::as_str) {
        println!("{text}");
    }
    if let Some(ms) = payload.get("sleepMs").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = payload.get("exit").and_then(Value::as_i64) {
        std::process::exit(i32::try_from(code).unwrap_or(1));
    }
    if payload.get("panic").and_then(Value::as_bool) == Some(true) {
        panic!("asked to panic");
    }
    if payload.get("fail").and_then(Value::as_bool) == Some(true) {
        return Err("asked to fail".into());
    }
    let status = if payload.get("countStatus").and_then(Value::as_bool) == Some(true) {
        200 + earlier
    } else {
        payload.get("status").and_then(Value::as_u64).unwrap_or(200)
    };
    let body = match payload.get("env").and_then(Value::as_str) {
        Some(name) => std::env::var(name).unwrap_or_default(),
        None => payload.to_string(),
    };
    Ok(json!({ "statusCode": status, "body": body }))
}
