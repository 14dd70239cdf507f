//! A small OpenID Connect issuer on loopback, in the test process: it serves
//! a discovery document and a key set (ES256 keys it generated), and signs ID tokens with them.
//! auth-refresh knows nothing about it: it is configured with its URL as `OIDC_ISSUER`, exactly
//! as it would be with Cognito or Auth0.
//!
//! Tests drive what a real issuer does to its clients: roll its keys ([`OidcIssuer::rotate`]),
//! answer slowly or not at all ([`OidcIssuer::set_delay`], [`OidcIssuer::set_down`]), and count
//! the key-set fetches it served ([`OidcIssuer::jwks_fetches`]).
//!
//! The signing key can be saved to a file ([`IssuerKey::save`]) in the form `ops id-token` reads
//! and scripts/oidc_issuer.py (the issuer of `make dev` and the test stack) writes:
//! `{"kid": ..., "pkcs8": <base64url DER>}`.

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// The client id (`aud`) tokens are for when a test or `make dev` does not choose one.
pub const DEFAULT_CLIENT_ID: &str = "local-app";

/// An ES256 signing key and its key id.
#[derive(Clone)]
pub struct IssuerKey {
    /// The key id tokens name in their `kid` header.
    pub kid: String,
    pkcs8: Vec<u8>,
    /// The uncompressed public point: 0x04, x (32 bytes), y (32 bytes).
    public: Vec<u8>,
}

impl IssuerKey {
    /// A new P-256 key named `kid`.
    pub fn generate(kid: &str) -> Self {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("P-256 key generation");
        Self::from_pkcs8(kid, pkcs8.as_ref().to_vec())
    }

    fn from_pkcs8(kid: &str, pkcs8: Vec<u8>) -> Self {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).expect("a P-256 PKCS#8 key");
        let public = pair.public_key().as_ref().to_vec();
        Self { kid: kid.to_owned(), pkcs8, public }
    }

    /// The key as `ops id-token` reads it: `{"kid", "pkcs8"}`.
    pub fn to_json(&self) -> Value {
        json!({ "kid": self.kid, "pkcs8": URL_SAFE_NO_PAD.encode(&self.pkcs8) })
    }

    /// Reads what [`IssuerKey::to_json`] wrote.
    pub fn from_json(v: &Value) -> Option<Self> {
        let kid = v["kid"].as_str()?;
        let pkcs8 = URL_SAFE_NO_PAD.decode(v["pkcs8"].as_str()?).ok()?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).ok()?;
        Some(Self::from_pkcs8(kid, pkcs8))
    }

    /// Writes the key to `path` (mode 0600).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
        std::io::Write::write_all(&mut f, self.to_json().to_string().as_bytes())
    }

    /// Reads a key file written by [`IssuerKey::save`].
    pub fn load(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        Self::from_json(&serde_json::from_str(&text).ok()?)
    }

    /// The public key as a JWK (RFC 7518 §6.2).
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&self.public[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&self.public[33..65]),
        })
    }

    /// `claims` signed with this key (ES256, `kid` in the header).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8)).expect("sign")
    }
}

/// The claims of a fresh ID token of `issuer` for `sub` and `aud`, valid for ten minutes.
pub fn id_token_claims(issuer: &str, sub: &str, aud: &str) -> Value {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    json!({ "iss": issuer, "sub": sub, "aud": aud, "iat": now, "exp": now + 600, "auth_time": now })
}

struct Shared {
    issuer: String,
    keys: RwLock<Vec<IssuerKey>>,
    jwks_fetches: AtomicU64,
    delay_ms: AtomicU64,
    down: AtomicBool,
}

/// The issuer, serving on `127.0.0.1:<port>` until dropped.
pub struct OidcIssuer {
    /// `http://127.0.0.1:<port>`: the `iss` of its tokens and what `OIDC_ISSUER` is set to.
    pub url: String,
    pub port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OidcIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OidcIssuer {
    /// An issuer with one new key (kid `k1`) on a free loopback port.
    pub async fn start() -> Self {
        Self::start_with(IssuerKey::generate("k1"), 0).await
    }

    /// An issuer with `key` on `port` (0: a free one), on the current tokio runtime.
    pub async fn start_with(key: IssuerKey, port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the issuer's port");
        let port = listener.local_addr().expect("issuer address").port();
        let url = format!("http://127.0.0.1:{port}");
        let shared = Arc::new(Shared {
            issuer: url.clone(),
            keys: RwLock::new(vec![key]),
            jwks_fetches: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            down: AtomicBool::new(false),
        });
        let state = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, req.uri().path()).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Self { url, port, shared, task }
    }

    /// The current signing key (the last one added).
    pub fn key(&self) -> IssuerKey {
        self.shared.keys.read().expect("keys").last().cloned().expect("a key")
    }

    /// A fresh ID token for `sub` and `aud`, signed with the current key.
    pub fn id_token(&self, sub: &str, aud: &str) -> String {
        self.key().sign(&id_token_claims(&self.url, sub, aud))
    }

    /// `claims` signed with the current key.
    pub fn sign(&self, claims: &Value) -> String {
        self.key().sign(claims)
    }

    /// The claims [`OidcIssuer::id_token`] signs, to edit before [`OidcIssuer::sign`].
    pub fn claims(&self, sub: &str, aud: &str) -> Value {
        id_token_claims(&self.url, sub, aud)
    }

    /// Adds a new key named `kid` and signs with it from now on (the old one stays published).
    pub fn rotate(&self, kid: &str) -> IssuerKey {
        let key = IssuerKey::generate(kid);
        self.shared.keys.write().expect("keys").push(key.clone());
        key
    }

    /// Holds every answer back this long.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Answers 503 to everything while `down`.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// How many times the key set was served.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }
}

async fn answer(state: &Shared, path: &str) -> hyper::Response<Full<Bytes>> {
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if state.down.load(Ordering::SeqCst) {
        return respond(503, json!({ "error": "down" }));
    }
    match path {
        "/.well-known/openid-configuration" => respond(
            200,
            json!({
                "issuer": state.issuer,
                "jwks_uri": format!("{}/jwks.json", state.issuer),
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
            }),
        ),
        "/jwks.json" => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let keys: Vec<Value> = state.keys.read().expect("keys").iter().map(IssuerKey::jwk).collect();
            respond(200, json!({ "keys": keys }))
        }
        _ => respond(404, json!({ "error": "not found" })),
    }
}

fn respond(status: u16, body: Value) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a response")
}
