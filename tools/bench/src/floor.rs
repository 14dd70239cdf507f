//! Every function next to the floor, in one run: `echo-function` (the runtime alone: the
//! `lambda_runtime` loop answering its event) and a raw Redis GET, measured beside each
//! function's figures so that this shared machine's noise cancels in the ratios.
//!
//! Per row: exec → first `/next` and exec → first response (median of 10 cold processes), process
//! CPU per warm invocation (on-CPU time of every thread of the process over the warm run, from
//! /proc, so the runtime's own HTTP exchanges count), warm p50/p99, peak RSS after the first invocation, and
//! peak RSS after 10,000 invocations (flat, or a leak).

use std::path::Path;
use std::time::{Duration, Instant};

use lambda_harness::{Function, SpawnOptions};
use serde_json::{Value, json};

use crate::stats::{mib, ms, percentile};

const TIMEOUT: Duration = Duration::from_secs(10);

/// CPU time a process has run, all its threads: the sum of each thread's `sum_exec_runtime`
/// (/proc/<pid>/task/*/schedstat, nanoseconds). utime + stime in /proc/<pid>/stat is charged by
/// the timer tick, 10 ms at a time, to whatever runs at the tick: a function that works 0.1 ms
/// per invocation and sleeps in between is mis-charged by it, so the scheduler's own count is used.
pub fn process_cpu(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Duration::ZERO };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .map(Duration::from_nanos)
        .sum()
}

/// CPU time this thread has run, in nanoseconds (schedstat is exact where stat ticks are coarse).
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(s.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0))
}

/// One measured row.
pub struct Row {
    pub label: String,
    pub init: Duration,
    pub first_response: Duration,
    pub cpu_per_invocation: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub rss_first: u64,
    pub rss_after: u64,
    /// Of `rss_first`: anonymous memory (heap, stacks) and mapped files (the binary, libc).
    pub anon_first: u64,
    pub file_first: u64,
    /// Anonymous memory after the warm run: what grows if something leaks.
    pub anon_after: u64,
    pub invocations: usize,
}

/// (RssAnon, RssFile) of a live process, in bytes: what the process allocated, and the pages of
/// the files it maps (its own binary above all), which VmHWM counts together.
pub fn rss_split(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("RssAnon:"), field("RssFile:"))
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// How to get the events of a process: most paths repeat one event; a refresh needs a fresh
/// session per process and then the token each answer rotated to.
pub struct Events {
    pub first: Box<dyn Fn() -> Value>,
    pub next: Option<fn(&Value, &Value) -> Value>,
}

impl Events {
    pub fn same(event: Value) -> Self {
        Self { first: Box::new(move || event.clone()), next: None }
    }

    fn first(&self) -> Value {
        (self.first)()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    percentile(&v, 50.0)
}

/// Cold figures over `colds` fresh processes, then one process for `warm` invocations (the first
/// `warm / 10` of them a warm-up), its CPU and RSS read from /proc.
pub async fn measure(
    label: &str,
    bin: &Path,
    env: &[(String, String)],
    events: &Events,
    colds: usize,
    warm: usize,
) -> Row {
    let options = SpawnOptions { env: env.to_vec(), ..SpawnOptions::default() };
    let (mut inits, mut firsts, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    let (mut anons, mut files) = (Vec::new(), Vec::new());
    // Two untimed starts first, so that no row pays for reading its binary from disk.
    for _ in 0..colds.min(2) {
        let f = Function::start(bin, &options).await.expect("spawn");
        f.wait_ready(TIMEOUT).await.expect("init");
        let _ = f.invoke(&events.first(), TIMEOUT).await;
        f.stop().await;
    }
    for _ in 0..colds {
        // Made before the process starts: minting a session is not the function's time.
        let event = events.first();
        let f = Function::start(bin, &options).await.expect("spawn");
        inits.push(f.wait_ready(TIMEOUT).await.expect("init"));
        let inv = f.invoke(&event, TIMEOUT).await.expect("first invocation");
        firsts.push(f.spawned_at().elapsed());
        assert!(
            crate::perf::succeeded(&inv),
            "{label}: first invocation {:?} {:?}",
            inv.status_code(),
            inv.error_summary()
        );
        let (anon, file) = rss_split(f.pid());
        anons.push(anon);
        files.push(file);
        rss.push(f.stop().await.peak_rss_bytes.unwrap_or(0));
    }
    rss.sort();
    let (anon_first, file_first) = (median_u64(anons), median_u64(files));

    if warm == 0 {
        return Row {
            label: label.to_owned(),
            init: median(inits),
            first_response: median(firsts),
            cpu_per_invocation: Duration::ZERO,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            rss_first: rss.get(rss.len() / 2).copied().unwrap_or(0),
            rss_after: rss.get(rss.len() / 2).copied().unwrap_or(0),
            anon_first,
            file_first,
            anon_after: anon_first,
            invocations: 1,
        };
    }
    let f = Function::start(bin, &options).await.expect("spawn");
    f.wait_ready(TIMEOUT).await.expect("init");
    let mut event = events.first();
    let step = async |event: &mut Value| {
        let inv = f.invoke(event, TIMEOUT).await.expect("invoke");
        assert!(crate::perf::succeeded(&inv), "{label}: {:?} {:?}", inv.status_code(), inv.error_summary());
        if let Some(next) = events.next {
            *event = next(event, &inv.json().unwrap_or(Value::Null));
        }
        inv.latency
    };
    for _ in 0..warm / 10 {
        step(&mut event).await;
    }
    let cpu_before = process_cpu(f.pid());
    let mut latencies = Vec::with_capacity(warm);
    for _ in 0..warm {
        latencies.push(step(&mut event).await);
    }
    let cpu = process_cpu(f.pid()).saturating_sub(cpu_before);
    latencies.sort();
    let anon_after = rss_split(f.pid()).0;
    let rss_after = f.stop().await.peak_rss_bytes.unwrap_or(0);
    Row {
        label: label.to_owned(),
        init: median(inits),
        first_response: median(firsts),
        cpu_per_invocation: cpu / u32::try_from(warm.max(1)).unwrap_or(u32::MAX),
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        rss_first: rss.get(rss.len() / 2).copied().unwrap_or(0),
        rss_after,
        anon_first,
        file_first,
        anon_after,
        invocations: warm + warm / 10 + 1,
    }
}

/// A raw Redis GET from this process: latency percentiles and this client's CPU per GET.
pub struct RawRedis {
    pub p50: Duration,
    pub p99: Duration,
    pub cpu_per_get: Duration,
}

pub fn raw_redis(url: &str, key: &str, n: usize) -> RawRedis {
    let mut conn = redis::Client::open(url).expect("redis url").get_connection().expect("redis connection");
    for _ in 0..50 {
        let _: Option<String> = redis::cmd("GET").arg(key).query(&mut conn).expect("GET");
    }
    let mut out = Vec::with_capacity(n);
    let cpu_before = thread_cpu();
    for _ in 0..n {
        let start = Instant::now();
        let _: Option<String> = redis::cmd("GET").arg(key).query(&mut conn).expect("GET");
        out.push(start.elapsed());
    }
    let cpu = thread_cpu().saturating_sub(cpu_before);
    out.sort();
    RawRedis {
        p50: percentile(&out, 50.0),
        p99: percentile(&out, 99.0),
        cpu_per_get: cpu / u32::try_from(n.max(1)).unwrap_or(u32::MAX),
    }
}

/// The echo-function's event: an empty object, answered as `{"statusCode":200,"body":"{}"}`.
pub fn floor_event() -> Events {
    Events::same(json!({}))
}

fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() { "-".into() } else { format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64()) }
}

fn plus(a: Duration, b: Duration) -> String {
    let d = a.as_secs_f64() - b.as_secs_f64();
    format!("{}{:.3} ms", if d >= 0.0 { "+" } else { "−" }, d.abs() * 1000.0)
}

fn plus_mib(a: u64, b: u64) -> String {
    let d = a as f64 - b as f64;
    format!("{}{:.1} MiB", if d >= 0.0 { "+" } else { "−" }, d.abs() / 1048576.0)
}

/// The floor table and each row's distance from it, as Markdown.
pub fn markdown(floor: &Row, raw: &RawRedis, rows: &[Row]) -> String {
    let mut md = String::from(
        "| row | exec → first `/next` | exec → first response | CPU per warm invocation | warm p50 | warm p99 | \
         peak RSS after first | of which anonymous / mapped files | peak RSS after all | anonymous after all |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in std::iter::once(floor).chain(rows) {
        let warm = r.invocations > 1;
        let or_dash = |d: Duration| if warm { ms(d) } else { "–".into() };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} |\n",
            r.label,
            ms(r.init),
            ms(r.first_response),
            or_dash(r.cpu_per_invocation),
            or_dash(r.p50),
            or_dash(r.p99),
            mib(r.rss_first),
            mib(r.anon_first),
            mib(r.file_first),
            if warm { format!("{} (after {})", mib(r.rss_after), r.invocations) } else { "–".into() },
            if warm { mib(r.anon_after) } else { "–".into() },
        ));
    }
    md.push_str(&format!(
        "| raw Redis `GET` (sync client in the bench process) | | | {} client CPU | {} | {} | | | | |\n\n",
        ms(raw.cpu_per_get),
        ms(raw.p50),
        ms(raw.p99)
    ));
    md.push_str(
        "Against the floor (same run). Goals: init ≤ floor + 3 ms; CPU ≤ 1.3 × (floor + raw GET client CPU) for a \
         cache hit and ≤ 1.5 × floor for the webhook's verify-only path and a refresh; RSS after first ≤ floor + \
         3 MB; cache-hit p99 ≤ floor p99 + raw GET p99 + 0.2 ms.\n\n\
         | row | init − floor | CPU ÷ floor | CPU ÷ (floor + raw GET) | p99 − (floor p99 + raw GET p99) | RSS − floor \
         | anonymous − floor's | mapped files − floor's |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows.iter().filter(|r| r.invocations > 1) {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.label,
            plus(r.init, floor.init),
            ratio(r.cpu_per_invocation, floor.cpu_per_invocation),
            ratio(r.cpu_per_invocation, floor.cpu_per_invocation + raw.cpu_per_get),
            plus(r.p99, floor.p99 + raw.p99),
            plus_mib(r.rss_first, floor.rss_first),
            plus_mib(r.anon_first, floor.anon_first),
            plus_mib(r.file_first, floor.file_first),
        ));
    }
    md.push('\n');
    md
}

/// The next refresh: the token the previous answer rotated to.
pub(crate) fn next_refresh(event: &Value, answer: &Value) -> Value {
    let body: Value = answer["body"].as_str().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    crate::drills::refresh_event(event, body["refreshToken"].as_str().unwrap_or_default())
}

/// The "Against the floor" section of docs/performance.md: the floor, a raw GET and each function's
/// main path, one after the other in this run.
pub async fn section(bin_dir: &Path, env: &[(String, String)], events: &Path, redis_url: &str) -> String {
    const COLDS: usize = 10;
    const WARM: usize = 2000;
    let floor =
        measure("echo-function (floor)", &bin_dir.join("echo-function"), env, &floor_event(), COLDS, WARM).await;
    let raw = raw_redis(redis_url, "post:1", WARM);
    let read = |name: &str| crate::perf::read_event(events, name);
    let mut rows = Vec::new();
    let hit = Events::same(read("posts-read/get-hit.json"));
    rows.push(measure("posts-read, cache hit", &bin_dir.join("posts-read"), env, &hit, COLDS, 10_000).await);
    // The runtime before this change, for the comparison: with AWS_LAMBDA_MAX_CONCURRENCY above 1
    // the function runs a multi-threaded runtime (lambda_runtime's `run` still polls sequentially).
    let multi = testkit::stack_env::with(env, &[("AWS_LAMBDA_MAX_CONCURRENCY", "2".into())]);
    let label = "posts-read, cache hit, multi-threaded runtime (AWS_LAMBDA_MAX_CONCURRENCY=2)";
    rows.push(measure(label, &bin_dir.join("posts-read"), &multi, &hit, COLDS, WARM).await);

    let url = redis_url.to_owned();
    let miss_event = read("posts-read/get-hit.json");
    let miss = Events {
        first: Box::new(move || {
            // Evicted before each cold process, so its first answer is a miss and a fill.
            let mut conn = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()).expect("redis");
            let _: () = redis::cmd("DEL").arg("post:1").query(&mut conn).expect("DEL");
            miss_event.clone()
        }),
        next: None,
    };
    let mut miss_row =
        measure("posts-read, cold cache miss (first answer)", &bin_dir.join("posts-read"), env, &miss, COLDS, 0).await;
    miss_row.label.push_str(" — cold figures only");
    rows.push(miss_row);

    let verify = Events::same(read("stripe-webhook/unhandled-type.json"));
    rows.push(measure("stripe-webhook, verify only", &bin_dir.join("stripe-webhook"), env, &verify, COLDS, WARM).await);
    let label = "stripe-webhook, verify only, multi-threaded runtime (AWS_LAMBDA_MAX_CONCURRENCY=2)";
    rows.push(measure(label, &bin_dir.join("stripe-webhook"), &multi, &verify, COLDS, WARM).await);

    rows.push(refresh_row(bin_dir, env, events, COLDS, WARM).await);

    let mut md = String::from(
        "## Against the floor\n\n`echo-function` (tools/lambda-harness: `lambda_runtime` answering its event, nothing \
         else) is the floor: what the runtime alone costs on this harness. Measured in the same run as the rows \
         below, one after the other; CPU is the on-CPU time of every thread of the function's process \
         (the scheduler's `sum_exec_runtime`, /proc/<pid>/task/*/schedstat) over 2000 warm invocations (10,000 \
         for the cache hit, whose RSS must stay flat). RSS is split, from /proc/<pid>/status before the process stops, \
         into anonymous memory (what the process allocated: it must not grow over the warm run) and mapped \
         files (the pages of the bootstrap and libc it maps, which follow the binary's size).\n\n",
    );
    md.push_str(&markdown(&floor, &raw, &rows));
    md
}

/// auth-refresh rotating one fresh session (from `ops session`) back to back: each invocation
/// presents the token the previous one rotated to.
/// Refresh events of auth-refresh: each process starts on a fresh session (`ops session` with
/// `env`, so on the same Redis as the function), then refreshes with the token each answer
/// rotated to.
pub fn refresh_events(ops: std::path::PathBuf, env: Vec<(String, String)>, base: Value) -> Events {
    Events {
        first: Box::new(move || {
            let out = std::process::Command::new(&ops)
                .args(["session", "--user-id", &format!("bench-{}", uuid::Uuid::new_v4().simple())])
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .output()
                .expect("ops session");
            assert!(out.status.success(), "ops session: {}", String::from_utf8_lossy(&out.stderr));
            let v: Value = serde_json::from_slice(&out.stdout).expect("ops session JSON");
            crate::drills::refresh_event(&base, v["refreshToken"].as_str().expect("refreshToken"))
        }),
        next: Some(next_refresh),
    }
}

pub async fn refresh_row(bin_dir: &Path, env: &[(String, String)], events: &Path, colds: usize, warm: usize) -> Row {
    let read = |name: &str| crate::perf::read_event(events, name);
    let ops = bin_dir.join("ops");
    // 2000 back-to-back rotations of one session: far over the per-user bucket, which is not what
    // this row measures.
    let refresh_env = testkit::stack_env::with(
        env,
        &[("REFRESH_RATE_BURST", "1000000".into()), ("REFRESH_RATE_PER_MINUTE", "1000000".into())],
    );
    let refresh = refresh_events(ops, refresh_env.clone(), read("auth-refresh/refresh-body.json"));
    measure("auth-refresh, refresh (rotation)", &bin_dir.join("auth-refresh"), &refresh_env, &refresh, colds, warm)
        .await
}
