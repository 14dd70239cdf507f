//! Performance figures: measures the release bootstraps the way Lambda runs them (through the local
//! Runtime API of `lambda-harness`, environment included) and writes BENCHMARKS.md.
//!
//! Figures: bootstrap sizes; posts-read cold init (exec → first `/next`, median of 10), first
//! invocation, peak RSS; warm cache-hit latency p50/p99 over 1000 invocations beside a raw Redis
//! GET on the same server; and the stampede figure: 20 cold instances (separate processes)
//! missing one key, with the DynamoDB reads they made counted from their own logs.

use std::path::Path;
use std::time::{Duration, Instant};

use lambda_harness::{Function, SpawnOptions};
use serde_json::Value;

use crate::Args;
use crate::stats::{mib, ms, percentile};

const TIMEOUT: Duration = Duration::from_secs(10);
const FUNCTIONS: [&str; 6] =
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

async fn cold_starts(bin: &Path, env: &[(String, String)], event: &Value, runs: usize) -> ColdStats {
    let mut stats = ColdStats { inits: Vec::new(), first_invocations: Vec::new(), peak_rss: Vec::new() };
    for _ in 0..runs {
        let options = SpawnOptions { env: env.to_vec(), ..SpawnOptions::default() };
        let f = Function::start(bin, &options).await.expect("spawn");
        stats.inits.push(f.wait_ready(TIMEOUT).await.expect("init"));
        let first = f.invoke(event, TIMEOUT).await.expect("first invocation");
        assert_eq!(first.status_code(), Some(200), "first invocation: {:?}", first.error_summary());
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
        assert_eq!(inv.status_code(), Some(200));
        latencies.push(inv.latency);
    }
    latencies.sort();
    let rss = f.stop().await.peak_rss_bytes.unwrap_or(0);
    (latencies, rss)
}

fn raw_redis_gets(url: &str, key: &str, n: usize) -> Vec<Duration> {
    let mut conn = redis::Client::open(url).expect("redis url").get_connection().expect("redis connection");
    let mut out = Vec::with_capacity(n);
    for _ in 0..n + 50 {
        let start = Instant::now();
        let _: Option<String> = redis::cmd("GET").arg(key).query(&mut conn).expect("GET");
        out.push(start.elapsed());
    }
    out.drain(..50);
    out.sort();
    out
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
    let env = lambda_harness::env::read_env_file(&args.env_file).expect("env file");
    let redis_url = env.iter().find(|(k, _)| k == "REDIS_URL").map(|(_, v)| v.clone()).expect("REDIS_URL in env file");

    let mut md = String::new();
    let date = time::OffsetDateTime::now_utc().date();
    md.push_str("# Benchmarks\n\n");
    md.push_str(&format!(
        "Written by `{}` on {date}. Machine: {}.\nEvery figure below comes from that one command \
         (scripts/bench.sh → tools/bench), which builds the release binaries, starts the local stack \
         (redis-server + moto on loopback), and runs each bootstrap under the local Lambda Runtime API \
         (tools/lambda-harness) with the environment Lambda would give it. Local moto and Redis on \
         loopback: absolute numbers are this machine's, not AWS's; the ratios are what to read.\n\n",
        args.command,
        machine()
    ));

    md.push_str("## Release bootstrap sizes\n\n| function | size |\n| --- | --- |\n");
    for name in FUNCTIONS {
        if let Ok(meta) = std::fs::metadata(args.bin_dir.join(name)) {
            md.push_str(&format!("| {name} | {} ({} bytes) |\n", mib(meta.len()), meta.len()));
        }
    }
    md.push_str("\nx86_64 release profile (`lto = \"fat\"`, `codegen-units = 1`, `strip`, `panic = \"abort\"`).\n\n");

    let bin = args.bin_dir.join("posts-read");
    let hit = read_event(&args.events, "posts-read/get-hit.json");
    let cold = cold_starts(&bin, &env, &hit, 10).await;
    md.push_str("## posts-read\n\n| measure | value |\n| --- | --- |\n");
    md.push_str(&format!(
        "| cold init, exec → first `/next` (median of 10) | {} |\n",
        ms(percentile(&cold.inits, 50.0))
    ));
    md.push_str(&format!(
        "| cold init min / max | {} / {} |\n",
        ms(cold.inits[0]),
        ms(*cold.inits.last().expect("runs"))
    ));
    md.push_str(&format!(
        "| first invocation (median of 10; opens Redis and DynamoDB connections) | {} |\n",
        ms(percentile(&cold.first_invocations, 50.0))
    ));
    md.push_str(&format!(
        "| peak RSS after the first invocation (median, VmHWM) | {} |\n",
        mib(percentile_u64(&cold.peak_rss))
    ));

    let (warm, warm_rss) = warm_latencies(&bin, &env, &hit, args.warm_invocations).await;
    let raw = raw_redis_gets(&redis_url, "post:1", args.warm_invocations);
    md.push_str(&format!(
        "| warm cache hit `GET /posts/1`, p50 / p99 over {} invocations | {} / {} |\n",
        warm.len(),
        ms(percentile(&warm, 50.0)),
        ms(percentile(&warm, 99.0))
    ));
    md.push_str(&format!(
        "| raw Redis `GET post:1` on the same server, p50 / p99 over {} | {} / {} |\n",
        raw.len(),
        ms(percentile(&raw, 50.0)),
        ms(percentile(&raw, 99.0))
    ));
    md.push_str(&format!("| peak RSS after the warm run | {} |\n\n", mib(warm_rss)));
    md.push_str(
        "Warm latency is measured by the Runtime API from handing the event out to receiving the \
         response, so it includes the runtime's HTTP round trips on loopback, not just the handler.\n\n",
    );

    let (ok, reads) =
        stampede(&bin, &env, &read_event(&args.events, "posts-read/get-hit.json"), &redis_url, "post:1").await;
    md.push_str("## Stampede guard (posts-read)\n\n");
    md.push_str(&format!(
        "20 cold instances (separate processes, as Lambda scales out) asked for `GET /posts/1` at \
         the same moment with the key absent from Redis: {ok}/20 answered 200 and together they \
         made **{reads}** DynamoDB read(s) (counted from their own debug logs, `dynamodb read`). \
         Goal 1; the seed's Node port made 20.\n\n"
    ));

    std::fs::write(&args.out, md).expect("write BENCHMARKS.md");
    println!("wrote {}", args.out.display());
}

fn percentile_u64(sorted: &[u64]) -> u64 {
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}
