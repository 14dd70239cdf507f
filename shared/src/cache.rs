//! Cache-aside over Redis: get-or-load with TTL (±10 % jitter), invalidation.
//!
//! The cache is an optimisation, never a dependency: every Redis failure is logged at `warn` and
//! treated as a miss, so callers answer from the source of truth with at most the Redis client's
//! bounded timeouts added (see `clients::redis`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clients::{RedisStore, Retry};

/// Whether a value came from the cache; sent to clients as `x-cache: hit|miss`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
}

impl CacheStatus {
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

#[derive(Clone, Debug)]
pub struct Cache {
    redis: Arc<RedisStore>,
}

impl Cache {
    pub fn new(redis: Arc<RedisStore>) -> Self {
        Self { redis }
    }

    pub fn redis(&self) -> &Arc<RedisStore> {
        &self.redis
    }

    /// The cached value, or `None` on a miss, an undecodable entry or an unavailable cache.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let raw: Option<String> = match self.redis.query(Retry::Idempotent, redis::cmd("GET").arg(key)).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(key, error = %e, "cache read failed; reading the source of truth");
                return None;
            }
        };
        let raw = raw?;
        match serde_json::from_str(&raw) {
            Ok(v) => Some(v),
            Err(e) => {
                // An entry written by an older version of the code: drop it and reload.
                tracing::warn!(key, error = %e, "cache entry undecodable; treating as a miss");
                None
            }
        }
    }

    /// Stores `value` under `key` for `ttl` (jittered). Failures are logged, not returned.
    pub async fn put<T: Serialize>(&self, key: &str, value: &T, ttl: Duration) {
        let Ok(text) = serde_json::to_string(value) else { return };
        let ttl_ms = jittered(ttl).as_millis() as u64;
        let result: Result<(), _> =
            self.redis.query(Retry::Idempotent, redis::cmd("SET").arg(key).arg(text).arg("PX").arg(ttl_ms)).await;
        if let Err(e) = result {
            tracing::warn!(key, error = %e, "cache write failed");
        }
    }

    /// Removes keys (one DEL each, so the keys need not share a cluster slot).
    pub async fn invalidate(&self, keys: &[&str]) {
        for key in keys {
            let result: Result<(), _> = self.redis.query(Retry::Idempotent, redis::cmd("DEL").arg(*key)).await;
            if let Err(e) = result {
                tracing::warn!(key, error = %e, "cache invalidation failed");
            }
        }
    }

    /// Cache-aside: the cached value, else `load()`, stored for `ttl` when it is `Some`.
    /// `None` from the loader (not found) is not cached.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        load: F,
    ) -> Result<(Option<T>, CacheStatus), E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        if let Some(v) = self.get(key).await {
            return Ok((Some(v), CacheStatus::Hit));
        }
        let loaded = load().await?;
        if let Some(v) = &loaded {
            self.put(key, v, ttl).await;
        }
        Ok((loaded, CacheStatus::Miss))
    }

    /// An integer counter (list generations); `0` when absent or when the cache is unavailable.
    pub async fn counter(&self, key: &str) -> Option<u64> {
        match self.redis.query::<Option<u64>>(Retry::Idempotent, redis::cmd("GET").arg(key)).await {
            Ok(v) => Some(v.unwrap_or(0)),
            Err(e) => {
                tracing::warn!(key, error = %e, "cache read failed");
                None
            }
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
}
