//! Test support for auth-refresh: a real Redis (one server or a 3-master cluster), the function's
//! `State` built from a plain environment map (no AWS needed), requests as API Gateway delivers
//! them, and inspection of Redis from the outside through `redis-cli`.

use shared::config::FromEnv;
use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;

use auth_refresh::handler::State;
use auth_refresh::settings::Settings;
use lambda_http::{Body, Request, Response};
use shared::auth::UserId;
use shared::auth::access::{PublicKey, generate_key_pair};
use shared::config::Secret;
use testkit::{RedisCluster, RedisServer};

pub const ORIGIN: &str = "https://app.example.com";
pub const REFRESH_SECRET: &str = "test-only-refresh-secret-test-only-0123456789";
pub const REFRESH_TTL_SECS: u64 = 3600;
pub const ACCESS_TTL_SECS: u64 = 900;
pub const COOKIE: &str = auth_refresh::browser::COOKIE;

/// One signing key pair for the test binary (kid `test-1`).
pub fn signing_key() -> &'static (Secret, PublicKey) {
    static KEY: OnceLock<(Secret, PublicKey)> = OnceLock::new();
    KEY.get_or_init(|| generate_key_pair("test-1").expect("key pair"))
}

/// AWS clients that nothing in the token suite calls (port 9: discard, nothing listens).
fn offline_aws() -> shared::clients::AwsClients {
    testkit::aws_clients_offline("http://127.0.0.1:9")
}

/// What a scenario changes in the function's environment; the rest is [`Fixture::start`]'s.
#[derive(Clone, Debug)]
pub struct Options {
    pub grace_ms: u64,
    pub ttl_secs: u64,
    pub max_lifetime_secs: u64,
    pub burst: u32,
    pub per_minute: u32,
    pub max_sessions: u32,
}

impl Options {
    /// A long grace window and a bucket no scenario empties by accident.
    pub fn grace(grace_ms: u64) -> Self {
        Self {
            grace_ms,
            ttl_secs: REFRESH_TTL_SECS,
            max_lifetime_secs: 30 * 24 * 3600,
            burst: 100_000,
            per_minute: 1_000_000,
            max_sessions: 10,
        }
    }
}

/// Which Redis the suite runs against. Each test binary constructs one of the two.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Single,
    Cluster,
    /// As deployed (ElastiCache Serverless): cluster mode over TLS, the test's CA trusted
    /// through `REDIS_CA_BUNDLE`.
    ClusterTls,
}

enum Backend {
    Single(RedisServer),
    Cluster(RedisCluster),
}

pub struct Fixture {
    pub state: State,
    pub settings: Settings,
    pub aws: shared::clients::AwsClients,
    backend: Option<Backend>,
    ports: Vec<u16>,
    /// The CA of a TLS Redis, for redis-cli.
    ca: Option<String>,
}

impl Fixture {
    /// A fresh Redis of `kind` and a `State` over it, with the reuse grace window `grace_ms`.
    pub fn start(kind: Kind, grace_ms: u64) -> Self {
        Self::start_with(kind, Options::grace(grace_ms))
    }

    /// A fresh Redis of `kind` and a `State` over it that signs in as the template's
    /// `auth-refresh` ACL user.
    pub fn start_with(kind: Kind, o: Options) -> Self {
        Self::start_full(kind, o, &[], offline_aws())
    }

    /// [`Fixture::start_with`], with `extra` variables set over the fixture's own and `aws` as
    /// the function's AWS clients (sign-in: an issuer, a users table on moto).
    pub fn start_full(kind: Kind, o: Options, extra: &[(&str, &str)], aws: shared::clients::AwsClients) -> Self {
        let (backend, url, ports) = match kind {
            Kind::Single => {
                let server = RedisServer::start();
                let (url, ports) = (server.url_as("auth-refresh"), vec![server.port]);
                (Backend::Single(server), url, ports)
            }
            Kind::Cluster | Kind::ClusterTls => {
                let cluster =
                    if kind == Kind::ClusterTls { RedisCluster::start_tls(3) } else { RedisCluster::start(3) };
                let (url, ports) = (cluster.url_as("auth-refresh"), cluster.ports.clone());
                (Backend::Cluster(cluster), url, ports)
            }
        };
        let ca = match &backend {
            Backend::Cluster(c) => c.tls().map(|tls| tls.ca().to_str().expect("utf-8 path").to_owned()),
            Backend::Single(_) => None,
        };
        let (private, public) = signing_key();
        let mut env: HashMap<String, String> = [
            ("REDIS_URL", url.as_str()),
            ("REDIS_CLUSTER", if kind == Kind::Single { "false" } else { "true" }),
            // Generous timeouts: the machine running the tests may be busy compiling.
            ("REDIS_CONNECT_TIMEOUT_MS", "1000"),
            ("REDIS_RESPONSE_TIMEOUT_MS", "1000"),
            ("REDIS_RECONNECT_BACKOFF_MS", "100"),
            ("ALLOWED_ORIGINS", ORIGIN),
            ("JWT_SIGNING_KEY", private.expose()),
            ("JWT_SIGNING_KEY_ID", "test-1"),
            ("JWT_PUBLIC_KEYS", &public.to_entry()),
            ("ACCESS_TOKEN_TTL_SECONDS", &ACCESS_TTL_SECS.to_string()),
            ("REFRESH_TOKEN_SECRET", REFRESH_SECRET),
            ("REFRESH_TOKEN_TTL_SECONDS", &o.ttl_secs.to_string()),
            ("REFRESH_SESSION_MAX_SECONDS", &o.max_lifetime_secs.to_string()),
            ("REFRESH_REUSE_GRACE_MS", &o.grace_ms.to_string()),
            ("REFRESH_RATE_BURST", &o.burst.to_string()),
            ("REFRESH_RATE_PER_MINUTE", &o.per_minute.to_string()),
            ("REFRESH_MAX_SESSIONS_PER_USER", &o.max_sessions.to_string()),
            // Sign-in is tested with a real issuer and users table (sign_in.rs); here neither is
            // ever reached: the discovery document and DynamoDB are only read by POST /auth/session.
            ("OIDC_ISSUER", "http://127.0.0.1:9"),
            ("OIDC_CLIENT_ID", "app"),
            ("USERS_TABLE", "users"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if let Some(ca) = &ca {
            env.insert("REDIS_CA_BUNDLE".into(), ca.clone());
        }
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let settings = Settings::from_env(testkit::env_reader(env)).expect("settings");
        let state = State::new(&settings, &aws).expect("state");
        Self { state, settings, aws, backend: Some(backend), ports, ca }
    }

    /// Another execution environment of the function: same settings, its own Redis connection.
    pub fn another_state(&self) -> State {
        State::new(&self.settings, &self.aws).expect("state")
    }

    /// The URL of this fixture's (single) Redis signed in as the template's cache user `user`:
    /// other functions beside auth-refresh (the browser journey).
    pub fn redis_url_as(&self, user: &str) -> String {
        format!("redis://{user}:{}@127.0.0.1:{}", testkit::redis_acl::password(user), self.ports[0])
    }

    /// Kills Redis (every node of a cluster).
    pub fn stop_redis(&mut self) {
        match self.backend.take() {
            Some(Backend::Single(mut server)) => server.stop(),
            Some(Backend::Cluster(cluster)) => drop(cluster),
            None => {}
        }
    }

    /// Signs `user` in through the shared session service, as a login service would.
    pub async fn login(&self, user: &str) -> (String, String) {
        let session = self.state.sessions.start(&UserId::parse(user).unwrap()).await.expect("start session");
        (session.refresh_token.expose().to_owned(), session.access_token.expose().to_owned())
    }

    fn cli_on(&self, port: u16, args: &[&str]) -> String {
        let tls = self.ca.as_ref().map(|ca| vec!["--tls", "--cacert", ca.as_str()]).unwrap_or_default();
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", "--raw"])
            .args(tls)
            .args(args)
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "redis-cli {args:?} failed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// One command on the node that owns its key (`-c` follows cluster redirects).
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_on(self.ports[0], args)
    }

    /// Milliseconds left on `key` (-2: no such key, -1: no TTL).
    pub fn pttl(&self, key: &str) -> i64 {
        self.cli(&["PTTL", key]).parse().expect("PTTL is an integer")
    }

    /// Bytes Redis itself reports (`MEMORY USAGE`, every node) for every key of `user`.
    pub fn user_bytes(&self, user: &str) -> u64 {
        self.keys()
            .iter()
            .filter(|k| k.starts_with(&format!("auth:{{{user}}}:")))
            .map(|k| self.cli(&["MEMORY", "USAGE", k, "SAMPLES", "0"]).parse::<u64>().expect("MEMORY USAGE"))
            .sum()
    }

    /// The keys of `user`.
    pub fn user_keys(&self, user: &str) -> Vec<String> {
        self.keys().into_iter().filter(|k| k.starts_with(&format!("auth:{{{user}}}:"))).collect()
    }

    /// Every key on every node, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .ports
            .iter()
            .flat_map(|port| {
                self.cli_on(*port, &["--scan", "--pattern", "*"]).lines().map(str::to_owned).collect::<Vec<_>>()
            })
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort();
        keys
    }

    /// Every key with everything it holds, rendered as text (hash fields and values, set members
    /// with scores, strings), read through the commands of its type.
    pub fn dump(&self) -> Vec<(String, String)> {
        self.keys()
            .into_iter()
            .map(|key| {
                let content = match self.cli(&["TYPE", &key]).as_str() {
                    "hash" => self.cli(&["HGETALL", &key]),
                    "zset" => self.cli(&["ZRANGE", &key, "0", "-1", "WITHSCORES"]),
                    "set" => self.cli(&["SMEMBERS", &key]),
                    "list" => self.cli(&["LRANGE", &key, "0", "-1"]),
                    "string" => self.cli(&["GET", &key]),
                    other => format!("<{other}>"),
                };
                (key, content)
            })
            .collect()
    }
}

// ---- requests, as API Gateway hands them to the function --------------------------------------

pub fn post(path: &str) -> http::request::Builder {
    http::Request::builder().method("POST").uri(path).header("origin", ORIGIN)
}

/// A browser's `fetch(path, {method: "POST", credentials: "include", headers: {"content-type":
/// "application/json"}})` from the app's origin, with the session cookie.
pub fn with_cookie(path: &str, token: &str) -> Request {
    post(path)
        .header("content-type", "application/json")
        .header("cookie", format!("theme=dark; {COOKIE}={token}"))
        .body(Body::Empty)
        .unwrap()
}

pub fn with_body(path: &str, body: serde_json::Value) -> Request {
    post(path).header("content-type", "application/json").body(Body::Text(body.to_string())).unwrap()
}

pub fn refresh_by_cookie(token: &str) -> Request {
    with_cookie("/auth/refresh", token)
}

pub fn refresh_by_body(token: &str) -> Request {
    with_body("/auth/refresh", serde_json::json!({ "refreshToken": token }))
}

pub fn logout_by_cookie(token: &str) -> Request {
    with_cookie("/auth/logout", token)
}

pub fn logout_all(bearer: Option<&str>) -> Request {
    let mut builder = post("/auth/logout-all");
    if let Some(token) = bearer {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::Empty).unwrap()
}

// ---- responses --------------------------------------------------------------------------------

pub use testkit::http::{header, json, text};

/// The new refresh token of a 200 from /auth/refresh: from the cookie when the request used the
/// cookie (and then never in the body), from the body when it used the body (and then no cookie).
pub fn new_token(response: &Response<Body>) -> String {
    assert_eq!(response.status(), 200, "{}", text(response));
    let body = json(response);
    match header(response, "set-cookie") {
        Some(cookie) => {
            assert!(body.get("refreshToken").is_none(), "a cookie refresh never puts the token in the body: {body}");
            let (pair, attributes) = cookie.split_once("; ").expect("attributes");
            let token = pair.strip_prefix(&format!("{COOKIE}=")).expect("our cookie").to_owned();
            let max_age: u64 = attributes
                .split("; ")
                .find_map(|a| a.strip_prefix("Max-Age="))
                .and_then(|v| v.parse().ok())
                .expect("Max-Age");
            assert!(max_age <= REFRESH_TTL_SECS, "{cookie}");
            assert_eq!(attributes, format!("Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"), "{cookie}");
            token
        }
        None => body["refreshToken"].as_str().expect("refreshToken in the body").to_owned(),
    }
}

/// The parts of a refresh token: user, family, number, MAC.
pub fn parts(token: &str) -> (String, String, String, String) {
    let mut it = token.split('.').map(str::to_owned);
    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
}
