//! Test support that starts *real* services: `redis-server` processes on free loopback ports
//! (stopped by PID on drop), moto's server (shared per test run: `make test` starts one and sets
//! `AWS_ENDPOINT_URL`; without it, one is started for this process), and the tables, queues and
//! buckets of `template.yaml`, created under a unique prefix per test by `scripts/provision.py`.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shared::clients::AwsClients;

pub mod api_front_door;
pub mod chromium;
pub mod dynamo_meter;
pub mod http;
pub mod late_proxy;
pub mod oidc_issuer;
mod proxy;
pub mod redis_acl;
pub mod redis_modes;
pub mod redis_server;
pub mod redis_tls;
pub mod serial_moto;
pub mod stack_env;
pub mod tls_front;
pub use api_front_door::ApiFrontDoor;
pub use dynamo_meter::{DynamoMeter, Reads};
pub use late_proxy::LateProxy;
pub use oidc_issuer::OidcIssuer;
pub use redis_modes::{Redis, RedisMode};
pub use redis_server::{Persistence, RedisCluster, RedisServer};
pub use redis_tls::TlsFiles;
pub use serial_moto::SerialMoto;
pub use tls_front::TlsFront;

/// The workspace root (where template.yaml and .venv live).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// The lowest port the kernel hands out for `bind(0)` and outgoing connections (Linux's default
/// `ip_local_port_range` starts at 32768).
pub const EPHEMERAL_FLOOR: u16 = 32_768;

/// A free port on 127.0.0.1 *below* the ephemeral range, for a server that a test stops and starts
/// again on the same port: an ephemeral port freed by the stop can be handed to any other
/// process's outgoing connection or listener in the meantime, and the restarted server then fails
/// to bind while clients reach whatever took the port.
pub fn stable_port() -> u16 {
    stable_port_in(20_000..EPHEMERAL_FLOOR)
}

/// [`stable_port`] within `range`.
pub fn stable_port_in(range: std::ops::Range<u16>) -> u16 {
    let floor = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<u16>().ok()))
        .unwrap_or(EPHEMERAL_FLOOR);
    assert!(range.end <= floor, "ephemeral range starts at {floor}: below {} needed", range.end);
    let span = u128::from(range.end - range.start);
    loop {
        let port = range.start + (uuid::Uuid::new_v4().as_u128() % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn venv_bin(name: &str) -> PathBuf {
    workspace_root().join(".venv/bin").join(name)
}

/// Waits until something accepts TCP connections on `port`, or panics after `limit`.
pub fn wait_for_port(port: u16, limit: Duration) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < limit, "nothing listening on 127.0.0.1:{port} after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct OwnMoto {
    /// moto runs under a small shell that waits on this pipe: when the test process exits, for
    /// whatever reason, the pipe closes and the shell stops moto by its PID. A static is never
    /// dropped, so this is what keeps `cargo test` from leaking servers.
    _lifeline: std::process::ChildStdin,
    /// Kept so the shell is reaped by this process, not left a zombie.
    _shell: std::process::Child,
    endpoint: String,
}

static MOTO: OnceLock<OwnMoto> = OnceLock::new();

/// The local AWS endpoint: `AWS_ENDPOINT_URL` when set (make test), else a moto server started
/// for this process and stopped when it exits.
pub fn aws_endpoint() -> String {
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
        return url;
    }
    MOTO.get_or_init(|| {
        let port = free_port();
        let script = r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & pid=$!; cat >/dev/null; kill "$pid""#;
        let mut child = Command::new("sh")
            .args(["-c", script])
            .arg(venv_bin("moto_server"))
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("moto_server (run scripts/bootstrap.sh first)");
        let lifeline = child.stdin.take().expect("piped stdin");
        wait_for_port(port, Duration::from_secs(30));
        OwnMoto { _lifeline: lifeline, _shell: child, endpoint: format!("http://127.0.0.1:{port}") }
    })
    .endpoint
    .clone()
}

/// AWS clients pointed at the local endpoint with dummy credentials.
pub async fn aws_clients() -> AwsClients {
    aws_clients_at(&aws_endpoint()).await
}

/// AWS clients pointed at `endpoint` (a moto server a test started itself).
pub async fn aws_clients_at(endpoint: &str) -> AwsClients {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new("test", "test", None, None, "testkit"))
        .load()
        .await;
    AwsClients::new(&sdk, true)
}

/// AWS clients pointed at `endpoint` with dummy credentials, built without any I/O: for fixtures
/// that are not async and states whose AWS clients a test may never call.
pub fn aws_clients_offline(endpoint: &str) -> AwsClients {
    let credentials = aws_credential_types::Credentials::new("test", "test", None, None, "testkit");
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(credentials))
        .build();
    AwsClients::new(&sdk, true)
}

/// What `scripts/provision.py` created: resources by logical id, and each function's environment.
#[derive(Clone, Debug)]
pub struct Provisioned {
    pub resources: HashMap<String, HashMap<String, String>>,
    pub functions: HashMap<String, HashMap<String, String>>,
}

impl Provisioned {
    /// The physical name of a resource (for example `PostsTable`).
    pub fn name(&self, logical: &str) -> String {
        self.resources[logical]["name"].clone()
    }

    /// A function's environment as the template declares it, resolved to local resources.
    pub fn env(&self, binary: &str) -> HashMap<String, String> {
        self.functions.get(binary).cloned().unwrap_or_default()
    }
}

/// Creates every resource of template.yaml under a fresh prefix. `overrides` set function
/// variables to local values (REDIS_URL, ALLOWED_ORIGINS, ...).
pub fn provision(overrides: &[(&str, &str)]) -> Provisioned {
    provision_at(&aws_endpoint(), overrides)
}

/// [`provision`] with template parameters set to `params` (for example
/// `("AllowedOrigins", "https://app.example.test:8443")`), resolved as CloudFormation would:
/// wherever the template refers to a parameter (a function's variables, a bucket's CORS rules),
/// its given value replaces the default. `overrides` then set function variables as in
/// [`provision`].
pub fn provision_with(params: &[(&str, &str)], overrides: &[(&str, &str)]) -> Provisioned {
    provision_at_with(&aws_endpoint(), params, overrides)
}

/// [`provision`] against `endpoint` (a moto server a test started itself).
pub fn provision_at(endpoint: &str, overrides: &[(&str, &str)]) -> Provisioned {
    provision_at_with(endpoint, &[], overrides)
}

/// [`provision_with`] against `endpoint`.
pub fn provision_at_with(endpoint: &str, params: &[(&str, &str)], overrides: &[(&str, &str)]) -> Provisioned {
    let prefix = format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut cmd = Command::new(venv_bin("python"));
    cmd.arg(workspace_root().join("scripts/provision.py"))
        .args(["--template", workspace_root().join("template.yaml").to_str().expect("utf-8 path")])
        .args(["--endpoint", endpoint, "--prefix", &prefix]);
    for (k, v) in overrides {
        cmd.arg("--set").arg(format!("{k}={v}"));
    }
    // Each function that uses Redis signs in as its template user, whose password here is the
    // local one every testkit redis-server knows (redis_acl).
    for user in redis_acl::template_users() {
        let param: String = user.name.split('-').map(|w| w[..1].to_uppercase() + &w[1..]).collect();
        cmd.arg("--param").arg(format!("{param}CachePassword={}", redis_acl::password(&user.name)));
    }
    // After the cache passwords, so that a caller's value for a parameter wins (the last
    // `--param` of a name counts).
    for (name, value) in params {
        cmd.arg("--param").arg(format!("{name}={value}"));
    }
    let out = cmd.stderr(Stdio::inherit()).output().expect("run provision.py");
    assert!(out.status.success(), "provision.py failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("provision.py prints JSON");
    let to_map = |v: &serde_json::Value| -> HashMap<String, HashMap<String, String>> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, inner)| {
                let m = inner
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(ik, iv)| iv.as_str().map(|s| (ik.clone(), s.to_owned())))
                    .collect();
                (k.clone(), m)
            })
            .collect()
    };
    Provisioned { resources: to_map(&v["resources"]), functions: to_map(&v["functions"]) }
}

/// An `EnvReader` over a map, for building a function's settings in a test.
pub fn env_reader(vars: HashMap<String, String>) -> shared::config::EnvReader<'static> {
    shared::config::EnvReader::from_fn(move |k| vars.get(k).cloned())
}

/// Everything moto holds, from its `/moto-api/data.json`. Moto builds that dump by walking every
/// backend while other tests keep writing to them, so a dump can fail ("dictionary changed size
/// during iteration": a 500 that is not JSON); it is asked again, up to ten times.
pub async fn moto_data(endpoint: &str) -> serde_json::Value {
    let url = format!("{endpoint}/moto-api/data.json");
    let mut last = String::new();
    for _ in 0..10 {
        match reqwest::get(&url).await {
            Ok(r) if r.status().is_success() => match r.json().await {
                Ok(v) => return v,
                Err(e) => last = e.to_string(),
            },
            Ok(r) => last = format!("status {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("moto's data.json at {url} did not answer with JSON ten times; last: {last}")
}

/// The access-token key pair of this test process (kid `test-1`): verifiers get
/// [`test_public_keys`] as `JWT_PUBLIC_KEYS`, tests mint with [`test_signer`], as auth-refresh would.
fn test_signing() -> &'static shared::auth::access::SigningSettings {
    static KEYS: OnceLock<shared::auth::access::SigningSettings> = OnceLock::new();
    KEYS.get_or_init(|| signing_settings("test-1"))
}

/// Signing settings of a new key pair named `kid`, with the default issuer and audience.
fn signing_settings(kid: &str) -> shared::auth::access::SigningSettings {
    let (key, public) = shared::auth::access::generate_key_pair(kid).expect("key pair");
    shared::auth::access::SigningSettings {
        key,
        kid: kid.into(),
        verify: shared::auth::access::AccessTokenSettings {
            public_keys: vec![public],
            issuer: shared::auth::access::DEFAULT_ISSUER.into(),
            audience: shared::auth::access::DEFAULT_AUDIENCE.into(),
            ttl: Duration::from_secs(900),
        },
    }
}

/// A signer with a key pair of its own that claims `kid` (the test key's is `test-1`): what a
/// verifier must refuse although the header names a key it knows.
pub fn impostor_signer(kid: &str) -> shared::auth::AccessTokenSigner {
    shared::auth::AccessTokenSigner::new(&signing_settings(kid))
}

/// `JWT_PUBLIC_KEYS` for a verifier under test.
pub fn test_public_keys() -> String {
    test_signing().verify.public_keys.iter().map(|k| k.to_entry()).collect::<Vec<_>>().join(",")
}

/// A signer whose tokens verifiers configured with [`test_public_keys`] accept.
pub fn test_signer() -> shared::auth::AccessTokenSigner {
    shared::auth::AccessTokenSigner::new(test_signing())
}
