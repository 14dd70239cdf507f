//! Test support: the function's state over resources provisioned from template.yaml, and a tiny
//! loopback HTTP server (hyper) that turns HTTP into `lambda_http::Request`s, so a real client (or
//! a real browser) can talk to the handler the way API Gateway would pass requests on.

#![allow(dead_code)] // each test binary uses a different part

use shared::config::FromEnv;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use shared::auth::{AccessTokenSigner, UserId};
use shared::clients::AwsClients;
use upload_presign::handler::State;
use upload_presign::settings::Settings;

pub const ACCESS_KEY: &str = "AKIAS3SFSTEST";
pub const SECRET_KEY: &str = "s3s-fs-test-secret-0123456789";
pub const BUCKET: &str = "uploads";
/// A trace header as Lambda sets it in `_X_AMZN_TRACE_ID`.
pub const TRACE_ID: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

/// The environment Lambda gives a function, where the SDK behaves differently: with
/// `AWS_LAMBDA_FUNCTION_NAME` and `_X_AMZN_TRACE_ID` set, its recursion-detection interceptor adds
/// an (unsigned) `X-Amzn-Trace-Id` to every request, presigned ones included. Every test that
/// cares about headers calls this first, before it builds a client or starts a thread.
pub fn lambda_environment() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: called at the start of a test, before this test starts threads or builds SDK
        // clients; `make test` runs tests under nextest, one process per test, so no other test's
        // threads read the environment meanwhile. The values are the same in every call.
        unsafe {
            std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "upload-presign");
            std::env::set_var("_X_AMZN_TRACE_ID", TRACE_ID);
        }
    });
}

pub struct Fixture {
    pub state: State,
    pub settings: Settings,
    pub aws: AwsClients,
    pub bucket: String,
    pub env: HashMap<String, String>,
    pub tokens: AccessTokenSigner,
}

impl Fixture {
    /// Resources of template.yaml on moto, under a fresh prefix, with `origin` as the one allowed
    /// browser origin: in the function's ALLOWED_ORIGINS *and* in the bucket's CORS rules (the
    /// template's `AllowedOrigins` parameter feeds both, testkit::provision_with resolves it).
    pub async fn new(origin: &str) -> Self {
        lambda_environment();
        let provisioned = testkit::provision_with(
            &[("AllowedOrigins", origin)],
            &[("JWT_PUBLIC_KEYS", &testkit::test_public_keys()), ("S3_FORCE_PATH_STYLE", "true")],
        );
        let env = provisioned.env("upload-presign");
        let bucket = provisioned.name("UploadsBucket");
        let settings = Settings::from_env(testkit::env_reader(env.clone())).expect("settings from the template");
        // As `main` does: path-style addressing comes from S3_FORCE_PATH_STYLE (set for moto).
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(testkit::aws_endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "tests"))
            .load()
            .await;
        let aws = AwsClients::new(&sdk, settings.uploads.force_path_style);
        Self { state: State::new(&settings, &aws), tokens: testkit::test_signer(), settings, aws, bucket, env }
    }

    pub fn bearer(&self, user: &str) -> String {
        format!("Bearer {}", self.tokens.mint(&UserId::parse(user).expect("user id")).expect("mint"))
    }

    /// `POST /uploads` through the handler, as user `user` (or anonymously).
    pub async fn presign(&self, user: Option<&str>, body: Value) -> Response<Body> {
        let mut b = http::Request::builder()
            .method("POST")
            .uri("/uploads")
            .header("content-type", "application/json")
            .header("origin", self.settings.cors.allowed_origins[0].as_str());
        if let Some(user) = user {
            b = b.header("authorization", self.bearer(user));
        }
        upload_presign::handler::handle(&self.state, b.body(Body::Text(body.to_string())).expect("request")).await
    }
}

impl Fixture {
    /// `PUT /users/me/avatar` with `body`, as `user`.
    pub async fn record(&self, user: Option<&str>, body: Value) -> Response<Body> {
        record_with(&self.state, user.map(|u| self.bearer(u)), body).await
    }

    /// `GET /users/{id}`.
    pub async fn profile(&self, id: &str) -> Response<Body> {
        profile_with(&self.state, id).await
    }
}

/// `PUT /users/me/avatar` through the handler over `state`.
pub async fn record_with(state: &State, bearer: Option<String>, body: Value) -> Response<Body> {
    let mut b =
        http::Request::builder().method("PUT").uri("/users/me/avatar").header("content-type", "application/json");
    if let Some(bearer) = bearer {
        b = b.header("authorization", bearer);
    }
    upload_presign::handler::handle(state, b.body(Body::Text(body.to_string())).expect("request")).await
}

/// `GET /users/{id}` through the handler over `state`.
pub async fn profile_with(state: &State, id: &str) -> Response<Body> {
    let req = http::Request::builder().method("GET").uri(format!("/users/{id}")).body(Body::Empty).expect("request");
    upload_presign::handler::handle(state, req).await
}

/// A valid 1×1 PNG (a browser decodes it).
pub const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49,
    0x44, 0x41, 0x54, 0x78, 0xDA, 0x63, 0x64, 0x60, 0xF8, 0x5F, 0x0F, 0x00, 0x02, 0x87, 0x01, 0x80, 0xEB, 0x47, 0xBA,
    0x92, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// [`PNG_1X1`] grown to exactly `len` bytes by a private ancillary chunk (`paDd`, which decoders
/// skip) before its `IEND`: a large file that is still one well-formed PNG, with nothing after
/// its end (the record step refuses bytes after `IEND`).
pub fn padded_png(len: usize) -> Vec<u8> {
    let iend = PNG_1X1.len() - 12;
    let data: Vec<u8> = (0..len - PNG_1X1.len() - 12).map(|i| (i % 251) as u8).collect();
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(b"paDd");
    chunk.extend_from_slice(&data);
    chunk.extend_from_slice(&crc32(&chunk[4..]).to_be_bytes());
    [&PNG_1X1[..iend], &chunk, &PNG_1X1[iend..]].concat()
}

/// CRC-32 (ISO-HDLC), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// The body as JSON (testkit's reader, under the name these tests use).
pub use testkit::http::json as json_of;

/// A `uploads/{user}/{uuid v4}.{ext}` key, nothing else.
pub fn assert_server_key(key: &str, user: &str, ext: &str) {
    let rest = key.strip_prefix(&format!("uploads/{user}/")).unwrap_or_else(|| panic!("prefix of {key:?}"));
    let (id, e) = rest.split_once('.').unwrap_or_else(|| panic!("extension of {key:?}"));
    assert_eq!(e, ext, "{key:?}");
    let parsed = uuid::Uuid::parse_str(id).unwrap_or_else(|_| panic!("uuid in {key:?}"));
    assert_eq!((parsed.hyphenated().to_string().as_str(), parsed.get_version_num()), (id, 4), "{key:?}");
}

/// PUTs `body` to a presigned URL with the headers the response named (Content-Length comes
/// from the body, as in a browser), returning the status.
pub async fn put(presigned: &Value, body: Vec<u8>) -> u16 {
    let mut req = reqwest::Client::new().put(presigned["uploadUrl"].as_str().expect("uploadUrl"));
    for (name, value) in presigned["headers"].as_object().expect("headers") {
        if !name.eq_ignore_ascii_case("content-length") {
            req = req.header(name.as_str(), value.as_str().expect("header value"));
        }
    }
    req.body(body).send().await.expect("PUT").status().as_u16()
}

/// A loopback HTTP/1.1 server that hands every request to `handler` as a `lambda_http::Request`;
/// stopped when dropped.
pub struct HttpServer {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpServer {
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let handler = handler.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let body = if bytes.is_empty() {
                                Body::Empty
                            } else {
                                match String::from_utf8(bytes.to_vec()) {
                                    Ok(text) => Body::Text(text),
                                    Err(e) => Body::Binary(e.into_bytes()),
                                }
                            };
                            let (parts, body) = handler(http::Request::from_parts(parts, body)).await.into_parts();
                            let bytes = match body {
                                Body::Text(t) => Bytes::from(t),
                                Body::Binary(b) => Bytes::from(b),
                                _ => Bytes::new(),
                            };
                            Ok::<_, Infallible>(hyper::Response::from_parts(parts, Full::new(bytes)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { port, task }
    }
}

/// s3s-fs over a temporary directory, with SigV4 authentication; stopped when dropped.
pub struct S3sServer {
    pub endpoint: String,
    task: tokio::task::JoinHandle<()>,
    _root: tempfile::TempDir,
}

impl Drop for S3sServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl S3sServer {
    pub async fn start() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs root");
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { endpoint, task, _root: root }
    }

    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "s3s-test"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}
