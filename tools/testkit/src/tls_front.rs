//! A TLS endpoint in front of a plaintext one on loopback: what the Lambda-shaped bench puts in
//! front of moto, so that every AWS call of a function pays a real TLS handshake and record
//! encryption, as it does against `https://dynamodb.<region>.amazonaws.com`.
//!
//! The certificate is a [`TlsFiles`] one (a throwaway CA the caller makes), which the functions
//! trust through `AWS_CA_BUNDLE`, as a deployment behind a private CA would. The front terminates
//! TLS and serves HTTP/1.1 with keep-alive, forwarding each request to the upstream: moto's
//! server answers every request with `Connection: close`, and a byte pipe would pass that on and
//! make every AWS call pay a fresh TLS handshake, which AWS endpoints (keep-alive) do not. It runs
//! on a thread of its own with its own runtime, so the caller's blocking work cannot stall it, and
//! stops on drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::TlsFiles;

/// Why a TLS front cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TlsFrontError {
    #[error("reading the certificate or key: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("rustls refused the certificate and key: {0}")]
    Config(#[from] rustls::Error),
    #[error("binding 127.0.0.1: {0}")]
    Bind(#[from] std::io::Error),
}

/// A TLS listener on 127.0.0.1 forwarding each connection to `upstream`; stopped on drop.
pub struct TlsFront {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsFront {
    /// Serves TLS with `tls`'s server certificate (for `127.0.0.1` and `localhost`) and forwards
    /// every request to `upstream` (`127.0.0.1:<port>`, plain HTTP).
    pub fn start(tls: &TlsFiles, upstream: std::net::SocketAddr) -> Result<Self, TlsFrontError> {
        let certs = CertificateDer::pem_file_iter(tls.cert())?.collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(tls.key())?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = oneshot::channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("listener");
                tokio::select! {
                    () = accept_loop(listener, acceptor, upstream, counter) => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(Self { port, accepted, stop: Some(stop), thread: Some(thread) })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// TLS handshakes completed so far: how many connections clients opened.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    upstream: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
) {
    let client = reqwest::Client::new();
    let upstream: Arc<str> = format!("http://{upstream}").into();
    while let Ok((socket, _)) = listener.accept().await {
        let (acceptor, accepted, client, upstream) =
            (acceptor.clone(), accepted.clone(), client.clone(), upstream.clone());
        tokio::spawn(async move {
            // A client that gives up mid-handshake or mid-stream ends only its own connection.
            let _ = socket.set_nodelay(true);
            let Ok(tls) = acceptor.accept(socket).await else { return };
            accepted.fetch_add(1, Ordering::Relaxed);
            let service = service_fn(move |req| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move { Ok::<_, std::convert::Infallible>(forward(&client, &upstream, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

/// One request to the upstream and its answer back; 502 when the upstream cannot be reached.
async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    match crate::proxy::send_on(client, upstream, &parts, body).await {
        Ok(resp) => {
            let (status, headers) = (resp.status(), resp.headers().clone());
            crate::proxy::respond(status, &headers, resp.bytes().await.unwrap_or_default())
        }
        Err(_) => crate::proxy::respond(
            hyper::StatusCode::BAD_GATEWAY,
            &hyper::HeaderMap::new(),
            Bytes::from_static(b"upstream unreachable"),
        ),
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
