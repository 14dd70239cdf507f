//! The Redis (ElastiCache / Valkey) connection every function shares.
//!
//! Why not just `ConnectionManager`: a cache that is down must cost each request a bounded,
//! small delay and never fail init, and a connection left half-dead by a frozen Lambda container
//! must be replaced without failing the request that finds it. So:
//! - the connection is opened lazily, on first use, with a connect timeout; init never waits on it;
//! - every command runs under a response timeout;
//! - a connection-level error drops the cached connection; an idempotent command is retried once
//!   on a fresh one (a stale socket after a thaw is the common case and costs one reconnect);
//! - after a failed connect, further connects are skipped for `reconnect_backoff`, so an outage
//!   costs callers nothing instead of one connect timeout each.
//!
//! `redis://`, `rediss://` (TLS, which ElastiCache Serverless requires) and cluster mode are all
//! supported; keys that a script touches together must share a hash tag.

use std::future::Future;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use tokio::sync::Mutex;

use crate::config::EnvReader;

#[derive(Clone, Debug)]
pub struct RedisSettings {
    pub url: String,
    pub cluster: bool,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub reconnect_backoff: Duration,
}

impl RedisSettings {
    /// `REDIS_URL`, `REDIS_CLUSTER`, `REDIS_CONNECT_TIMEOUT_MS`, `REDIS_RESPONSE_TIMEOUT_MS`,
    /// `REDIS_RECONNECT_BACKOFF_MS`.
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let url = env.required("REDIS_URL", "redis://host:port or rediss://host:port");
        if !(url.is_empty() || url.starts_with("redis://") || url.starts_with("rediss://")) {
            env.reject("REDIS_URL", "redis://host:port or rediss://host:port", "unsupported scheme");
        }
        Self {
            url,
            cluster: env.flag("REDIS_CLUSTER", false),
            connect_timeout: env.millis("REDIS_CONNECT_TIMEOUT_MS", 250, 10..=10_000),
            response_timeout: env.millis("REDIS_RESPONSE_TIMEOUT_MS", 250, 10..=10_000),
            reconnect_backoff: env.millis("REDIS_RECONNECT_BACKOFF_MS", 500, 0..=60_000),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    /// The server could not be reached or did not answer in time: callers fail open (cache) or
    /// closed (tokens) on this.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// The server answered with an error (wrong type, script error, ...): a bug, not an outage.
    #[error("redis command failed: {0}")]
    Command(#[source] RedisError),
    #[error("invalid redis settings: {0}")]
    Settings(#[source] RedisError),
}

/// Whether a failed call may be sent again on a fresh connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Safe to send twice (GET, SET of the same value, DEL, an idempotent script).
    Idempotent,
    /// Must not be sent twice (a rotation script that consumes a token).
    Once,
}

// One per process, built once: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// A live connection of either kind; clones share one multiplexed socket (or cluster pool).
#[derive(Clone)]
pub enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

struct State {
    connection: Option<Connection>,
    /// No connect attempt before this instant (set after a failed connect).
    quiet_until: Option<Instant>,
}

pub struct RedisStore {
    client: Client,
    settings: RedisSettings,
    state: Mutex<State>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password (redis://:pass@host): never print it.
        f.debug_struct("RedisStore").field("cluster", &self.settings.cluster).finish_non_exhaustive()
    }
}

/// Errors that mean "the connection is unusable", as opposed to a server-side error reply.
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

impl RedisStore {
    /// Parses the URL; opens nothing.
    pub fn new(settings: RedisSettings) -> Result<Self, RedisStoreError> {
        let client = if settings.cluster {
            redis::cluster::ClusterClient::builder(vec![settings.url.as_str()])
                .connection_timeout(settings.connect_timeout)
                .response_timeout(settings.response_timeout)
                .retries(1)
                .build()
                .map(Client::Cluster)
        } else {
            redis::Client::open(settings.url.as_str()).map(Client::Single)
        }
        .map_err(RedisStoreError::Settings)?;
        Ok(Self { client, settings, state: Mutex::new(State { connection: None, quiet_until: None }) })
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    async fn open(&self) -> Result<Connection, RedisError> {
        let budget = self.settings.connect_timeout + self.settings.response_timeout;
        let attempt = async {
            match &self.client {
                Client::Single(c) => {
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(self.settings.connect_timeout))
                        .set_response_timeout(Some(self.settings.response_timeout));
                    c.get_multiplexed_async_connection_with_config(&config).await.map(Connection::Single)
                }
                Client::Cluster(c) => c.get_async_connection().await.map(Connection::Cluster),
            }
        };
        match tokio::time::timeout(budget, attempt).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))),
        }
    }

    /// The cached connection, or a new one. Holding the lock while connecting makes concurrent
    /// callers share one connect instead of racing N of them.
    async fn connection(&self) -> Result<Connection, RedisStoreError> {
        let mut state = self.state.lock().await;
        if let Some(c) = &state.connection {
            return Ok(c.clone());
        }
        if state.quiet_until.is_some_and(|t| Instant::now() < t) {
            return Err(RedisStoreError::Unavailable("recent connect failed; backing off".into()));
        }
        match self.open().await {
            Ok(c) => {
                state.connection = Some(c.clone());
                state.quiet_until = None;
                Ok(c)
            }
            Err(e) => {
                state.quiet_until = Some(Instant::now() + self.settings.reconnect_backoff);
                Err(RedisStoreError::Unavailable(e.to_string()))
            }
        }
    }

    async fn forget(&self) {
        self.state.lock().await.connection = None;
    }

    /// Runs `op` on a connection, mapping failures and retrying once on a fresh connection when
    /// the connection broke and `retry` allows it.
    pub async fn run<T, F, Fut>(&self, retry: Retry, op: F) -> Result<T, RedisStoreError>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempts = if retry == Retry::Idempotent { 2 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let conn = self.connection().await?;
            // Belt and braces: the connection's own response timeout should fire first.
            let budget = self.settings.response_timeout * 2;
            match tokio::time::timeout(budget, op(conn)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if is_connection_error(&e) => {
                    self.forget().await;
                    last = Some(RedisStoreError::Unavailable(e.to_string()));
                }
                Ok(Err(e)) => return Err(RedisStoreError::Command(e)),
                Err(_) => {
                    self.forget().await;
                    last = Some(RedisStoreError::Unavailable("response timed out".into()));
                }
            }
        }
        Err(last.unwrap_or_else(|| RedisStoreError::Unavailable("no attempt made".into())))
    }

    /// One command, retried once on a fresh connection if `retry` allows.
    pub async fn query<T: redis::FromRedisValue>(&self, retry: Retry, cmd: &Cmd) -> Result<T, RedisStoreError> {
        self.run(retry, |mut conn| async move { cmd.query_async(&mut conn).await }).await
    }
}
