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

async fn get(store: &RedisStore, key: &str) -> Result<Option<String>, RedisStoreError> {
    store.query(Retry::Idempotent, redis::cmd("GET").arg(key)).await
}

/// Reads `keys` (each set to "v") until one pass finds every one; panics if that has not
/// happened within [`RECOVERY`]. Every failure on the way must be an outage.
async fn every_key_hits(store: &RedisStore, keys: &[String]) {
    let start = Instant::now();
    loop {
        let mut hits = 0;
        for key in keys {
            match tokio::time::timeout(Duration::from_secs(2), get(store, key)).await {
                Ok(Ok(Some(_))) => hits += 1,
                Ok(Ok(None)) => {}
                Ok(Err(e)) => assert!(is_outage(&e), "a recovering cluster gave a non-outage error: {e}"),
                Err(_) => panic!("a call hung for 2 s"),
            }
        }
        if hits == keys.len() {
            return;
        }
        assert!(
            start.elapsed() < RECOVERY,
            "{hits} of {} reads hit {RECOVERY:?} after the seed node was removed, though the other masters hold every slot",
            keys.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The drill of issue 28: a 3-master cluster under steady reads; the master that `REDIS_URL`
/// names has its slots moved to a new master, is removed from the cluster and killed. The store
/// must find the cluster again through the nodes it knows, not only through the URL's node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_whose_seed_node_is_replaced_is_reached_through_the_nodes_it_knows() {
    let mut cluster = RedisCluster::start(3);
    let seed = cluster.ports[0];
    // Signed in as posts-read, whose ACL allows CLUSTER SLOTS and CLUSTER SHARDS but no more.
    let store = std::sync::Arc::new(store_with(&cluster.url_as("posts-read"), true, 200));
    let keys: Vec<String> = (0..64).map(|i| format!("post:{i}")).collect();
    for key in &keys {
        set(&store, key).await.expect("up");
    }
    // Steady reads while the cluster changes, as a warm posts-read instance sees them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|i| {
            let (store, stop, keys) = (store.clone(), stop.clone(), keys.clone());
            tokio::spawn(async move {
                let mut n = i;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = get(&store, &keys[n % keys.len()]).await;
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    let (replacement, new) = tokio::task::spawn_blocking(move || {
        let new = cluster.add_master();
        cluster.move_all_slots(seed, new);
        cluster.remove_node(seed);
        (cluster, new)
    })
    .await
    .expect("cluster change");
    // The removed node is dead: nothing answers on the URL's port any more.
    assert!(std::net::TcpStream::connect(("127.0.0.1", seed)).is_err(), "the seed node still answers");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Then the node now holding the seed's slots stalls for a moment: calls to it time out, the
    // store's link breaks and it must connect again, with the URL's node gone.
    let replacement = tokio::task::spawn_blocking(move || {
        replacement.pause_node(new, Duration::from_secs(1));
        replacement
    })
    .await
    .expect("pause");
    every_key_hits(&store, &keys).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.await.expect("reader");
    }
    drop(replacement);
}

/// Every Redis round trip runs in a `redis` span carrying the invocation's X-Ray trace id, so its
/// time and its lines are found by trace (docs/observability.md says what X-Ray itself records).
#[tokio::test]
async fn each_round_trip_runs_in_a_span_that_carries_the_trace_id() {
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Spans(Arc<Mutex<Vec<(String, String)>>>);
    struct Visitor<'a>(&'a mut String);
    impl tracing::field::Visit for Visitor<'_> {
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            if field.name() == "trace_id" {
                *self.0 = value.to_owned();
            }
        }
        fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
    }
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let mut trace = String::new();
            attrs.record(&mut Visitor(&mut trace));
            self.0.lock().unwrap().push((attrs.metadata().name().to_owned(), trace));
        }
    }

    let server = RedisServer::start();
    let store = store(&server.url());
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    shared::xray::scope(Some(trace.to_owned()), set(&store, "traced")).await.expect("up");
    let seen = spans.0.lock().unwrap().clone();
    assert!(seen.contains(&("redis".to_owned(), trace.to_owned())), "spans: {seen:?}");
}
