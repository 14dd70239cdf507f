//! The Redis Cluster drill of issue 28: the node `REDIS_URL` names is replaced under load.
//!
//! A 3-master cluster (testkit, loopback), posts-read (release bootstrap) reading one post in a
//! loop. At 2 s a new master joins, the seed master's slots (keys included) move to it, the seed
//! is removed from the cluster and SIGKILLed; then the new master stalls for 1 s, which breaks
//! the function's link, so that it must connect again with the URL's node gone. Before the fix
//! the process served only misses from then on (every reconnect went through the dead seed).

use std::path::Path;
use std::time::{Duration, Instant};

use lambda_harness::{Function, SpawnOptions};
use serde_json::Value;

use crate::drills::DrillResult;
use testkit::stack_env::with;

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the stall the hit ratio must be back.
const RECOVERY: Duration = Duration::from_secs(3);

pub async fn seed_node_replaced_posts_read(bin_dir: &Path, env: &[(String, String)], event: &Value) -> DrillResult {
    let cluster = testkit::RedisCluster::start(3);
    let seed = cluster.ports[0];
    let env = with(env, &[("REDIS_URL", cluster.url()), ("REDIS_CLUSTER", "true".to_owned())]);
    let f = Function::start(bin_dir.join("posts-read"), &SpawnOptions { env, ..Default::default() })
        .await
        .expect("spawn posts-read");
    f.wait_ready(TIMEOUT).await.expect("init");

    let start = Instant::now();
    // The cluster change runs beside the load: add a master, move the seed's slots, remove and
    // kill the seed, then stall the new master for 1 s. It reports when the stall ended.
    let change = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_secs(2));
        let mut cluster = cluster;
        let new = cluster.add_master();
        cluster.move_all_slots(seed, new);
        cluster.remove_node(seed);
        cluster.pause_node(new, Duration::from_secs(1));
        (cluster, Instant::now())
    });
    let (mut total, mut non_200) = (0usize, 0usize);
    // (time since start, hit) of every invocation.
    let mut answers: Vec<(Duration, bool)> = Vec::new();
    let mut stall_end = None;
    let mut change = Some(change);
    let mut cluster = None;
    loop {
        if let Some(handle) = change.take_if(|h| h.is_finished()) {
            let (c, ended) = handle.await.expect("cluster change");
            cluster = Some(c);
            stall_end = Some(ended.duration_since(start));
        }
        if stall_end.is_some_and(|end| start.elapsed() > end + RECOVERY + Duration::from_secs(2)) {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            break;
        }
        let inv = f.invoke(event, TIMEOUT).await.expect("invoke");
        total += 1;
        if inv.status_code() != Some(200) {
            non_200 += 1;
        }
        let hit =
            inv.json().ok().and_then(|v| v["headers"]["x-cache"].as_str().map(str::to_owned)) == Some("hit".into());
        answers.push((start.elapsed(), hit));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let logs = f.stop().await.logs;
    drop(cluster);
    let panics = logs.matches("panicked").count();
    let ratio = |from: Duration, to: Duration| {
        let window: Vec<bool> = answers.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, h)| *h).collect();
        let hits = window.iter().filter(|h| **h).count();
        (hits, window.len())
    };
    let before = ratio(Duration::ZERO, Duration::from_secs(2));
    let (after, passed) = match stall_end {
        Some(end) => {
            let after = ratio(end + RECOVERY, end + RECOVERY + Duration::from_secs(2));
            (after, non_200 == 0 && panics == 0 && after.1 > 0 && after.0 * 10 >= after.1 * 9)
        }
        None => ((0, 0), false),
    };
    let pct = |(h, n): (usize, usize)| {
        if n == 0 { "-".to_owned() } else { format!("{:.0} % ({h}/{n})", 100.0 * h as f64 / n as f64) }
    };
    let markdown = format!(
        "### Redis Cluster: the seed node replaced under posts-read load\n\n\
         A 3-master cluster; `GET /posts/1` in a loop against the release bootstrap (`REDIS_URL` names master 1). \
         At 2 s a fourth master joins, master 1's slots (with their keys) move to it, master 1 is removed from \
         the cluster and SIGKILLed, then the new master stalls (SIGSTOP) for 1 s so the function's link breaks \
         and it must connect again without the URL's node. Goal: 0 non-200 answers and at least 90 % cache hits \
         in the 2 s that start {} s after the stall.\n\n\
         | | hit ratio |\n| --- | --- |\n| before (0-2 s) | {} |\n| from {} s after the stall | {} |\n\n\
         Non-200 answers: **{non_200}** of {total}. Panics in the log: {panics}. Result: **{}**.\n\n",
        RECOVERY.as_secs(),
        pct(before),
        RECOVERY.as_secs(),
        pct(after),
        if passed { "pass" } else { "FAIL" },
    );
    let summary = format!("{non_200} non-200 of {total}; hit ratio after recovery {}", pct(after));
    DrillResult { markdown, summary, passed }
}
