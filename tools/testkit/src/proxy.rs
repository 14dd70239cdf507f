//! The loopback HTTP/1 proxy under the tests' proxies in front of moto (the DynamoDB meter, the
//! late proxy, the TLS front): one listener on a free port, every request handed to the proxy's
//! own `forward` with one reqwest client, the upstream without its trailing slash, and the proxy's
//! state; and the two halves every `forward` shares: sending the request on ([`send_on`]) and
//! answering with what came back ([`respond`]).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// What a proxy does with one request.
pub(crate) type Request = hyper::Request<hyper::body::Incoming>;

/// Sends a request on to `upstream` (`http://host:port`, no trailing slash): same method, path,
/// query and body; its headers less `Host` and the framing ones, which reqwest sets for itself.
pub(crate) async fn send_on(
    client: &reqwest::Client,
    upstream: &str,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Result<reqwest::Response, reqwest::Error> {
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = client.request(parts.method.clone(), format!("{upstream}{path}")).body(body);
    for (name, value) in &parts.headers {
        let skipped = [hyper::header::HOST, hyper::header::CONTENT_LENGTH, hyper::header::CONNECTION];
        if !skipped.contains(name) {
            request = request.header(name, value);
        }
    }
    request.send().await
}

/// The proxy's answer: `status`, `body`, and the upstream's headers less the framing ones (hyper
/// frames the answer itself).
pub(crate) fn respond(
    status: hyper::StatusCode,
    headers: &hyper::HeaderMap,
    body: Bytes,
) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() = status;
    let framing = [hyper::header::CONTENT_LENGTH, hyper::header::TRANSFER_ENCODING, hyper::header::CONNECTION];
    for (name, value) in headers {
        if !framing.contains(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

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
