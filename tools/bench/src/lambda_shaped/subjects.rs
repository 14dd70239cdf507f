//! What the Lambda-shaped mode measures, and the stated mix of each: the six functions, the
//! floors (the runtime alone; the runtime plus posts-read's TLS connections, opened at first use
//! or during init), and the Node baseline's handlers.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use super::endpoints::TlsEndpoints;
use super::node::NodeSeed;
use super::{Before, PathSpec, Subject, WARM};
use crate::floor::Events;
use crate::perf::read_event;
use crate::stats::{ms, percentile};

/// redis-cli against the TLS server, as a hook can own it.
#[derive(Clone)]
struct Cli {
    port: String,
    ca: String,
}

impl Cli {
    fn new(endpoints: &TlsEndpoints) -> Self {
        let url = endpoints.redis.url();
        let port = url.rsplit(':').next().unwrap_or_default().to_owned();
        Self { port, ca: endpoints.ca() }
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port, "--tls", "--cacert", &self.ca])
            .args(args)
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A hook that deletes `key` in database `db` before each invocation: a cache miss.
    fn evict(&self, db: u8, key: &'static str) -> Before {
        let cli = self.clone();
        Box::new(move || cli.run(&["-n", &db.to_string(), "DEL", key]))
    }
}

fn same(event: Value) -> Events {
    Events::same(event)
}

fn one_path(label: &'static str, events: Events) -> Vec<PathSpec> {
    vec![PathSpec { label, share: 1.0, events, before: None, runs: WARM }]
}

/// posts-read's mix: 95 % cache hits, 5 % misses (the key evicted from Redis database `db` first).
fn hits_and_misses(hit: &Value, cli: &Cli, db: u8) -> Vec<PathSpec> {
    vec![
        PathSpec { label: "GET /posts/1, cache hit", share: 0.95, events: same(hit.clone()), before: None, runs: WARM },
        PathSpec {
            label: "GET /posts/1, cache miss (GetItem, fill)",
            share: 0.05,
            events: same(hit.clone()),
            before: Some(cli.evict(db, "post:1")),
            runs: WARM / 2,
        },
    ]
}

fn rust(name: &str, bin_dir: &Path, env: Vec<(String, String)>, cold: Events, paths: Vec<PathSpec>) -> Subject {
    Subject { name: name.to_owned(), bin: bin_dir.join(name), env, cold, before_cold: None, paths }
}

/// Every subject, in the order of the report.
pub fn all(bin_dir: &Path, events: &Path, endpoints: &TlsEndpoints, node: &NodeSeed) -> Vec<Subject> {
    let read = |name: &str| read_event(events, name);
    let cli = Cli::new(endpoints);
    let mut out = Vec::new();

    // The floors.
    let floor_env = endpoints.plain_env().to_vec();
    out.push(Subject {
        name: "echo-function".into(),
        bin: bin_dir.join("echo-function"),
        env: floor_env.clone(),
        cold: crate::floor::floor_event(),
        before_cold: None,
        paths: one_path("empty invocation", crate::floor::floor_event()),
    });
    for (label, placement) in [("tls-floor", "first-use"), ("tls-floor-at-init", "init")] {
        let mut env = floor_env.clone();
        env.push(("TLS_FLOOR_CONNECT".into(), placement.into()));
        // The floor measures the handshake however long it takes at the share (the functions keep
        // their own connect timeouts, and the report counts what they cost).
        env.push(("REDIS_CONNECT_TIMEOUT_MS".into(), "10000".into()));
        env.push(("REDIS_RESPONSE_TIMEOUT_MS".into(), "10000".into()));
        out.push(Subject {
            name: label.into(),
            bin: bin_dir.join("tls-floor"),
            env,
            cold: crate::floor::floor_event(),
            before_cold: None,
            paths: one_path("invocation on open connections", crate::floor::floor_event()),
        });
    }

    // posts-read: 95 % hits, 5 % misses; the cold start is a miss (both connections opened).
    let hit = read("posts-read/get-hit.json");
    let mut posts_read = rust(
        "posts-read",
        bin_dir,
        endpoints.function_env("posts-read"),
        same(hit.clone()),
        hits_and_misses(&hit, &cli, 0),
    );
    posts_read.before_cold = Some(cli.evict(0, "post:1"));
    out.push(posts_read);

    let update = read("posts-write/update-by-author.json");
    out.push(rust(
        "posts-write",
        bin_dir,
        endpoints.function_env("posts-write"),
        same(update.clone()),
        one_path("PATCH /posts/1 (read, conditional write, invalidation)", same(update)),
    ));

    let refresh = |env: &TlsEndpoints| {
        crate::floor::refresh_events(bin_dir.join("ops"), env.env.clone(), read("auth-refresh/refresh-body.json"))
    };
    out.push(rust(
        "auth-refresh",
        bin_dir,
        endpoints.function_env("auth-refresh"),
        refresh(endpoints),
        one_path("POST /auth/refresh (rotation)", refresh(endpoints)),
    ));

    let presign = read("upload-presign/presign.json");
    out.push(rust(
        "upload-presign",
        bin_dir,
        endpoints.function_env("upload-presign"),
        same(presign.clone()),
        one_path("POST /uploads (JWT check, presign)", same(presign)),
    ));

    let duplicate = read("stripe-webhook/payment-succeeded-duplicate.json");
    out.push(rust(
        "stripe-webhook",
        bin_dir,
        endpoints.function_env("stripe-webhook"),
        same(duplicate.clone()),
        one_path("duplicate delivery (signature, conditional PutItem)", same(duplicate)),
    ));

    let batch = read("email-sender/good-batch.json");
    let mut email_env = endpoints.function_env("email-sender");
    email_env.push(("EMAIL_TRANSPORT".into(), "log".into()));
    out.push(rust(
        "email-sender",
        bin_dir,
        email_env,
        same(batch.clone()),
        one_path("SQS batch redelivered (dedupe claims; log transport)", same(batch)),
    ));

    // The Node baseline: its own handlers and events, keys in Redis database 1.
    let node_subject = |handler: &str, cold: Events, paths: Vec<PathSpec>| Subject {
        name: format!("node {handler}"),
        bin: node.bootstrap(),
        env: node.env(handler, endpoints),
        cold,
        before_cold: None,
        paths,
    };
    out.push(node_subject(
        "noop",
        crate::floor::floor_event(),
        one_path("empty invocation", crate::floor::floor_event()),
    ));
    let mut node_read = node_subject("posts-read", same(hit.clone()), hits_and_misses(&hit, &cli, 1));
    node_read.before_cold = Some(cli.evict(1, "post:1"));
    out.push(node_read);

    let node_refresh = || {
        let cli = cli.clone();
        let base = node.event("auth-refresh.json");
        Events {
            first: Box::new(move || {
                let token = uuid::Uuid::new_v4().simple().to_string();
                cli.run(&["-n", "1", "SETEX", &format!("refresh:{token}"), "604800", "bench-user"]);
                crate::drills::refresh_event(&base, &token)
            }),
            next: Some(crate::floor::next_refresh),
        }
    };
    out.push(node_subject("auth-refresh", node_refresh(), one_path("POST /auth/refresh (rotation)", node_refresh())));

    let node_presign = node.event("upload-presign.json");
    out.push(node_subject(
        "upload-presign",
        same(node_presign.clone()),
        one_path("POST /uploads/presign (presign)", same(node_presign)),
    ));

    // A delivery already processed: the seed's GET-then-SETEX finds the key and answers 200.
    cli.run(&["-n", "1", "SET", "webhook:processed:evt_bench_999999", "1"]);
    let node_duplicate = node.event("stripe-webhook-race.json");
    out.push(node_subject(
        "stripe-webhook",
        same(node_duplicate.clone()),
        one_path("duplicate delivery (signature, Redis GET)", same(node_duplicate)),
    ));

    let node_email = node.event("email-send.json");
    out.push(node_subject(
        "email-send",
        same(node_email.clone()),
        one_path("POST /emails (nodemailer jsonTransport)", same(node_email)),
    ));
    out
}

/// The cost of reading secrets at init: auth-refresh's init (two secrets) and stripe-webhook's
/// (one), throttled at 256 MB, with the secrets read from Secrets Manager over TLS by ARN (as
/// deployed) and with the same values as plain variables (as a local run gives them).
pub async fn secrets_cost(bin_dir: &Path, endpoints: &TlsEndpoints) -> String {
    const RUNS: usize = 10;
    let mut md = String::from(
        "### Reading secrets at init\n\n\
         Init (exec → first `/next`) at the 256 MB share, median of 10 fresh processes each; the \
         secrets read by ARN from the local Secrets Manager behind TLS (one `GetSecretValue` each, \
         the first opening the connection), or the same values as plain variables.\n\n\
         | function | secrets | init, secrets by ARN | init, plain variables | cost of the reads |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    let share = super::cgroup::CpuShare::create("secrets-256", Some(256)).expect("cgroup");
    for (function, names) in super::endpoints::SECRETS.iter().filter(|(f, _)| *f != "posts-read") {
        let mut inits = [Vec::new(), Vec::new()];
        for (i, env) in [endpoints.function_env(function), endpoints.plain_env().to_vec()].into_iter().enumerate() {
            let subject = Subject {
                name: (*function).to_owned(),
                bin: bin_dir.join(function),
                env,
                cold: same(json!({})),
                before_cold: None,
                paths: Vec::new(),
            };
            for _ in 0..RUNS {
                let options = lambda_harness::SpawnOptions {
                    env: subject.env.clone(),
                    cgroup: Some(share.dir().to_path_buf()),
                    ..lambda_harness::SpawnOptions::default()
                };
                let f = lambda_harness::Function::start(&subject.bin, &options).await.expect("spawn");
                inits[i].push(f.wait_ready(Duration::from_secs(30)).await.expect("init"));
                f.stop().await;
            }
            inits[i].sort();
        }
        let (by_arn, plain) = (percentile(&inits[0], 50.0), percentile(&inits[1], 50.0));
        md.push_str(&format!(
            "| {function} | {} | {} | {} | {} |\n",
            names.join(", "),
            ms(by_arn),
            ms(plain),
            ms(by_arn.saturating_sub(plain))
        ));
    }
    md.push('\n');
    md
}
