//! Redis as ElastiCache Serverless serves it: TLS only, cluster mode, and a script cache that can
//! be empty at any time (a flush, a failover to a node that never saw the scripts).
//!
//! - `rediss://` is verified against the trust the function is given: the test's own CA through
//!   `REDIS_CA_BUNDLE`, otherwise the embedded Amazon roots (which must refuse the local CA);
//! - every Lua script of the bundle (cache: read-or-lock, fill, release, invalidate; refresh
//!   tokens: issue, rotate, end, end-all) runs right after `SCRIPT FLUSH` on every node and
//!   still does its work: the `NOSCRIPT` answer is counted on the servers (`INFO errorstats`) and
//!   the effect is read back with redis-cli, never through the code under test;
//! - on the cluster no script touches keys of two slots: a `CROSSSLOT` refusal would leave the
//!   effects missing, and the servers' own `CROSSSLOT` count must stay at zero.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::auth::{RefreshSettings, RefreshTokenKey, RefreshTokenStore, UserId};
use shared::cache::{Cache, CacheSettings, CacheStatus, OutOfTime, Ttls};
use shared::clients::{RedisSettings, RedisStore, RedisStoreError, Retry};
use shared::config::{EnvReader, Secret};
use shared::deadline::Deadline;
use testkit::{Redis, RedisMode};

fn settings_for(redis: &Redis) -> RedisSettings {
    let env: std::collections::HashMap<String, String> =
        redis.env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let mut reader = EnvReader::from_fn(|k| env.get(k).cloned());
    let settings = RedisSettings::from_env(&mut reader);
    reader.finish(settings).expect("settings")
}

fn store_for(redis: &Redis) -> Arc<RedisStore> {
    Arc::new(RedisStore::new(settings_for(redis)).expect("store"))
}

/// `errorstat_<code>` summed over every node (0 when the server never answered that error).
fn error_count(redis: &Redis, code: &str) -> u64 {
    let prefix = format!("errorstat_{code}:count=");
    redis
        .cli_each(&["INFO", "errorstats"])
        .iter()
        .flat_map(|info| info.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|line| {
            line.trim().strip_prefix(&prefix).and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
        })
        .sum()
}

/// Empties the script cache of every node, as a flush or a failover to a fresh node does.
fn flush_scripts(redis: &Redis) {
    for reply in redis.cli_each(&["SCRIPT", "FLUSH"]) {
        assert_eq!(reply, "OK");
    }
}

/// Runs `step` on an empty script cache and checks that the servers answered `NOSCRIPT` at
/// least once meanwhile (so the reload path, not a cached script, did the work).
async fn after_flush<T>(redis: &Redis, what: &str, step: impl std::future::Future<Output = T>) -> T {
    flush_scripts(redis);
    let before = error_count(redis, "NOSCRIPT");
    let out = step.await;
    assert!(error_count(redis, "NOSCRIPT") > before, "{what}: no NOSCRIPT answer was seen, so no reload was tested");
    out
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Item {
    version: u64,
    name: String,
}

#[derive(Debug, PartialEq)]
enum LoadError {
    Source,
    OutOfTime,
}

impl From<OutOfTime> for LoadError {
    fn from(_: OutOfTime) -> Self {
        LoadError::OutOfTime
    }
}

const TTLS: Ttls = Ttls { value: Duration::from_secs(300), absent: Duration::from_secs(30) };

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(10))
}

async fn every_cache_script_survives_a_script_flush(mode: RedisMode) {
    let redis = Redis::start(mode);
    let cache = Cache::new(store_for(&redis), CacheSettings::default());
    let item = || Item { version: 3, name: "three".into() };

    // READ_OR_LOCK then FILL: the lock is taken before the load and gone after the fill.
    let (value, status) = after_flush(
        &redis,
        "read-or-lock + fill",
        cache.get_or_load(
            "item:1",
            TTLS,
            |i: &Item| i.version,
            deadline(),
            || async {
                assert_eq!(redis.cli(&["EXISTS", "{item:1}:lock"]), "1", "the fill lock is held during the load");
                Ok::<_, LoadError>(Some(item()))
            },
        ),
    )
    .await
    .expect("loaded");
    assert_eq!((value, status), (Some(item()), CacheStatus::Miss));
    assert_eq!(redis.cli(&["GET", "item:1"]), format!("3|{}", serde_json::to_string(&item()).unwrap()));
    assert_eq!(redis.cli(&["EXISTS", "{item:1}:lock"]), "0", "the fill released the lock");

    // READ_OR_LOCK alone: a hit.
    let (value, status) = after_flush(
        &redis,
        "read-or-lock (hit)",
        // A load would answer version 9: the version 3 that comes back is the cached one.
        cache.get_or_load(
            "item:1",
            TTLS,
            |i: &Item| i.version,
            deadline(),
            || async { Ok::<_, LoadError>(Some(Item { version: 9, name: "nine".into() })) },
        ),
    )
    .await
    .expect("hit");
    assert_eq!((value, status), (Some(item()), CacheStatus::Hit));

    // INVALIDATE: a tombstone of the written version.
    after_flush(&redis, "invalidate", cache.invalidate_versioned("item:1", 4, TTLS.value)).await;
    assert_eq!(redis.cli(&["GET", "item:1"]), "4|");

    // RELEASE: a failed load gives the lock back at once.
    let failed = after_flush(
        &redis,
        "read-or-lock + release",
        cache.get_or_load(
            "item:2",
            TTLS,
            |i: &Item| i.version,
            deadline(),
            || async {
                assert_eq!(redis.cli(&["EXISTS", "{item:2}:lock"]), "1");
                // The load failing is what runs RELEASE; flush again so that it meets NOSCRIPT too.
                flush_scripts(&redis);
                Err::<Option<Item>, _>(LoadError::Source)
            },
        ),
    )
    .await;
    assert_eq!(failed.unwrap_err(), LoadError::Source);
    assert_eq!(redis.cli(&["EXISTS", "{item:2}:lock"]), "0", "the failed load released its lock");

    // A key with a hash tag of its own keeps it for its lock: the same slot again.
    let (value, _) = cache
        .get_or_load(
            "item:{tagged}:3",
            TTLS,
            |i: &Item| i.version,
            deadline(),
            || async {
                assert_eq!(redis.cli(&["EXISTS", "item:{tagged}:3:lock"]), "1");
                Ok::<_, LoadError>(Some(item()))
            },
        )
        .await
        .expect("loaded");
    assert_eq!(value, Some(item()));
    assert!(redis.cli(&["GET", "item:{tagged}:3"]).starts_with("3|"), "the fill landed");

    assert_eq!(error_count(&redis, "CROSSSLOT"), 0, "a script touched keys of two slots");
}

async fn every_refresh_token_script_survives_a_script_flush(mode: RedisMode) {
    let redis = Redis::start(mode);
    let key = RefreshTokenKey::new(Secret::new("test-only-refresh-token-secret-0123456789"));
    let store = RefreshTokenStore::new(store_for(&redis), RefreshSettings::with_key(key));
    let user = UserId::parse("user-noscript").unwrap();

    let first = after_flush(&redis, "issue", store.issue(&user)).await.expect("issued").token;
    let second = after_flush(&redis, "rotate", store.rotate(&first)).await.expect("rotated").token;
    assert!(after_flush(&redis, "end", store.revoke_family(&second)).await.expect("ended"));
    assert!(store.rotate(&second).await.is_err(), "an ended session's token is refused");

    store.issue(&user).await.expect("issued");
    store.issue(&user).await.expect("issued");
    let ended = after_flush(&redis, "end-all", store.revoke_all(&user)).await.expect("ended all");
    assert_eq!(ended, 2);
    // What stays is the user's refresh rate bucket, which expires on its own.
    let left: Vec<String> =
        redis.keys().into_iter().filter(|k| k.contains("user-noscript") && !k.ends_with(":rate")).collect();
    assert!(left.is_empty(), "every session key of the user is gone: {left:?}");

    assert_eq!(error_count(&redis, "CROSSSLOT"), 0, "a script touched keys of two slots");
}

async fn tls_is_verified_against_the_given_ca(mode: RedisMode) {
    let redis = Redis::start(mode);
    let store = store_for(&redis);
    store.query::<()>(Retry::Idempotent, redis::cmd("SET").arg("tls:probe").arg("v")).await.expect("SET over TLS");
    assert_eq!(redis.cli(&["GET", "tls:probe"]), "v");

    // Without REDIS_CA_BUNDLE the client trusts the Amazon roots only, which never signed the
    // local CA: the connect fails (an outage for the callers), it is not silently accepted.
    let mut amazon_only = settings_for(&redis);
    amazon_only.ca_bundle = None;
    let refused = RedisStore::new(amazon_only)
        .expect("store")
        .query::<Option<String>>(Retry::Idempotent, redis::cmd("GET").arg("tls:probe"))
        .await
        .expect_err("an unknown CA is refused");
    assert!(matches!(refused, RedisStoreError::Unavailable { .. }), "{refused:?}");
    let chain = format!("{:?}", std::error::Error::source(&refused));
    assert!(chain.contains("UnknownIssuer"), "refused for the certificate: {chain}");
}

macro_rules! in_modes {
    ($($mode:ident),+) => {
        $(
            #[allow(non_snake_case)]
            mod $mode {
                use super::*;

                #[tokio::test]
                async fn every_cache_script_survives_a_script_flush() {
                    super::every_cache_script_survives_a_script_flush(RedisMode::$mode).await;
                }

                #[tokio::test]
                async fn every_refresh_token_script_survives_a_script_flush() {
                    super::every_refresh_token_script_survives_a_script_flush(RedisMode::$mode).await;
                }
            }
        )+
    };
}

in_modes!(Single, Cluster, ClusterTls);

#[tokio::test]
async fn single_tls_is_verified_against_the_given_ca() {
    tls_is_verified_against_the_given_ca(RedisMode::SingleTls).await;
}

#[tokio::test]
async fn cluster_tls_is_verified_against_the_given_ca() {
    tls_is_verified_against_the_given_ca(RedisMode::ClusterTls).await;
}

#[test]
fn an_unusable_ca_bundle_stops_the_init_and_names_the_variable() {
    let dir = std::env::temp_dir().join(format!("ca-bundle-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    for path in [dir.join("missing.pem"), not_pem] {
        let path = path.to_str().unwrap().to_owned();
        let mut env = EnvReader::from_fn(|k| match k {
            "REDIS_URL" => Some("rediss://127.0.0.1:6379".into()),
            "REDIS_CA_BUNDLE" => Some(path.clone()),
            _ => None,
        });
        let settings = RedisSettings::from_env(&mut env);
        let err = env.finish(settings).expect_err("refused");
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].variable, "REDIS_CA_BUNDLE", "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
