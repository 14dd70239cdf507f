//! Sessions under the release auth-refresh: what one session costs Redis as it rotates (bench), and
//! a refresh flood from one stolen session (drill). Bytes are Redis's own `MEMORY USAGE` of the
//! user's keys, read from outside the function.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lambda_harness::{Function, SpawnOptions};
use serde_json::Value;

use crate::drills::{DrillResult, refresh_event};
use crate::stats::{ms, percentile};
use testkit::stack_env::with;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a session for `user` through `ops session`; returns its refresh token.
fn session(bin_dir: &Path, env: &[(String, String)], user: &str) -> String {
    let out = Command::new(bin_dir.join("ops"))
        .args(["session", "--user-id", user])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("ops session");
    assert!(out.status.success(), "ops session: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("ops session JSON");
    v["refreshToken"].as_str().expect("refreshToken").to_owned()
}

/// Redis's own count of the bytes of every key of `user` (`SCAN` for the keys, `MEMORY USAGE`
/// for each).
fn user_bytes(conn: &mut redis::Connection, user: &str) -> (u64, usize) {
    let pattern = format!("auth:{{{user}}}:*");
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(&pattern)
        .arg("COUNT")
        .arg(1000)
        .query::<(u64, Vec<String>)>(conn)
        .map(|(_, keys)| keys)
        .unwrap_or_default();
    let bytes = keys
        .iter()
        .map(|k| redis::cmd("MEMORY").arg("USAGE").arg(k).arg("SAMPLES").arg(0).query::<Option<u64>>(conn))
        .map(|r| r.ok().flatten().unwrap_or(0))
        .sum();
    (bytes, keys.len())
}

fn used_memory(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(conn).unwrap_or_default();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn status_and_token(inv: &lambda_harness::Invocation) -> (Option<u16>, Option<String>) {
    let body: Value = inv
        .json()
        .ok()
        .and_then(|v| v["body"].as_str().and_then(|b| serde_json::from_str(b).ok()))
        .unwrap_or(Value::Null);
    (inv.status_code(), body["refreshToken"].as_str().map(str::to_owned))
}

/// The "Session memory" section of docs/performance.md: one session rotated 1,000 times through the
/// release auth-refresh, its bytes in Redis after 1, 100 and 1,000 rotations.
pub async fn memory_section(bin_dir: &Path, env: &[(String, String)], events: &Path) -> String {
    let redis_url = testkit::stack_env::get(env, "REDIS_URL").to_owned();
    let env = with(env, &[("REFRESH_RATE_BURST", "1000000".into()), ("REFRESH_RATE_PER_MINUTE", "1000000".into())]);
    let base = crate::perf::read_event(events, "auth-refresh/refresh-body.json");
    let user = format!("bench-mem-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut token = session(bin_dir, &env, &user);
    let mut conn = redis::Client::open(redis_url.as_str()).and_then(|c| c.get_connection()).expect("redis");
    let f = Function::start(bin_dir.join("auth-refresh"), &SpawnOptions { env, ..Default::default() })
        .await
        .expect("spawn auth-refresh");
    let mut rows = vec![(0usize, user_bytes(&mut conn, &user))];
    for n in 1..=1000usize {
        let inv = f.invoke(&refresh_event(&base, &token), TIMEOUT).await.expect("invoke");
        let (status, next) = status_and_token(&inv);
        assert_eq!(status, Some(200), "rotation {n}");
        token = next.expect("a rotated token");
        if [1, 100, 1000].contains(&n) {
            rows.push((n, user_bytes(&mut conn, &user)));
        }
    }
    f.stop().await;
    let mut md = String::from(
        "## Session memory\n\nOne session rotated 1,000 times through the release auth-refresh (body refreshes, \
         back to back); after each count, Redis's own `MEMORY USAGE` summed over the user's keys (found by `SCAN \
         MATCH auth:{user}:*`). Before this design the same session held one record per rotation (200 rotations: \
         203 keys, ~83 KB).\n\n| rotations | keys | bytes in Redis |\n| --- | --- | --- |\n",
    );
    for (n, (bytes, keys)) in rows {
        let label = if n == 0 { "0 (signed in)".to_owned() } else { n.to_string() };
        md.push_str(&format!("| {label} | {keys} | {bytes} |\n"));
    }
    md.push('\n');
    md
}

/// One stolen session refreshes 100 times a second for 30 s while 50 other users refresh at their
/// normal pace on another execution environment at the same time. Goal: the flood gets 429s (no
/// 5xx), the flooding user's bytes in Redis stay flat, every other user's refresh succeeds, and
/// their p99 stays within 2× (+2 ms) of their p99 before the flood.
pub async fn refresh_flood(bin_dir: &Path, env: &[(String, String)], base: &Value) -> DrillResult {
    let redis = testkit::RedisServer::start();
    let env = with(
        env,
        &[("REDIS_URL", redis.url()), ("REFRESH_RATE_BURST", "10".into()), ("REFRESH_RATE_PER_MINUTE", "60".into())],
    );
    let thief_user = "flood-thief";
    let mut thief = session(bin_dir, &env, thief_user);
    let mut others: Vec<String> = (0..50).map(|i| session(bin_dir, &env, &format!("flood-other-{i}"))).collect();
    let mut conn = redis::Client::open(redis.url().as_str()).and_then(|c| c.get_connection()).expect("redis");
    let spawn = SpawnOptions { env, ..Default::default() };
    let flood_fn = Function::start(bin_dir.join("auth-refresh"), &spawn).await.expect("spawn auth-refresh");
    let other_fn = Function::start(bin_dir.join("auth-refresh"), &spawn).await.expect("spawn auth-refresh");
    flood_fn.wait_ready(TIMEOUT).await.expect("init");
    other_fn.wait_ready(TIMEOUT).await.expect("init");

    // Other users at their normal pace: 10 refreshes a second, round-robin (each user every 5 s),
    // alone for a 10 s baseline, then for 30 s at the same time as the flood.
    let others_for = async |others: &mut Vec<String>, next: &mut usize, secs: u64| {
        let (mut latencies, mut failures) = (Vec::new(), 0usize);
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while started.elapsed() < Duration::from_secs(secs) {
            tick.tick().await;
            let slot = *next % others.len();
            *next += 1;
            let t = Instant::now();
            let inv = other_fn.invoke(&refresh_event(base, &others[slot]), TIMEOUT).await.expect("invoke");
            latencies.push(t.elapsed());
            match status_and_token(&inv) {
                (Some(200), Some(token)) => others[slot] = token,
                _ => failures += 1,
            }
        }
        (latencies, failures)
    };
    let mut next_other = 0usize;
    let (mut before, failures_before) = others_for(&mut others, &mut next_other, 10).await;

    let flood = async {
        let (mut ok, mut limited, mut refused, mut server_errors, mut retry_after_missing) = (0, 0, 0, 0, 0);
        let (mut thief_bytes, mut used) = (Vec::new(), Vec::new());
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut sample_due = Instant::now();
        let mut sent = 0usize;
        while start.elapsed() < Duration::from_secs(30) {
            tick.tick().await;
            let inv = flood_fn.invoke(&refresh_event(base, &thief), TIMEOUT).await.expect("invoke");
            sent += 1;
            match status_and_token(&inv) {
                (Some(200), Some(token)) => {
                    ok += 1;
                    thief = token;
                }
                (Some(429), _) => {
                    limited += 1;
                    let has_retry = inv
                        .json()
                        .ok()
                        .and_then(|v| v["headers"]["retry-after"].as_str().map(str::to_owned))
                        .is_some_and(|v| v.parse::<u64>().is_ok());
                    retry_after_missing += usize::from(!has_retry);
                }
                (Some(s), _) if s >= 500 => server_errors += 1,
                _ => refused += 1,
            }
            if Instant::now() >= sample_due {
                sample_due += Duration::from_secs(1);
                thief_bytes.push(user_bytes(&mut conn, thief_user).0);
                used.push(used_memory(&mut conn));
            }
        }
        (sent, ok, limited, refused, server_errors, retry_after_missing, thief_bytes, used)
    };
    let (flooded, (mut during, failures_during)) = tokio::join!(flood, others_for(&mut others, &mut next_other, 30));
    let (sent, ok, limited, refused, server_errors, retry_after_missing, thief_bytes, used) = flooded;
    let other_failures = failures_before + failures_during;
    let logs = [flood_fn.stop().await.logs, other_fn.stop().await.logs].concat();
    let panics = logs.matches("panicked").count();
    before.sort();
    during.sort();
    let (p99_before, p99_during) = (percentile(&before, 99.0), percentile(&during, 99.0));
    let (min_b, max_b) =
        (thief_bytes.iter().min().copied().unwrap_or(0), thief_bytes.iter().max().copied().unwrap_or(0));
    let (min_u, max_u) = (used.iter().min().copied().unwrap_or(0), used.iter().max().copied().unwrap_or(0));
    // Two cores run both functions, Redis and this process: "unchanged" allows 2× + 2 ms of noise.
    let p99_ok = p99_during <= p99_before * 2 + Duration::from_millis(2);
    let passed = limited * 10 >= sent * 9
        && server_errors == 0
        && refused == 0
        && retry_after_missing == 0
        && max_b - min_b <= 64
        && other_failures == 0
        && p99_ok
        && panics == 0;
    let markdown = format!(
        "### A refresh flood from one stolen session\n\n\
         One session's token sent to the release auth-refresh 100 times a second for 30 s (each 200's successor \
         used next, as a thief would), bucket 10 at once and 60 a minute; meanwhile 50 other users refresh \
         round-robin at 10 a second on a second execution environment at the same time, after a 10 s baseline of \
         the same alone. \
         Bytes are Redis's `MEMORY USAGE` of the flooding user's keys, sampled every second. Goal: ≥ 90 % of \
         the flood answered 429 with `Retry-After`, no 5xx, the user's bytes flat (±64 B), every other user's \
         refresh a 200 and their p99 within 2× + 2 ms of the baseline.\n\n\
         | figure | value |\n| --- | --- |\n| flood requests | {sent} |\n| 200 (the bucket's refill) | {ok} |\n\
         | 429 | {limited} |\n| 429 without Retry-After | {retry_after_missing} |\n| other 4xx | {refused} |\n\
         | 5xx | {server_errors} |\n| flooding user's bytes in Redis, min–max | {min_b}–{max_b} |\n\
         | Redis used_memory, min–max | {min_u}–{max_u} |\n| other users' refreshes failed | {other_failures} |\n\
         | other users' p50 / p99 before the flood | {} / {} |\n| other users' p50 / p99 during the flood | {} / {} |\n\n\
         Panics in the log: {panics}. Result: **{}**.\n\n",
        ms(percentile(&before, 50.0)),
        ms(p99_before),
        ms(percentile(&during, 50.0)),
        ms(p99_during),
        if passed { "pass" } else { "FAIL" },
    );
    let summary = format!(
        "{limited}/{sent} 429, {ok} 200, 5xx {server_errors}; bytes {min_b}–{max_b}; others p99 {} → {}, failed {other_failures}",
        ms(p99_before),
        ms(p99_during)
    );
    DrillResult { markdown, summary, passed }
}
