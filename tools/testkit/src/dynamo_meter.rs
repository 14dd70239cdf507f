//! A counting HTTP proxy in front of moto, so tests measure DynamoDB reads from *outside* the
//! code under test: every request passes through unchanged, and the proxy counts, from moto's own
//! answers, the Query calls, the GetItem calls and the items each read (`ScannedCount` of a
//! Query, one per GetItem that found an item). It can also hold Query answers back for a while,
//! which makes "a slow page" without touching the code that loads it, and make Query answers
//! lag like an eventually consistent index (items created after a given time left out). It keeps
//! each request's `X-Amzn-Trace-Id`, so a test sees which invocation's trace reached DynamoDB.
//!
//! The proxy runs on the test's tokio runtime on a free loopback port and stops with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// What went through the proxy since the last [`DynamoMeter::take`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    pub queries: u64,
    pub gets: u64,
    /// Items DynamoDB read to answer: `ScannedCount` summed over Queries, plus found GetItems.
    pub items: u64,
    /// The largest `ScannedCount` of a single Query.
    pub max_query_items: u64,
}

/// Requests whose trace headers are kept between two [`DynamoMeter::take_traces`].
const MAX_TRACES: usize = 10_000;

#[derive(Default)]
struct Shared {
    reads: Mutex<Reads>,
    query_delay_ms: AtomicU64,
    /// Query answers leave out items whose `createdAt` is later than this.
    lag_after: Mutex<Option<String>>,
    /// (operation, `X-Amzn-Trace-Id` header) of every request, in arrival order.
    traces: Mutex<Vec<(String, Option<String>)>>,
}

pub struct DynamoMeter {
    /// Point the clients under test here (`testkit::aws_clients_at`).
    pub endpoint: String,
    shared: Arc<Shared>,
}

impl DynamoMeter {
    /// A proxy to `upstream` (a moto endpoint such as `testkit::aws_endpoint()`).
    pub async fn start(upstream: &str) -> Self {
        let shared = Arc::new(Shared::default());
        let endpoint = crate::proxy::serve(upstream, shared.clone(), |client, upstream, state, req| async move {
            forward(&client, &upstream, &state, req).await
        })
        .await;
        Self { endpoint, shared }
    }

    /// The reads counted since the last call, and a fresh count from now.
    pub fn take(&self) -> Reads {
        std::mem::take(&mut *self.shared.reads.lock().expect("meter lock"))
    }

    /// The operation and `X-Amzn-Trace-Id` header of every request since the last call, in
    /// arrival order: what the code under test sent, seen from outside it.
    pub fn take_traces(&self) -> Vec<(String, Option<String>)> {
        std::mem::take(&mut *self.shared.traces.lock().expect("meter lock"))
    }

    /// Makes every Query answer leave out the items created after `created_at` (`None`: stop),
    /// as a GSI that has not caught up with recent writes would.
    pub fn lag_index_after(&self, created_at: Option<String>) {
        *self.shared.lag_after.lock().expect("meter lock") = created_at;
    }

    /// Holds every Query answer back this long (a slow page), `Duration::ZERO` to stop.
    pub fn set_query_delay(&self, delay: Duration) {
        self.shared.query_delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    state: &Shared,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let operation = target.rsplit('.').next().unwrap_or("").to_owned();
    let trace = parts.headers.get("x-amzn-trace-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    {
        let mut traces = state.traces.lock().expect("meter lock");
        // Tests read a few; a drill that never reads them must not grow without bound.
        if traces.len() < MAX_TRACES {
            traces.push((operation.clone(), trace));
        }
    }
    let answer = match crate::proxy::send_on(client, upstream, &parts, body).await {
        Ok(resp) => {
            let status = resp.status();
            let headers = resp.headers().clone();
            let mut bytes = resp.bytes().await.unwrap_or_default();
            if status.is_success() && operation == "Query" {
                bytes = lag(state, bytes);
            }
            if status.is_success() {
                count(state, &operation, &bytes);
            }
            crate::proxy::respond(status, &headers, bytes)
        }
        Err(_) => {
            let mut r = hyper::Response::new(Full::new(Bytes::new()));
            *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
            r
        }
    };
    if operation == "Query" {
        let delay = state.query_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }
    answer
}

fn lag(state: &Shared, bytes: Bytes) -> Bytes {
    let Some(after) = state.lag_after.lock().expect("meter lock").clone() else { return bytes };
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return bytes };
    if let Some(items) = json.get_mut("Items").and_then(|v| v.as_array_mut()) {
        items.retain(|item| item["createdAt"]["S"].as_str().is_none_or(|c| c <= after.as_str()));
        let n = items.len();
        json["Count"] = n.into();
        json["ScannedCount"] = n.into();
    }
    Bytes::from(serde_json::to_vec(&json).unwrap_or_default())
}

fn count(state: &Shared, operation: &str, body: &[u8]) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    let mut reads = state.reads.lock().expect("meter lock");
    match operation {
        "Query" | "Scan" => {
            let scanned = json["ScannedCount"].as_u64().or_else(|| json["Count"].as_u64()).unwrap_or(0);
            reads.queries += 1;
            reads.items += scanned;
            reads.max_query_items = reads.max_query_items.max(scanned);
        }
        "GetItem" => {
            reads.gets += 1;
            reads.items += u64::from(json.get("Item").is_some());
        }
        _ => {}
    }
}
