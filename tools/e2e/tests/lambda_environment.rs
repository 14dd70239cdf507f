//! What the functions do with what Lambda hands each invocation, seen from outside the process:
//! the real binaries under the local Runtime API, which sends a new X-Ray trace header with every
//! event, as Lambda does.

use std::time::Duration;

use e2e::stack::{Stack, bin_dir, event};
use lambda_harness::{Function, SpawnOptions};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);

/// posts-read's environment on the stack: the stack's variables, then the function's own (its
/// cache user), then `overrides`.
fn posts_read_env(stack: &Stack, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = stack.env.clone();
    let own = stack.dir.join("functions").join("posts-read.env");
    if own.exists() {
        env.extend(lambda_harness::env::read_env_file(&own).expect("posts-read's env file"));
    }
    env.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

/// `GET /posts/{id}` as API Gateway sends it.
fn get_post(id: &str) -> Value {
    let mut e = event("posts-read/get-hit.json");
    e["rawPath"] = json!(format!("/posts/{id}"));
    e["requestContext"]["http"]["path"] = json!(format!("/posts/{id}"));
    e["pathParameters"] = json!({ "id": id });
    e
}

fn status(inv: &lambda_harness::Invocation) -> Option<u64> {
    inv.json().ok().and_then(|v| v["statusCode"].as_u64())
}

/// Anonymous resident memory of `pid` (heap and stacks, not the mapped binary), in bytes.
fn anon_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("an RssAnon line");
    kb * 1024
}

/// Each invocation's DynamoDB calls carry that invocation's trace header (what the SDK did from
/// `_X_AMZN_TRACE_ID`, which the runtime no longer sets: see the next test).
#[tokio::test(flavor = "current_thread")]
async fn aws_calls_carry_the_invocations_trace_header() {
    let stack = Stack::get("trace-");
    let meter = testkit::DynamoMeter::start(stack.var("AWS_ENDPOINT_URL")).await;
    let env = posts_read_env(&stack, &[("AWS_ENDPOINT_URL", &meter.endpoint)]);
    let f = Function::start(bin_dir().join("posts-read"), &SpawnOptions { env, ..SpawnOptions::default() })
        .await
        .expect("spawn posts-read");
    f.wait_ready(TIMEOUT).await.expect("init");
    let mut seen = Vec::new();
    for n in 0..3 {
        // A post nobody wrote: a cache miss, so a GetItem, every time (a fresh id each time).
        let id = format!("trace-{}-{n}", std::process::id());
        let inv = f.invoke(&get_post(&id), TIMEOUT).await.expect("invoke");
        assert_eq!(status(&inv), Some(404), "{:?}", inv.json());
        let traces = meter.take_traces();
        let gets: Vec<_> = traces.iter().filter(|(op, _)| op == "GetItem").collect();
        assert!(!gets.is_empty(), "a miss reads DynamoDB: {traces:?}");
        for (_, trace) in gets {
            assert_eq!(trace.as_deref(), Some(inv.trace_id.as_str()), "invocation {n}");
        }
        seen.push(inv.trace_id);
    }
    seen.dedup();
    assert_eq!(seen.len(), 3, "each invocation had its own trace header");
    f.stop().await;
}

/// A warm process does not grow with the invocations it serves. Measured from /proc, outside the
/// process: anonymous memory after a warm-up, then after 4,000 more invocations, each with a new
/// trace header. `lambda_runtime` used to `setenv` `_X_AMZN_TRACE_ID` per invocation, which on
/// glibc keeps every old value for ever: ~170 bytes per invocation (680 KB here), without bound.
#[tokio::test(flavor = "current_thread")]
async fn a_warm_process_does_not_grow_with_its_invocations() {
    const WARM_UP: usize = 500;
    const MEASURED: usize = 4000;
    // Allocator noise: a few pages of arena growth, far below 4,000 × 170 bytes.
    const ALLOWED_GROWTH: u64 = 160 * 1024;
    let stack = Stack::get("growth-");
    let env = posts_read_env(&stack, &[]);
    let f = Function::start(bin_dir().join("posts-read"), &SpawnOptions { env, ..SpawnOptions::default() })
        .await
        .expect("spawn posts-read");
    f.wait_ready(TIMEOUT).await.expect("init");
    // Refused before any I/O (an id outside the id alphabet): the runtime loop and the handler only.
    let refused = get_post("not%20an%20id");
    let invoke = async |n: usize| {
        for _ in 0..n {
            let inv = f.invoke(&refused, TIMEOUT).await.expect("invoke");
            assert_eq!(status(&inv), Some(400), "{:?}", inv.json());
        }
    };
    invoke(WARM_UP).await;
    let before = anon_rss(f.pid());
    invoke(MEASURED).await;
    let after = anon_rss(f.pid());
    f.stop().await;
    let growth = after.saturating_sub(before);
    println!("anonymous memory {before} → {after} bytes over {MEASURED} invocations");
    assert!(
        growth <= ALLOWED_GROWTH,
        "anonymous memory grew {growth} bytes over {MEASURED} invocations ({} per invocation): {before} → {after}",
        growth / MEASURED as u64
    );
}
