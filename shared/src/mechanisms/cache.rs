//! Cache-aside over Redis: get-or-load with TTL (±10 % jitter), a stampede guard, and fills that
//! can never put an older version over a newer write.
//!
//! The cache is an optimisation, never a dependency: every Redis failure is logged at `warn` and
//! treated as a miss, so callers answer from the source of truth with at most the Redis client's
//! bounded timeouts added (see `clients::redis`).
//!
//! Entries are stored as `"<version>|<json>"`. How the stale-fill race is closed: a writer does
//! not DEL the key after its write, it leaves a *tombstone* `"<new version>|"` (see
//! [`Cache::invalidate_versioned`]). A fill is one script that refuses to write a version lower
//! than what is there (value or tombstone), so a slow reader that loaded version N before the
//! write cannot put N back after the write of N+1: it finds the tombstone N+1 and gives up.
//! A tombstone reads as a miss; the first fill of the current version replaces it.
//!
//! Absence is cached too (`"<version>|null"`, a shorter TTL), at the version of the tombstone the
//! loader found before it read the source: after a delete of version N the key holds the tombstone
//! N+1, the first reader fills "absent at N+1", and every later read is a hit. A write that comes
//! after leaves a higher tombstone, so an absence cannot outlive the write that ends it.
//!
//! Stampede guard: on a miss, one caller takes a lock `{key}:lock` (`SET NX PX` with a random
//! token; the hash tag keeps it in the key's cluster slot) and loads; the fill script also
//! releases the lock by compare-and-delete. The lock lives until the holder's own deadline (the
//! end of its invocation: it cannot be loading after that), so it expires by itself when a holder
//! dies and never while one can still be loading. Everyone else waits for the fill, however slow
//! the load is, until *their* deadline: a slow (expensive) load is collapsed like a fast one. A
//! waiter that reaches its deadline answers [`OutOfTime`] (a 503 with Retry-After) rather than
//! adding one more read to the source that is already slow. When a holder's load fails it
//! releases the lock and the next waiter takes it over.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use redis::Script;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clients::{RedisStore, Retry};
use crate::config::EnvReader;
use crate::deadline::Deadline;
use crate::metrics::names;

/// Whether a value came from the cache; sent to clients as `x-cache: hit|miss`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from Redis.
    Hit,
    /// Loaded from the source (or Redis was unavailable).
    Miss,
}

impl CacheStatus {
    /// The `x-cache` header value: `hit` or `miss`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
        }
    }
}

/// `ttl` ± 10 %, so keys written together do not all expire in the same instant.
pub fn jittered(ttl: Duration) -> Duration {
    let ms = ttl.as_millis() as u64;
    let spread = ms / 10;
    if spread == 0 {
        return ttl;
    }
    Duration::from_millis(rand::rng().random_range(ms - spread..=ms + spread))
}

/// Read, and take the fill lock on a miss. Returns {1, entry} on a hit, {2, tombstone version}
/// when this caller now holds the lock, {0, tombstone version} when another caller holds it (the
/// version is 0 when there is no tombstone).
const READ_OR_LOCK: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, -1) ~= '|' then return {1, v} end
local tomb = 0
if v then tomb = tonumber(string.sub(v, 1, -2)) or 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, tomb} end
return {0, tomb}
";

/// Fill unless a newer version (or the same version's value) is there; release our lock.
const FILL: &str = r"
local cur = redis.call('GET', KEYS[1])
local ok = true
if cur then
  local sep = string.find(cur, '|', 1, true)
  local cv = sep and tonumber(string.sub(cur, 1, sep - 1)) or 0
  local tomb = sep == #cur
  local v = tonumber(ARGV[1])
  if cv > v or (cv == v and not tomb) then ok = false end
end
if ok then redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3]) end
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end
if ok then return 1 else return 0 end
";

/// Compare-and-delete of the fill lock (after a failed load).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Leave a tombstone of `version` unless something newer is already there.
const INVALIDATE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local cv = sep and tonumber(string.sub(cur, 1, sep - 1)) or 0
  if cv > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|', 'PX', ARGV[2])
return 1
";

/// How a waiter polls for another caller's fill: every `poll_every` at first, backing off to
/// `poll_max` (a slow load is waited for until the waiter's own deadline, so the polls are
/// spaced out rather than hammering Redis for seconds).
#[derive(Clone, Copy, Debug)]
pub struct CacheSettings {
    /// First interval between a waiter's reads of the key (10 ms by default).
    pub poll_every: Duration,
    /// Longest interval the polls back off to (50 ms by default).
    pub poll_max: Duration,
    /// Time kept back from a waiter's deadline to answer (a 503) instead of timing out.
    pub answer_reserve: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            poll_every: Duration::from_millis(10),
            poll_max: Duration::from_millis(50),
            answer_reserve: Duration::from_millis(250),
        }
    }
}

impl CacheSettings {
    /// Nothing to configure any more: the lock's lifetime and the wait both come from the
    /// invocation's deadline. Kept so every function builds its cache the same way.
    pub fn from_env(_env: &mut EnvReader<'_>) -> Self {
        Self::default()
    }
}

/// The caller's deadline came before a value: either it waited for another caller's fill up to
/// its own deadline, or its own load ran past it. Answer "retry shortly", never a second read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the cache fill did not finish before the request's deadline")]
pub struct OutOfTime;

/// Lifetimes of what a fill writes: a value, and the record that the source has nothing.
#[derive(Clone, Copy, Debug)]
pub struct Ttls {
    /// TTL of a cached value, before jitter.
    pub value: Duration,
    /// TTL of a cached "absent", before jitter; usually shorter.
    pub absent: Duration,
}

struct Scripts {
    read_or_lock: Script,
    fill: Script,
    release: Script,
    invalidate: Script,
}

/// Cache-aside over one Redis store: get-or-load, counters and versioned invalidation. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    redis: Arc<RedisStore>,
    settings: CacheSettings,
    scripts: Arc<Scripts>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("redis", &self.redis).field("settings", &self.settings).finish()
    }
}

enum Read {
    Hit(String),
    /// This caller holds the lock; the tombstone version found (0: none).
    Locked(u64),
    /// Another caller holds the lock.
    Busy,
}

/// The fill lock of `key`, in `key`'s cluster slot (the scripts touch both): `{key}:lock`, whose
/// hash tag is the whole key, unless the key has a hash tag of its own, which the lock then keeps.
/// (A key with a `}` outside a hash tag could not be wrapped so; the bundle's keys have none.)
fn lock_key(key: &str) -> String {
    if has_hash_tag(key) {
        format!("{key}:lock")
    } else {
        debug_assert!(!key.contains('}'), "cache key {key:?} has a '}}' outside a hash tag");
        format!("{{{key}}}:lock")
    }
}

/// Whether Redis Cluster hashes only part of `key`: a `{` followed later by a `}` with at least
/// one character between them.
fn has_hash_tag(key: &str) -> bool {
    key.find('{').is_some_and(|open| key[open + 1..].find('}').is_some_and(|len| len > 0))
}

/// Splits `"<version>|<json>"`; `None` for anything else.
fn payload(entry: &str) -> Option<&str> {
    let (version, json) = entry.split_once('|')?;
    version.parse::<u64>().ok()?;
    (!json.is_empty()).then_some(json)
}

impl Cache {
    /// A cache over `redis`; prepares its scripts (loaded into Redis on first use).
    pub fn new(redis: Arc<RedisStore>, settings: CacheSettings) -> Self {
        let scripts = Scripts {
            read_or_lock: Script::new(READ_OR_LOCK),
            fill: Script::new(FILL),
            release: Script::new(RELEASE),
            invalidate: Script::new(INVALIDATE),
        };
        Self { redis, settings, scripts: Arc::new(scripts) }
    }

    /// The Redis store underneath, for callers that need a raw command.
    pub fn redis(&self) -> &Arc<RedisStore> {
        &self.redis
    }

    async fn read_or_lock(
        &self,
        key: &str,
        lock: &str,
        token: &str,
        lock_ttl: Duration,
    ) -> Result<Read, crate::clients::RedisStoreError> {
        let ttl_ms = (lock_ttl.as_millis() as u64).max(1);
        let reply: Vec<redis::Value> = self
            .redis
            .run(Retry::Idempotent, |mut conn| async move {
                self.scripts.read_or_lock.key(key).key(lock).arg(token).arg(ttl_ms).invoke_async(&mut conn).await
            })
            .await?;
        let code = reply.first().and_then(|v| redis::from_redis_value_ref::<i64>(v).ok()).unwrap_or(0);
        let tombstone = || reply.get(1).and_then(|v| redis::from_redis_value_ref::<u64>(v).ok()).unwrap_or(0);
        Ok(match code {
            1 => {
                Read::Hit(reply.get(1).and_then(|v| redis::from_redis_value_ref::<String>(v).ok()).unwrap_or_default())
            }
            2 => Read::Locked(tombstone()),
            _ => Read::Busy,
        })
    }

    /// Writes `value` at `version` unless something newer is there, and releases `lock_token`.
    pub async fn fill<T: Serialize>(
        &self,
        key: &str,
        version: u64,
        value: &T,
        ttl: Duration,
        lock_token: &str,
    ) -> bool {
        let Ok(json) = serde_json::to_string(value) else { return false };
        let ttl_ms = jittered(ttl).as_millis() as u64;
        let lock = lock_key(key);
        let result: Result<i64, _> = self
            .redis
            .run(Retry::Idempotent, |mut conn| {
                let (lock, json) = (&lock, &json);
                async move {
                    self.scripts
                        .fill
                        .key(key)
                        .key(lock)
                        .arg(version)
                        .arg(json)
                        .arg(ttl_ms)
                        .arg(lock_token)
                        .invoke_async(&mut conn)
                        .await
                }
            })
            .await;
        match result {
            Ok(n) => {
                // 0: the script refused a version older than what is there (a stale fill).
                crate::metrics::count(if n == 1 { names::CACHE_FILLS } else { names::CACHE_STALE_REFUSALS }, 1);
                n == 1
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "cache fill failed");
                false
            }
        }
    }

    async fn release(&self, key: &str, token: &str) {
        let lock = lock_key(key);
        let result: Result<i64, _> = self
            .redis
            .run(Retry::Idempotent, |mut conn| {
                let lock = &lock;
                async move { self.scripts.release.key(lock).arg(token).invoke_async(&mut conn).await }
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(key, error = %e, "cache lock release failed; it expires on its own");
        }
    }

    /// After a write of `version`: readers miss from now on, and no fill of an older version
    /// can land (the tombstone lives as long as an entry would).
    pub async fn invalidate_versioned(&self, key: &str, version: u64, ttl: Duration) {
        let ttl_ms = ttl.as_millis() as u64;
        let result: Result<i64, _> = self
            .redis
            .run(Retry::Idempotent, |mut conn| async move {
                self.scripts.invalidate.key(key).arg(version).arg(ttl_ms).invoke_async(&mut conn).await
            })
            .await;
        if let Err(e) = result {
            tracing::error!(key, version, error = %e, "cache invalidation failed; the entry may be stale until its TTL");
        }
    }

    /// The cached value of `key`, if there is one: no lock, no load (`None` for a miss, a
    /// tombstone, an undecodable entry or a cache failure).
    pub async fn peek<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        match self.redis.query::<Option<String>>(Retry::Idempotent, redis::cmd("GET").arg(key)).await {
            Ok(entry) => {
                entry.as_deref().and_then(payload).and_then(|json| serde_json::from_str::<Option<T>>(json).ok())?
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "cache read failed");
                None
            }
        }
    }

    /// Increments a counter (list generations); failures are logged.
    pub async fn bump(&self, key: &str) {
        if let Err(e) = self.redis.query::<i64>(Retry::Idempotent, redis::cmd("INCR").arg(key)).await {
            tracing::error!(key, error = %e, "generation bump failed; cached lists may be stale until their TTL");
        }
    }

    /// An integer counter (list generations); `0` when absent, `None` when the cache is down.
    pub async fn counter(&self, key: &str) -> Option<u64> {
        match self.redis.query::<Option<u64>>(Retry::Idempotent, redis::cmd("GET").arg(key)).await {
            Ok(v) => Some(v.unwrap_or(0)),
            Err(e) => {
                tracing::warn!(key, error = %e, "cache read failed");
                None
            }
        }
    }

    /// Cache-aside with the stampede guard. `load` reads the source of truth (`None`: not
    /// found, cached too, for `ttls.absent`, so that reads of absent keys do not all reach the
    /// database); `version_of` gives the version a loaded value is filled at (an absence is
    /// filled at the version of the tombstone found before the load).
    ///
    /// `deadline` is the caller's: the fill lock lives until it, the load is cut off at it, and
    /// a caller that finds another's fill in progress waits for it until then (less
    /// `answer_reserve`) and then gives up with [`OutOfTime`], never reading the source itself.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        ttls: Ttls,
        version_of: fn(&T) -> u64,
        deadline: Deadline,
        load: F,
    ) -> Result<(Option<T>, CacheStatus), E>
    where
        T: Serialize + DeserializeOwned,
        E: From<OutOfTime>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let lock = lock_key(key);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let give_up_at = deadline.at.checked_sub(self.settings.answer_reserve).unwrap_or(deadline.at);
        let mut poll = self.settings.poll_every;
        let mut holds_lock = false;
        let mut waited = false;
        let mut tombstone = 0;
        loop {
            match self.read_or_lock(key, &lock, &token, deadline.remaining()).await {
                Ok(Read::Hit(entry)) => match payload(&entry).map(serde_json::from_str::<Option<T>>) {
                    Some(Ok(v)) => {
                        crate::metrics::count(names::CACHE_HITS, 1);
                        return Ok((v, CacheStatus::Hit));
                    }
                    // An entry written by another version of the code: reload and overwrite.
                    _ => tracing::warn!(key, "cache entry undecodable; treating as a miss"),
                },
                Ok(Read::Locked(tomb)) => {
                    holds_lock = true;
                    tombstone = tomb;
                }
                Ok(Read::Busy) => {
                    if !waited {
                        // Once per read that waits, however many polls the wait takes.
                        crate::metrics::count(names::CACHE_WAITS, 1);
                        waited = true;
                    }
                    let now = Instant::now();
                    if now >= give_up_at {
                        tracing::warn!(key, "another caller's fill did not land before our deadline");
                        return Err(OutOfTime.into());
                    }
                    tokio::time::sleep(poll.min(give_up_at - now)).await;
                    poll = (poll * 3 / 2).min(self.settings.poll_max);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "cache unavailable; reading the source of truth");
                    return bounded(deadline, load()).await.map(|v| (v, CacheStatus::Miss));
                }
            }
            break;
        }
        crate::metrics::count(names::CACHE_MISSES, 1);
        let loaded = match bounded(deadline, load()).await {
            Ok(v) => v,
            Err(e) => {
                if holds_lock {
                    self.release(key, &token).await;
                }
                return Err(e);
            }
        };
        let (version, ttl) = match &loaded {
            Some(v) => (version_of(v), ttls.value),
            None => (tombstone, ttls.absent),
        };
        self.fill(key, version, &loaded, ttl, if holds_lock { &token } else { "" }).await;
        Ok((loaded, CacheStatus::Miss))
    }
}

/// A load cut off at the deadline: past it the lock has expired (it lives until the deadline),
/// so a load still running would no longer be the only one.
async fn bounded<T, E: From<OutOfTime>>(deadline: Deadline, load: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    match tokio::time::timeout_at(deadline.at.into(), load).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("source read ran past the request's deadline");
            Err(OutOfTime.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let ttl = Duration::from_secs(300);
        for _ in 0..1000 {
            let j = jittered(ttl);
            assert!(j >= Duration::from_secs(270) && j <= Duration::from_secs(330), "{j:?}");
        }
    }

    #[test]
    fn entries_split_into_version_and_payload() {
        assert_eq!(payload("3|{\"a\":1}"), Some("{\"a\":1}"));
        assert_eq!(payload("3|"), None, "a tombstone has no payload");
        assert_eq!(payload("x|{}"), None);
        assert_eq!(payload("{}"), None);
        assert_eq!(lock_key("post:1"), "{post:1}:lock");
        // A key with its own hash tag: the lock keeps it (wrapping would hash "{user-1" instead).
        assert_eq!(lock_key("avatar:{user-1}"), "avatar:{user-1}:lock");
        // Not a hash tag (no closing brace): the whole key is hashed, and is the lock's tag.
        assert_eq!(lock_key("odd:{x"), "{odd:{x}:lock");
    }
}
