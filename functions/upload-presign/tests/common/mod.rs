//! Test support: the function's state over resources provisioned from template.yaml, and a tiny
//! loopback HTTP server (hyper) that turns HTTP into `lambda_http::Request`s, so a real client (or
//! a real browser) can talk to the handler the way API Gateway would pass requests on.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use shared::clients::AwsClients;
use shared::tokens::{AccessTokens, UserId};
use upload_presign::handler::State;
use upload_presign::settings::Settings;

pub const SECRET: &str = "test-only-jwt-secret-0123456789abcdef";

pub struct Fixture {
    pub state: State,
    pub settings: Settings,
    pub aws: AwsClients,
    pub bucket: String,
    pub env: HashMap<String, String>,
    pub tokens: AccessTokens,
}

impl Fixture {
    /// Resources of template.yaml on moto, under a fresh prefix, with `origin` as the one allowed
    /// browser origin: in the function's ALLOWED_ORIGINS *and* in the bucket's CORS rules (the
    /// template's `AllowedOrigins` parameter feeds both).
    pub async fn new(origin: &str) -> Self {
        let provisioned = provision_for_origin(origin);
        let env = provisioned["functions"]["upload-presign"]
            .as_object()
            .expect("provision.py resolved the upload-presign function")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect::<HashMap<_, _>>();
        let bucket = provisioned["resources"]["UploadsBucket"]["name"].as_str().expect("UploadsBucket").to_owned();
        let settings = Settings::from_env(testkit::env_reader(env.clone())).expect("settings from the template");
        // As `main` does: path-style addressing comes from S3_FORCE_PATH_STYLE (set for moto).
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(testkit::aws_endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "tests"))
            .load()
            .await;
        let aws = AwsClients::new(&sdk, settings.uploads.force_path_style);
        Self {
            state: State::new(&settings, &aws),
            tokens: AccessTokens::new(&settings.access_tokens),
            settings,
            aws,
            bucket,
            env,
        }
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

/// `scripts/provision.py` with the `AllowedOrigins` parameter set, which `testkit::provision`
/// does not pass (it only overrides function variables), so that the bucket's CORS rules hold
/// the test page's origin. Prints the same JSON as `testkit::provision` parses.
pub fn provision_for_origin(origin: &str) -> Value {
    let root = testkit::workspace_root();
    let prefix = format!("up{}-", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/provision.py"))
        .arg("--template")
        .arg(root.join("template.yaml"))
        .args(["--endpoint", &testkit::aws_endpoint(), "--prefix", &prefix])
        .arg("--param")
        .arg(format!("AllowedOrigins={origin}"))
        .arg("--set")
        .arg(format!("ALLOWED_ORIGINS={origin}"))
        .arg("--set")
        .arg(format!("JWT_SECRET={SECRET}"))
        .args(["--set", "S3_FORCE_PATH_STYLE=true"])
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/provision.py (scripts/bootstrap.sh installs its venv)");
    assert!(out.status.success(), "provision.py failed");
    serde_json::from_slice(&out.stdout).expect("provision.py prints JSON")
}

pub fn json_of(r: &Response<Body>) -> Value {
    match r.body() {
        Body::Text(t) => serde_json::from_str(t).expect("JSON body"),
        Body::Binary(b) => serde_json::from_slice(b).expect("JSON body"),
        _ => Value::Null,
    }
}

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
