//! A TLS endpoint in front of a plaintext one on loopback: what the Lambda-shaped bench puts in
//! front of moto, so that every AWS call of a function pays a real TLS handshake and record
//! encryption, as it does against `https://dynamodb.<region>.amazonaws.com`.
//!
//! The certificate is a [`TlsFiles`] one (a throwaway CA the caller makes), which the functions
//! trust through `AWS_CA_BUNDLE`, as a deployment behind a private CA would. The front terminates
//! TLS and copies bytes both ways; it never looks at the HTTP inside. It runs on a thread of its
//! own with its own runtime, so the caller's blocking work cannot stall it, and stops on drop.

use std::sync::Arc;
use std::thread::JoinHandle;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::{TcpListener, TcpStream};
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
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsFront {
    /// Serves TLS with `tls`'s server certificate (for `127.0.0.1` and `localhost`) and forwards
    /// to `upstream` (`127.0.0.1:<port>`).
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
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("listener");
                tokio::select! {
                    () = accept_loop(listener, acceptor, upstream) => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(Self { port, stop: Some(stop), thread: Some(thread) })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

async fn accept_loop(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, upstream: std::net::SocketAddr) {
    while let Ok((socket, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // A client that gives up mid-handshake or mid-stream ends only its own connection.
            let _ = socket.set_nodelay(true);
            let Ok(mut tls) = acceptor.accept(socket).await else { return };
            let Ok(mut plain) = TcpStream::connect(upstream).await else { return };
            let _ = plain.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        });
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
