//! The loopback HTTP/1 proxy under the tests' proxies in front of moto (the DynamoDB meter, the
//! late proxy): one listener on a free port, every request handed to the proxy's own `forward`
//! with one reqwest client, the upstream without its trailing slash, and the proxy's state.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// What a proxy does with one request.
pub(crate) type Request = hyper::Request<hyper::body::Incoming>;

/// Serves `forward` on 127.0.0.1 (a free port) until the test process ends; returns the endpoint.
pub(crate) async fn serve<S, F, Fut>(upstream: &str, state: Arc<S>, forward: F) -> String
where
    S: Send + Sync + 'static,
    F: Fn(reqwest::Client, Arc<str>, Arc<S>, Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
    let port = listener.local_addr().expect("proxy address").port();
    let client = reqwest::Client::new();
    let upstream: Arc<str> = upstream.trim_end_matches('/').into();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (client, upstream, state, forward) = (client.clone(), upstream.clone(), state.clone(), forward.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request| {
                    let answer = forward(client.clone(), upstream.clone(), state.clone(), req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(socket), service).await;
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}
