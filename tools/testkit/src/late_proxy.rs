//! A proxy that answers late: every request goes on to the upstream at once (so the service acts
//! on it, as SES sends an email it accepted), and the upstream's answer is held back for a while
//! before it is passed on. A client whose timeout is shorter gives up on a request that did
//! reach the service: the "timed out after the request left" fault, made with the real service
//! (moto) and a real socket, with nothing faked in the code under test.
//!
//! The proxy runs on the test's tokio runtime on a free loopback port and stops with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

#[derive(Default)]
struct Shared {
    delay_ms: AtomicU64,
    forwarded: AtomicU64,
}

/// See the module documentation.
pub struct LateProxy {
    /// Point the clients under test here.
    pub endpoint: String,
    shared: Arc<Shared>,
}

impl LateProxy {
    /// A proxy to `upstream` (a moto endpoint such as `testkit::aws_endpoint()`) that holds every
    /// answer back by `delay`.
    pub async fn start(upstream: &str, delay: Duration) -> Self {
        let shared = Arc::new(Shared::default());
        shared.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
        let endpoint = crate::proxy::serve(upstream, shared.clone(), |client, upstream, state, req| async move {
            forward(&client, &upstream, &state, req).await
        })
        .await;
        Self { endpoint, shared }
    }

    /// Holds answers back this long from now on (`Duration::ZERO`: answer at once).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// How many requests reached the upstream.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
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
    // The upstream acts now; only the answer is late. The answer is built whether or not the
    // client is still waiting, so the upstream's work never depends on the client's patience.
    let answer = crate::proxy::send_on(client, upstream, &parts, body).await;
    state.forwarded.fetch_add(1, Ordering::SeqCst);
    let (status, headers, bytes) = match answer {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            (status, headers, r.bytes().await.unwrap_or_default())
        }
        Err(e) => (reqwest::StatusCode::BAD_GATEWAY, Default::default(), Bytes::from(e.to_string())),
    };
    tokio::time::sleep(Duration::from_millis(state.delay_ms.load(Ordering::SeqCst))).await;
    crate::proxy::respond(status, &headers, bytes)
}
