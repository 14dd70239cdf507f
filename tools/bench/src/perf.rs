//! Performance figures: measures the release bootstraps the way Lambda runs them (through the local
//! Runtime API of `lambda-harness`, environment included) and writes docs/performance.md.
//!
//! Figures: bootstrap sizes; posts-read cold init (exec → first `/next`, median of 10), first
//! invocation, peak RSS; warm cache-hit latency p50/p99 over 1000 invocations beside a raw Redis
//! GET on the same server; and the stampede figure: 20 cold instances (separate processes)
//! missing one key, with the DynamoDB reads they made counted from their own logs. The posts
//! figures at scale (items read per request, the stampede on a slow load) are counted outside the
//! function by a proxy in front of moto (`drills_posts::items_per_request`).

use std::path::Path;
use std::time::{Duration, Instant};

use lambda_harness::{Function, SpawnOptions};
use serde_json::Value;

use crate::Args;
use crate::stats::{mib, ms, percentile};

const TIMEOUT: Duration = Duration::from_secs(10);
pub const FUNCTIONS: [&str; 6] =
    ["posts-read", "posts-write", "auth-refresh", "upload-presign", "stripe-webhook", "email-sender"];

pub fn read_event(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown cpu");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0);
    format!("{cores} cores ({model}), {:.0} GiB RAM, {}", mem_kb as f64 / 1048576.0, std::env::consts::ARCH)
}

struct ColdStats {
    inits: Vec<Duration>,
    first_invocations: Vec<Duration>,
    peak_rss: Vec<u64>,
}

/// A 2xx proxy response, or a non-HTTP function's answer that is not a function error.
pub(crate) fn succeeded(inv: &lambda_harness::Invocation) -> bool {
    !inv.is_error && inv.status_code().is_none_or(|s| (200..300).contains(&s))
}

async fn cold_starts(bin: &Path, env: &[(String, String)], event: &Value, runs: usize) -> ColdStats {
    let mut stats = ColdStats { inits: Vec::new(), first_invocations: Vec::new(), peak_rss: Vec::new() };
    for _ in 0..runs {
        let options = SpawnOptions { env: env.to_vec(), ..SpawnOptions::default() };
        let f = Function::start(bin, &options).await.expect("spawn");
        stats.inits.push(f.wait_ready(TIMEOUT).await.expect("init"));
        let first = f.invoke(event, TIMEOUT).await.expect("first invocation");
        assert!(
            succeeded(&first),
            "{}: first invocation: {:?} {:?}",
            bin.display(),
            first.status_code(),
            first.error_summary()
        );
        stats.first_invocations.push(first.latency);
        let report = f.stop().await;
        stats.peak_rss.push(report.peak_rss_bytes.unwrap_or(0));
    }
    stats.inits.sort();
    stats.first_invocations.sort();
    stats.peak_rss.sort();
    stats
}

async fn warm_latencies(bin: &Path, env: &[(String, String)], event: &Value, n: usize) -> (Vec<Duration>, u64) {
    let options = SpawnOptions { env: env.to_vec(), ..SpawnOptions::default() };
    let f = Function::start(bin, &options).await.expect("spawn");
    f.wait_ready(TIMEOUT).await.expect("init");
    for _ in 0..50 {
        f.invoke(event, TIMEOUT).await.expect("warm-up");
    }
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let inv = f.invoke(event, TIMEOUT).await.expect("invoke");
        assert!(succeeded(&inv), "{}: {:?} {:?}", bin.display(), inv.status_code(), inv.error_summary());
        latencies.push(inv.latency);
    }
    latencies.sort();
    let rss = f.stop().await.peak_rss_bytes.unwrap_or(0);
    (latencies, rss)
}

/// A valid 1×1 PNG, the object every fresh record checks.
const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49,
    0x44, 0x41, 0x54, 0x78, 0xDA, 0x63, 0x64, 0x60, 0xF8, 0x5F, 0x0F, 0x00, 0x02, 0x87, 0x01, 0x80, 0xEB, 0x47, 0xBA,
    0x92, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// Warm latencies of `PUT /users/me/avatar`, each on an upload put into the bucket (by this
/// process, with the stack's credentials) just before the invocation, so every one is a full record.
async fn fresh_records(bin: &Path, env: &[(String, String)], events: &Path, n: usize) -> Vec<Duration> {
    let aws = testkit::aws_clients_at(testkit::stack_env::get(env, "AWS_ENDPOINT_URL")).await;
    let bucket = testkit::stack_env::get(env, "UPLOADS_BUCKET").to_owned();
    let base = read_event(events, "upload-presign/record-avatar.json");
    let options = SpawnOptions { env: env.to_vec(), ..SpawnOptions::default() };
    let f = Function::start(bin, &options).await.expect("spawn");
    f.wait_ready(TIMEOUT).await.expect("init");
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n + 50 {
        let key = format!("uploads/user-1/{}.png", uuid::Uuid::new_v4());
        let put = aws.s3().put_object().bucket(&bucket).key(&key).content_type("image/png");
        put.body(PNG_1X1.to_vec().into()).send().await.expect("put a fresh upload");
        let mut event = base.clone();
        event["body"] = Value::String(serde_json::json!({ "key": key }).to_string());
        let inv = f.invoke(&event, TIMEOUT).await.expect("invoke");
        assert!(succeeded(&inv), "record: {:?} {:?}", inv.status_code(), inv.error_summary());
        if i >= 50 {
            latencies.push(inv.latency);
        }
    }
    latencies.sort();
    f.stop().await;
    latencies
}

/// 20 separate processes, all cold, all asked for one uncached post at once.
async fn stampede(bin: &Path, env: &[(String, String)], event: &Value, redis_url: &str, key: &str) -> (usize, usize) {
    let mut conn = redis::Client::open(redis_url).expect("redis url").get_connection().expect("redis");
    let _: () = redis::cmd("DEL").arg(key).query(&mut conn).expect("DEL");
    let mut env = env.to_vec();
    env.push(("RUST_LOG".into(), "info,shared::posts=debug".into()));
    let options = SpawnOptions { env, ..SpawnOptions::default() };
    let mut instances = Vec::new();
    for _ in 0..20 {
        let f = Function::start(bin, &options).await.expect("spawn");
        instances.push(f);
    }
    for f in &instances {
        f.wait_ready(TIMEOUT).await.expect("init");
    }
    let results = futures::future::join_all(instances.iter().map(|f| f.invoke(event, TIMEOUT))).await;
    let ok = results.iter().filter(|r| r.as_ref().is_ok_and(|i| i.status_code() == Some(200))).count();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut reads = 0;
    for f in instances {
        let report = f.stop().await;
        reads += report.logs.lines().filter(|l| l.contains("dynamodb read")).count();
    }
    (ok, reads)
}

pub async fn run(args: &Args) {
    crate::refuse_without_lambda_shape();
    let env = lambda_harness::env::read_env_file(&args.env_file).expect("env file");
    let redis_url = testkit::stack_env::get(&env, "REDIS_URL").to_owned();

    let mut md = String::new();
    let date = time::OffsetDateTime::now_utc().date();
    md.push_str("# Benchmarks\n\n");
    md.push_str(&format!(
        "Written by `{}` on {date}. Machine: {}.\nEvery figure below comes from that one command \
         (scripts/release-run.sh → tools/bench), which builds the release binaries, starts the local stack \
         (redis-server + moto on loopback), and runs each bootstrap under the local Lambda Runtime API \
         (tools/lambda-harness) with the environment Lambda would give it. Local moto and Redis on \
         loopback: absolute numbers are this machine's, not AWS's; the ratios are what to read.\n\n",
        args.command,
        machine()
    ));

    md.push_str(
        "## Bootstrap sizes\n\n| function | x86_64 release (this machine) | arm64 (`make build`, what Lambda runs) |\n\
         | --- | --- | --- |\n",
    );
    for name in FUNCTIONS {
        let size = |path: std::path::PathBuf| std::fs::metadata(path).map(|m| m.len()).ok();
        let x86 = size(args.bin_dir.join(name)).map_or("not built".into(), |b| format!("{} ({b} bytes)", mib(b)));
        let arm = size(Path::new(".aws-sam/build").join(sam_logical_id(name)).join("bootstrap"))
            .map_or("run `make build`".into(), |b| format!("{} ({b} bytes)", mib(b)));
        md.push_str(&format!("| {name} | {x86} | {arm} |\n"));
    }
    md.push_str(&format!(
        "\nRelease profile (root Cargo.toml): `{}`. The arm64 column is read from `.aws-sam/build` as \
         left by the last `make build`.\n\n",
        release_profile()
    ));

    md.push_str(&crate::floor::section(&args.bin_dir, &env, &args.events, &redis_url).await);
    md.push_str(&crate::sessions::memory_section(&args.bin_dir, &env, &args.events).await);
    md.push_str(include_str!("profile_notes.md"));

    // Every function, with the event that exercises its main path.
    md.push_str(&format!(
        "## Every function\n\nCold init is exec → first `/next` (median of 10 fresh processes); the first \
         invocation opens the Redis / AWS connections; warm p50/p99 over {} invocations after 50 warm-up \
         ones; peak RSS is VmHWM (median of the cold runs after their first invocation, and after the warm run).\n\n\
         | function | path measured | cold init | first invocation | warm p50 | warm p99 | peak RSS after first / after warm run |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
        args.warm_invocations
    ));
    let bearer = testkit::stack_env::bearer(&env, "bench-user");
    for (function, label, event) in targets(&args.events, &bearer) {
        let bin = args.bin_dir.join(function);
        if !bin.exists() {
            md.push_str(&format!("| {function} | {label} | not built | | | | |\n"));
            continue;
        }
        let mut env = env.clone();
        if function == "email-sender" {
            // Measure the function, not moto's SES: the log transport renders and prints.
            env.push(("EMAIL_TRANSPORT".into(), "log".into()));
        }
        let cold = cold_starts(&bin, &env, &event, 10).await;
        let (warm, rss) = warm_latencies(&bin, &env, &event, args.warm_invocations).await;
        md.push_str(&format!(
            "| {function} | {label} | {} | {} | {} | {} | {} / {} |\n",
            ms(percentile(&cold.inits, 50.0)),
            ms(percentile(&cold.first_invocations, 50.0)),
            ms(percentile(&warm, 50.0)),
            ms(percentile(&warm, 99.0)),
            mib(cold.peak_rss.get(cold.peak_rss.len() / 2).copied().unwrap_or(0)),
            mib(rss),
        ));
    }
    md.push_str(
        "\nWarm latency is measured by the Runtime API from handing the event out to receiving the \
         response, so it includes the runtime's HTTP round trips on loopback. Paths that write go to moto, \
         whose own latency dominates them.\n\n",
    );

    let record_bin = args.bin_dir.join("upload-presign");
    if record_bin.exists() {
        let n = (args.warm_invocations / 5).max(20);
        let warm = fresh_records(&record_bin, &env, &args.events, n).await;
        md.push_str(&format!(
            "## Recording an upload (upload-presign)\n\n`PUT /users/me/avatar` on a fresh upload every \
             time (a 70-byte PNG put into the bucket just before, outside the measurement): key check, \
             GetItem, HeadObject, ranged GetObject, CopyObject, conditional UpdateItem, two DeleteObjects, \
             presigned GET. Warm, {n} invocations after 50 warm-up ones, one process.\n\n\
             | measure | p50 | p99 |\n| --- | --- | --- |\n\
             | full record (every S3 and DynamoDB call on moto) | {} | {} |\n\n",
            ms(percentile(&warm, 50.0)),
            ms(percentile(&warm, 99.0))
        ));
    }

    let bin = args.bin_dir.join("posts-read");
    let hit = read_event(&args.events, "posts-read/get-hit.json");
    let (warm, _) = warm_latencies(&bin, &env, &hit, args.warm_invocations).await;
    let raw = crate::floor::raw_redis(&redis_url, "post:1", args.warm_invocations);
    md.push_str("## posts-read cache hit next to a raw Redis GET\n\n| measure | p50 | p99 |\n| --- | --- | --- |\n");
    md.push_str(&format!(
        "| `GET /posts/1` through posts-read, cache hit | {} | {} |\n",
        ms(percentile(&warm, 50.0)),
        ms(percentile(&warm, 99.0))
    ));
    md.push_str(&format!(
        "| one raw Redis `GET post:1` on the same server (sync client, same host) | {} | {} |\n\n",
        ms(raw.p50),
        ms(raw.p99)
    ));

    md.push_str(&stripe_verification_throughput());

    let n = (args.warm_invocations * 2).max(200);
    md.push_str(&crate::concurrency::section(&bin, &env, &hit, n).await);

    let (ok, reads) =
        stampede(&bin, &env, &read_event(&args.events, "posts-read/get-hit.json"), &redis_url, "post:1").await;
    md.push_str("## Stampede guard (posts-read)\n\n");
    md.push_str(&format!(
        "20 cold instances (separate processes, as Lambda scales out) asked for `GET /posts/1` at \
         the same moment with the key absent from Redis: {ok}/20 answered 200 and together they \
         made **{reads}** DynamoDB read(s) (counted from their own debug logs, `dynamodb read`). \
         Goal 1; the seed's Node port made 20.\n\n"
    ));

    md.push_str(
        &crate::drills_posts::items_per_request(&args.bin_dir, &env, &read_event(&args.events, "posts-read/list.json"))
            .await,
    );

    let written_by = format!(
        "Written by `{}` on {date}, in the same run as [the figures against the floor](performance.md). \
         Machine: {}.",
        args.command,
        machine()
    );
    let pages = crate::lambda_shaped::section(&args.bin_dir, &env, &args.events, &written_by).await;
    md.push_str(&pages.summary);
    for (page, text) in [
        (crate::lambda_shaped::report::DECISIONS_PAGE, &pages.decisions),
        (crate::lambda_shaped::report::FIGURES_PAGE, &pages.figures),
    ] {
        let path = args.out.with_file_name(page);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    std::fs::write(&args.out, md).expect("write docs/performance.md");
    println!("wrote {}", args.out.display());
}

/// The `[profile.release]` settings of the workspace, as written (comments dropped).
fn release_profile() -> String {
    let manifest = std::fs::read_to_string("Cargo.toml").unwrap_or_default();
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[profile.release]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("`, `")
}

/// `posts-read` → `PostsReadFunction`, the template's logical id (SAM's build folder name).
fn sam_logical_id(function: &str) -> String {
    let mut id: String = function
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    id.push_str("Function");
    id
}

/// (function, what the event exercises, event) for every function.
fn targets(events: &Path, bearer: &str) -> Vec<(&'static str, &'static str, Value)> {
    let mut logout_all = read_event(events, "auth-refresh/logout-all.json");
    logout_all["headers"]["authorization"] = Value::String(format!("Bearer {bearer}"));
    let mut out = vec![
        ("posts-read", "GET /posts/1, cache hit", read_event(events, "posts-read/get-hit.json")),
        ("posts-read", "GET /posts?page=1&limit=10, cache hit", read_event(events, "posts-read/list.json")),
        (
            "posts-read",
            "GET /posts?limit=10&cursor=… (signed cursor check), cache hit",
            read_event(events, "posts-read/list-cursor.json"),
        ),
        (
            "posts-write",
            "PATCH /posts/1 (read, conditional write, invalidation)",
            read_event(events, "posts-write/update-by-author.json"),
        ),
        ("auth-refresh", "POST /auth/logout-all (JWT check, revoke script)", logout_all),
        ("upload-presign", "POST /uploads (JWT check, presign)", read_event(events, "upload-presign/presign.json")),
        // The seeded upload of user-1: the first invocation records it, every later one is the
        // idempotent repeat. The full record on a fresh upload each time is measured separately
        // (`fresh_records`).
        (
            "upload-presign",
            "PUT /users/me/avatar, the recorded key again (JWT, key check, GetItem, presigned GET)",
            read_event(events, "upload-presign/record-avatar.json"),
        ),
        (
            "upload-presign",
            "GET /users/{id} (GetItem, presigned GET)",
            read_event(events, "upload-presign/profile.json"),
        ),
        (
            "stripe-webhook",
            "unhandled type (signature verification only)",
            read_event(events, "stripe-webhook/unhandled-type.json"),
        ),
        (
            "stripe-webhook",
            "duplicate delivery (verification + conditional PutItem)",
            read_event(events, "stripe-webhook/payment-succeeded-duplicate.json"),
        ),
    ];
    out.push((
        "email-sender",
        "SQS batch redelivered (dedupe claims; log transport)",
        read_event(events, "email-sender/good-batch.json"),
    ));
    out
}

/// Stripe signature verification on 2 KiB bodies, in process (no Lambda round trip).
fn stripe_verification_throughput() -> String {
    let secret = "whsec_bench_secret";
    let body = vec![b'x'; 2048];
    let now = 1_800_000_000;
    let header = shared::payments::sign_header(secret, now, &body);
    let mut md = String::from(
        "## Stripe signature verification throughput\n\n| secrets configured | verifications/s | per verification |\n| --- | --- | --- |\n",
    );
    for secrets in [secret.to_owned(), format!("whsec_old_secret,{secret}")] {
        let mut env = shared::config::EnvReader::from_fn(|k| (k == "STRIPE_WEBHOOK_SECRET").then(|| secrets.clone()));
        let verifier = shared::payments::Verifier::new(&shared::payments::VerifierSettings::from_env(&mut env));
        let n = 200_000u32;
        let start = Instant::now();
        for _ in 0..n {
            verifier.verify(Some(&header), &body, now).expect("valid signature");
        }
        let elapsed = start.elapsed();
        md.push_str(&format!(
            "| {} (match on the last) | {:.0} | {:.2} µs |\n",
            secrets.split(',').count(),
            f64::from(n) / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 / f64::from(n)
        ));
    }
    md.push_str("\n2 KiB body, HMAC-SHA256 over `{t}.{body}`, constant-time compare; release build, one core.\n\n");
    md
}
