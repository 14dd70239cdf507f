//! The Redis store's reconnect behaviour against real redis-server processes: every way a link
//! can end (a kill during a command or a connect, a restart that is still loading, a new process
//! on the same port, a frozen socket, a failover to a replica, a whole cluster restarted) must end
//! in an outage error (never a command error, never a hang) and then in a working store again,
//! in the same process, without a restart of the function.
//!
//! The liveness bounds below (`RECOVERY`) are generous guards against a stuck store, not speed
//! targets: recovery normally takes one back-off.

use std::time::{Duration, Instant};

use shared::clients::{RedisSettings, RedisStore, RedisStoreError, Retry};
use testkit::{Persistence, RedisCluster, RedisServer};

const RECOVERY: Duration = Duration::from_secs(10);

fn store_with(url: &str, cluster: bool, response_ms: u64) -> RedisStore {
    RedisStore::new(RedisSettings {
        url: url.to_owned(),
        cluster,
        username: None,
        password: None,
        connect_timeout: Duration::from_millis(100),
        response_timeout: Duration::from_millis(response_ms),
        reconnect_backoff: Duration::from_millis(100),
        ca_bundle: None,
    })
    .expect("settings")
}

fn store(url: &str) -> RedisStore {
    store_with(url, false, 200)
}

async fn set(store: &RedisStore, key: &str) -> Result<(), RedisStoreError> {
    store.query::<()>(Retry::Idempotent, redis::cmd("SET").arg(key).arg("v")).await
}

fn is_outage(e: &RedisStoreError) -> bool {
    // Display rather than the variant, so this file also runs against older stores.
    e.to_string().starts_with("redis unavailable")
}

/// Calls until one succeeds; every failure on the way must be an outage. Panics if the store
/// has not recovered within [`RECOVERY`] (the stuck state this file exists to catch).
async fn recovers(store: &RedisStore, key: &str) {
    let start = Instant::now();
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(2), set(store, key)).await;
        match attempt {
            Ok(Ok(())) => return,
            Ok(Err(e)) => assert!(is_outage(&e), "a recovering server gave a non-outage error: {e}"),
            Err(_) => panic!("a call hung for 2 s"),
        }
        assert!(start.elapsed() < RECOVERY, "store still failing {RECOVERY:?} after the server came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// While the server is down, calls fail with an outage, and promptly.
async fn fails_as_outage(store: &RedisStore, key: &str) {
    let attempt = tokio::time::timeout(Duration::from_secs(2), set(store, key)).await.expect("a call hung for 2 s");
    let e = attempt.expect_err("the server is down");
    assert!(is_outage(&e), "expected an outage, got {e}");
}

#[tokio::test]
async fn a_command_in_flight_when_the_server_dies_is_an_outage_and_the_next_process_is_used() {
    let mut server = RedisServer::start();
    let store = store_with(&server.url(), false, 3_000);
    set(&store, "k").await.expect("up");
    let mut blpop = redis::cmd("BLPOP");
    blpop.arg("nothing").arg(2);
    let blocked = store.query::<Option<Vec<String>>>(Retry::Once, &blpop);
    let killer = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.kill();
    };
    let (result, ()) = tokio::join!(blocked, killer);
    let e = result.expect_err("the server died under the command");
    assert!(is_outage(&e), "expected an outage, got {e}");
    fails_as_outage(&store, "k").await;
    server.start_again();
    recovers(&store, "k").await;
}

#[tokio::test]
async fn a_connect_in_progress_when_the_server_dies_is_an_outage_and_the_next_process_is_used() {
    let mut server = RedisServer::start();
    let store = store(&server.url());
    // Frozen: the kernel completes the TCP handshake, Redis's never comes, so the connect is
    // in progress when the process dies.
    server.freeze();
    let connecting = set(&store, "k");
    let killer = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.kill();
    };
    let (result, ()) = tokio::join!(connecting, killer);
    assert!(is_outage(&result.expect_err("no server")));
    server.start_again();
    recovers(&store, "k").await;
}

#[tokio::test]
async fn a_restart_still_loading_its_data_is_an_outage_until_loaded() {
    let mut server = RedisServer::start_with(Persistence::Snapshot);
    let store = store(&server.url());
    set(&store, "k").await.expect("up");
    server.snapshot(1_500_000);
    server.restart();
    // Right after the restart the server answers LOADING for a while: an outage, not a bug, and
    // the same store serves again once the data is in.
    let mut saw_loading = false;
    let start = Instant::now();
    loop {
        match set(&store, "k").await {
            Ok(()) => break,
            Err(e) => {
                assert!(is_outage(&e), "LOADING must be an outage, got {e}");
                saw_loading |= e.to_string().contains("not ready") || format!("{e:?}").contains("BusyLoading");
            }
        }
        assert!(start.elapsed() < RECOVERY, "still failing after {RECOVERY:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(saw_loading || start.elapsed() < Duration::from_millis(50), "loading was never observed");
    assert_eq!(server.cli(&["GET", "k"]), "\"v\"");
}

#[tokio::test]
async fn a_new_process_on_the_same_port_is_found_after_a_kill() {
    let mut server = RedisServer::start();
    let store = store(&server.url());
    set(&store, "before").await.expect("up");
    let old_pid = server.pid();
    for _ in 0..3 {
        server.kill();
        fails_as_outage(&store, "k").await;
        server.start_again();
        recovers(&store, "after").await;
        // The write reached the new process (measured there, not by the store).
        assert_eq!(server.cli(&["GET", "after"]), "\"v\"");
        assert_ne!(server.pid(), old_pid);
        let _ = server.cli(&["DEL", "after"]);
    }
}

#[tokio::test]
async fn a_frozen_server_costs_bounded_outages_and_is_used_again_after_thawing() {
    let server = RedisServer::start();
    let store = store(&server.url());
    set(&store, "k").await.expect("up");
    server.freeze();
    for _ in 0..5 {
        fails_as_outage(&store, "k").await;
    }
    server.thaw();
    recovers(&store, "k").await;
}

#[tokio::test]
async fn a_node_demoted_to_replica_is_an_outage_and_its_promotion_is_used() {
    let primary = RedisServer::start();
    let other = RedisServer::start();
    let store = store(&primary.url());
    set(&store, "k").await.expect("up");
    // A failover: the node this store talks to becomes a replica and refuses writes (READONLY).
    assert_eq!(primary.cli(&["REPLICAOF", "127.0.0.1", &other.port.to_string()]), "OK");
    let start = Instant::now();
    while primary.cli(&["ROLE"]).lines().next() != Some("1) \"slave\"") {
        assert!(start.elapsed() < RECOVERY, "never became a replica");
        std::thread::sleep(Duration::from_millis(10));
    }
    fails_as_outage(&store, "k").await;
    // The same endpoint answers as primary again (as an ElastiCache endpoint does after failover).
    assert_eq!(primary.cli(&["REPLICAOF", "NO", "ONE"]), "OK");
    recovers(&store, "k").await;
}

#[tokio::test]
async fn a_cluster_restarted_whole_is_used_again() {
    let mut cluster = RedisCluster::start(3);
    let store = store_with(&cluster.url(), true, 200);
    for key in ["a", "b", "c", "{user}x"] {
        set(&store, key).await.expect("up");
    }
    cluster.kill_all();
    fails_as_outage(&store, "a").await;
    cluster.start_all_again();
    for key in ["a", "b", "c", "{user}x"] {
        recovers(&store, key).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_all_recover_after_repeated_restarts() {
    let mut server = RedisServer::start_with(Persistence::AppendOnly);
    let store = std::sync::Arc::new(store(&server.url()));
    for round in 0..5 {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = (0..8)
            .map(|i| {
                let (store, stop) = (store.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut non_outage = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Err(e) = set(&store, &format!("w{i}")).await
                            && !is_outage(&e)
                        {
                            non_outage.push(e.to_string());
                        }
                        tokio::task::yield_now().await;
                    }
                    non_outage
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100 + 37 * round)).await;
        server.kill();
        tokio::time::sleep(Duration::from_millis(150)).await;
        server.start_again();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in workers {
            let errors = w.await.expect("worker");
            assert!(errors.is_empty(), "round {round}: non-outage errors: {errors:?}");
        }
        for i in 0..8 {
            recovers(&store, &format!("w{i}")).await;
        }
    }
}
