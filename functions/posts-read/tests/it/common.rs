//! What both posts-read suites send: GET requests from the allowed origin, and timestamps.

use lambda_http::{Body, Request};

/// The browser origin the provisioned function allows.
pub const ORIGIN: &str = "https://app.example.com";

/// Distinct, increasing timestamps in the past: `n` seconds after 2026-01-01.
pub fn at(n: u32) -> String {
    format!("2026-01-01T{:02}:{:02}:{:02}.000Z", n / 3600, (n / 60) % 60, n % 60)
}

/// `GET uri` from [`ORIGIN`].
pub fn get(uri: &str) -> Request {
    http::Request::builder().method("GET").uri(uri).header("origin", ORIGIN).body(Body::Empty).unwrap()
}
