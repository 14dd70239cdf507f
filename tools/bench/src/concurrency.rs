//! One posts-read process at `AWS_LAMBDA_MAX_CONCURRENCY` 1, 4 and 16 (Lambda Managed Instances
//! run several invocations at once in one execution environment): cache-hit throughput and the
//! process's CPU per request, with that many invocations kept in flight against it.
//!
//! CPU is the process's own (every thread, /proc schedstat), so the harness driving it is not
//! counted; throughput is wall-clock over the measured invocations, so it is bounded by this
//! machine's cores, which the harness shares.

use std::path::Path;
use std::time::{Duration, Instant};

use lambda_harness::{Function, SpawnOptions};
use serde_json::Value;

use crate::floor::process_cpu;

const TIMEOUT: Duration = Duration::from_secs(10);
/// The concurrency levels measured.
pub const LEVELS: [usize; 3] = [1, 4, 16];

/// One level's figures.
pub struct Level {
    pub concurrency: usize,
    pub requests_per_second: f64,
    pub cpu_per_request: Duration,
    pub rss: u64,
    /// The most invocations the process held at once, counted by the Runtime API.
    pub max_in_flight: usize,
}

/// Measures `event` (a cache hit) at one concurrency: `n` invocations after a warm-up, always
/// `concurrency` of them in flight.
pub async fn level(bin: &Path, env: &[(String, String)], event: &Value, concurrency: usize, n: usize) -> Level {
    let mut env = env.to_vec();
    env.retain(|(k, _)| k != "AWS_LAMBDA_MAX_CONCURRENCY");
    if concurrency > 1 {
        env.push(("AWS_LAMBDA_MAX_CONCURRENCY".into(), concurrency.to_string()));
    }
    let options = SpawnOptions { env, ..SpawnOptions::default() };
    let f = Function::start(bin, &options).await.expect("spawn");
    f.wait_ready(TIMEOUT).await.expect("init");
    let run = |count: usize| {
        let f = &f;
        async move {
            let per_worker = count.div_ceil(concurrency);
            let workers = (0..concurrency).map(|_| async move {
                for _ in 0..per_worker {
                    let inv = f.invoke(event, TIMEOUT).await.expect("invoke");
                    assert_eq!(inv.status_code(), Some(200), "{:?}", inv.error_summary());
                }
            });
            futures::future::join_all(workers).await;
            per_worker * concurrency
        }
    };
    run(100.max(concurrency * 10)).await;
    let cpu_before = process_cpu(f.pid());
    let started = Instant::now();
    let done = run(n).await;
    let wall = started.elapsed();
    let cpu = process_cpu(f.pid()).saturating_sub(cpu_before);
    let max_in_flight = f.api().max_in_flight();
    let rss = f.stop().await.peak_rss_bytes.unwrap_or(0);
    Level {
        concurrency,
        requests_per_second: done as f64 / wall.as_secs_f64(),
        cpu_per_request: cpu / done as u32,
        rss,
        max_in_flight,
    }
}

/// The docs/performance.md section.
pub async fn section(bin: &Path, env: &[(String, String)], event: &Value, n: usize) -> String {
    let mut md = format!(
        "## posts-read at concurrency 1, 4 and 16 (one process, Lambda Managed Instances)\n\n\
         `GET /posts/1`, cache hit, {n} invocations after a warm-up, with `AWS_LAMBDA_MAX_CONCURRENCY` \
         invocations always in flight against one process (\"held at once\": the most the Runtime API \
         saw handed out and not yet answered). Concurrency 1 is the classic setting (current-thread runtime, one `/next` loop); \
         above 1, the multi-threaded runtime and lambda_runtime's concurrent runner. CPU is the \
         function process's own, all threads; throughput shares this machine's cores with the harness.\n\n\
         | concurrency | held at once | requests/s | CPU per request | peak RSS |\n| --- | --- | --- | --- | --- |\n"
    );
    for concurrency in LEVELS {
        let l = level(bin, env, event, concurrency, n).await;
        md.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} |\n",
            l.concurrency,
            l.max_in_flight,
            l.requests_per_second,
            crate::stats::us(l.cpu_per_request),
            crate::stats::mib(l.rss)
        ));
    }
    md.push('\n');
    md
}
