//! The Redis (ElastiCache / Valkey) connection every function shares.
//!
//! Why not just `ConnectionManager`: a cache that is down must cost each request a bounded,
//! small delay and never fail init, and a connection left half-dead by a frozen Lambda container
//! must be replaced without failing the request that finds it. So:
//! - the connection is opened lazily, on first use, with a connect timeout; init never waits on it;
//! - every command runs under a response timeout;
//! - the link is a small state machine (`Link`): idle, up (a numbered connection), or backing
//!   off after a failed connect. A caller that sees its connection break drops *that* connection
//!   only (never a newer one another caller opened meanwhile) and an idempotent command is retried
//!   once on a fresh one (a stale socket after a thaw is the common case and costs one reconnect);
//! - after a failed connect, further connects are skipped for `reconnect_backoff`, so an outage
//!   costs callers nothing instead of one connect timeout each; one connect runs at a time, and a
//!   caller never waits longer than one connect budget behind it;
//! - server replies that mean "not now" (`LOADING` after a restart, `TRYAGAIN`, `CLUSTERDOWN`,
//!   `MASTERDOWN`) are outages, not command errors; `READONLY` means a failover turned our node
//!   into a replica, so the connection is dropped and the next one finds the new primary;
//! - in cluster mode a new connection is opened through the URL's node *and* every node the
//!   previous connection's `CLUSTER SLOTS` named ([`ClusterSeeds`]): the URL names one seed
//!   node, and when that node is removed (its slots moved to another master, the node replaced)
//!   a store that could reconnect only through it would stay down for the life of the process
//!   although the cluster serves every slot. The URL's name is resolved again at every connect.
//!
//! `redis://`, `rediss://` (TLS, which ElastiCache Serverless requires) and cluster mode are all
//! supported; keys that a script touches together must share a hash tag. Each function signs in as
//! its own ACL user (`REDIS_USERNAME` / `REDIS_PASSWORD`, or credentials in the URL), so the cache
//! enforces which keys and commands it may use.
//!
//! TLS trusts the Amazon Trust Services roots that ElastiCache's certificates chain to (the same
//! embedded store the AWS clients use, [`super::aws`]), never the system bundle; `REDIS_CA_BUNDLE`
//! (a PEM file) replaces them for a server behind another CA, such as the local CA the tests make.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

use super::aws::{AMAZON_TRUST_SERVICES_ROOTS, TrustStoreError, check_trust_store};
use crate::config::{EnvReader, Secret};

/// How to reach Redis, from `REDIS_*` (see [`RedisSettings::from_env`]).
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `redis://host:port` or `rediss://host:port` (TLS); may carry a password, so never logged.
    pub url: String,
    /// Cluster mode (`REDIS_CLUSTER`): the URL is one seed node.
    pub cluster: bool,
    /// The ACL user this function signs in as (`AUTH username password`); `None`: the URL's, or
    /// the default user.
    pub username: Option<String>,
    /// That user's password (`REDIS_PASSWORD`).
    pub password: Option<Secret>,
    /// Longest wait for a connection (`REDIS_CONNECT_TIMEOUT_MS`, default 250 ms).
    pub connect_timeout: Duration,
    /// Longest wait for one reply (`REDIS_RESPONSE_TIMEOUT_MS`, default 250 ms).
    pub response_timeout: Duration,
    /// How long connects are skipped after one failed (`REDIS_RECONNECT_BACKOFF_MS`, default 500 ms).
    pub reconnect_backoff: Duration,
    /// The CAs a `rediss://` connection trusts instead of the embedded Amazon roots.
    pub ca_bundle: Option<CaBundle>,
}

impl RedisSettings {
    /// `REDIS_URL`, `REDIS_CLUSTER`, `REDIS_USERNAME`, `REDIS_PASSWORD`, `REDIS_CONNECT_TIMEOUT_MS`,
    /// `REDIS_RESPONSE_TIMEOUT_MS`, `REDIS_RECONNECT_BACKOFF_MS`, `REDIS_CA_BUNDLE`.
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let url = env.required("REDIS_URL", "redis://host:port or rediss://host:port");
        if !(url.is_empty() || url.starts_with("redis://") || url.starts_with("rediss://")) {
            env.reject("REDIS_URL", "redis://host:port or rediss://host:port", "unsupported scheme");
        }
        let username = env.optional("REDIS_USERNAME");
        let password = env.optional("REDIS_PASSWORD").map(Secret::new);
        if username.is_some() && password.is_none() {
            env.reject("REDIS_PASSWORD", "the password of REDIS_USERNAME", "missing while REDIS_USERNAME is set");
        }
        // Unlike AWS_CA_BUNDLE, an unusable bundle stops the init: falling back to the Amazon
        // roots would only turn a clear configuration error into a cache that never connects.
        let ca_bundle = env.optional("REDIS_CA_BUNDLE").and_then(|path| match CaBundle::read(&path) {
            Ok(bundle) => Some(bundle),
            Err(e) => {
                env.reject("REDIS_CA_BUNDLE", "a readable PEM file of CA certificates", &e.to_string());
                None
            }
        });
        Self {
            url,
            cluster: env.flag("REDIS_CLUSTER", false),
            username,
            password,
            connect_timeout: env.millis("REDIS_CONNECT_TIMEOUT_MS", 250, 10..=10_000),
            response_timeout: env.millis("REDIS_RESPONSE_TIMEOUT_MS", 250, 10..=10_000),
            reconnect_backoff: env.millis("REDIS_RECONNECT_BACKOFF_MS", 500, 0..=60_000),
            ca_bundle,
        }
    }

    fn tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }

    /// The PEM roots a TLS connection is verified against.
    fn trusted_roots(&self) -> Vec<u8> {
        match &self.ca_bundle {
            Some(bundle) => bundle.pem.to_vec(),
            None => AMAZON_TRUST_SERVICES_ROOTS.to_vec(),
        }
    }
}

/// A PEM file of CA certificates (`REDIS_CA_BUNDLE`), read and checked once at init.
#[derive(Clone)]
pub struct CaBundle {
    path: PathBuf,
    pem: Arc<[u8]>,
}

/// Why `REDIS_CA_BUNDLE` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    /// The file is not PEM certificates that can be trust anchors.
    #[error("not a trust store: {0}")]
    Invalid(#[source] TrustStoreError),
}

impl CaBundle {
    /// Reads `path` and checks it the way rustls will use it.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, CaBundleError> {
        let path = path.as_ref().to_owned();
        let pem = std::fs::read(&path).map_err(CaBundleError::Read)?;
        check_trust_store(&pem).map_err(CaBundleError::Invalid)?;
        Ok(Self { path, pem: pem.into() })
    }

    /// Where the bundle was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle").field("path", &self.path).finish_non_exhaustive()
    }
}

/// A failed Redis call: an outage, a refused command, or settings that do not parse.
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    /// The server could not be reached, did not answer in time or answered "not now" (loading,
    /// failing over): callers fail open (cache) or closed (auth) on this.
    #[error("redis unavailable: {reason}")]
    Unavailable {
        /// What failed (connect, timeout, server not ready, ...).
        reason: &'static str,
        /// The client's error, when there was one (a skipped connect has none).
        #[source]
        source: Option<RedisError>,
    },
    /// The server answered with an error (wrong type, script error, ...): a bug, not an outage.
    #[error("redis command failed: {0}")]
    Command(#[source] RedisError),
    /// The URL or cluster settings were refused by the client (at init).
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
    Cluster(ClusterSeeds),
}

/// At most this many learned nodes are tried beside the URL's (each connect dials all of them
/// at once; a cluster larger than this is still reached, through any of them).
const MAX_KNOWN_NODES: usize = 16;

/// Where a cluster connection is opened from: the URL's node, then the nodes the last
/// connection's `CLUSTER SLOTS` named (every primary and replica serving a slot then). A fresh
/// `ClusterClient` is built at each connect, so the URL's host name is resolved again and the
/// learned nodes are current; redis-rs dials every node given and succeeds if any answers.
///
/// What it does not cover: a cluster whose every node was replaced while this process held one
/// connection, and whose URL names none of the new ones (the list is learned at each connect,
/// not while a connection lasts). ElastiCache Serverless has one endpoint name that always
/// resolves to live nodes, which the first node in the list covers.
struct ClusterSeeds {
    /// The URL's node, with the credentials every node is signed in to with.
    url: redis::ConnectionInfo,
    certs: Option<redis::TlsCertificates>,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// (host, port) of the nodes learned at the last connect, the URL's own left out.
    known: std::sync::Mutex<Vec<(String, u16)>>,
}

impl ClusterSeeds {
    fn client(&self) -> Result<redis::cluster::ClusterClient, RedisError> {
        let known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut nodes = vec![self.url.clone()];
        for (host, port) in known {
            nodes.push(self.node(&host, port)?);
        }
        let mut builder = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.response_timeout)
            .retries(1);
        if let Some(certs) = &self.certs {
            builder = builder.certs(certs.clone());
        }
        builder.build()
    }

    /// The connection info of a learned node: its address, the URL's scheme and credentials.
    fn node(&self, host: &str, port: u16) -> Result<redis::ConnectionInfo, RedisError> {
        use redis::IntoConnectionInfo;
        let scheme = if matches!(self.url.addr(), redis::ConnectionAddr::Tcp(..)) { "redis" } else { "rediss" };
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
        let info = format!("{scheme}://{host}:{port}").as_str().into_connection_info()?;
        Ok(info.set_redis_settings(self.url.redis_settings().clone()))
    }

    /// Learns the nodes of a connection just opened (one `CLUSTER SLOTS`, which every cache user's
    /// ACL allows); on any failure the previous list stays.
    async fn learn(&self, conn: &mut ClusterConnection) {
        let cmd = redis::cmd("CLUSTER").arg("SLOTS").clone();
        let reply = tokio::time::timeout(self.response_timeout, cmd.query_async::<Value>(conn)).await;
        let Ok(Ok(reply)) = reply else {
            tracing::debug!("CLUSTER SLOTS failed; keeping the nodes known so far");
            return;
        };
        let own = match self.url.addr() {
            redis::ConnectionAddr::Tcp(host, port) => Some((host.clone(), *port)),
            redis::ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
            _ => None,
        };
        let nodes: Vec<(String, u16)> =
            slot_nodes(&reply).into_iter().filter(|n| Some(n) != own.as_ref()).take(MAX_KNOWN_NODES).collect();
        if !nodes.is_empty() {
            *self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = nodes;
        }
    }
}

/// The distinct (host, port) of every node in a `CLUSTER SLOTS` reply, in reply order. Entries
/// whose host is empty or `?` (the node does not know its own address) are left out.
fn slot_nodes(reply: &Value) -> Vec<(String, u16)> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let mut nodes: Vec<(String, u16)> = Vec::new();
    let Value::Array(ranges) = reply else { return nodes };
    for range in ranges {
        let Value::Array(fields) = range else { continue };
        // start, end, then one entry per node serving the range: [host, port, id, ...].
        for node in fields.iter().skip(2) {
            let Value::Array(node) = node else { continue };
            let (Some(host), Some(Value::Int(port))) = (node.first().and_then(text), node.get(1)) else { continue };
            let Ok(port) = u16::try_from(*port) else { continue };
            if host.is_empty() || host == "?" || nodes.iter().any(|(h, p)| *h == host && *p == port) {
                continue;
            }
            nodes.push((host, port));
        }
    }
    nodes
}

/// A live connection of either kind; clones share one multiplexed socket (or cluster pool).
#[derive(Clone)]
pub enum Connection {
    /// A single node (or a primary behind one endpoint).
    Single(MultiplexedConnection),
    /// Cluster mode: commands routed by key slot.
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

/// What the store knows about its link to Redis. Every way a link ends is one transition
/// ([`LinkState`]'s methods), each with its own test.
enum Link<C> {
    /// No connection: the next caller connects.
    Idle,
    /// A live connection. `epoch` numbers connections, so that a caller that saw one break drops
    /// that one and not a newer one another caller opened since.
    Up { conn: C, epoch: u64 },
    /// The last connect failed: no connect is tried before `until`.
    BackingOff { until: Instant },
}

/// What a caller should do next.
#[derive(Debug, PartialEq, Eq)]
enum Next<C> {
    Use(C, u64),
    Connect,
    FailFast,
}

struct LinkState<C> {
    link: Link<C>,
    epochs: u64,
}

impl<C: Clone> LinkState<C> {
    fn new() -> Self {
        Self { link: Link::Idle, epochs: 0 }
    }

    fn next(&self, now: Instant) -> Next<C> {
        match &self.link {
            Link::Up { conn, epoch } => Next::Use(conn.clone(), *epoch),
            Link::BackingOff { until } if now < *until => Next::FailFast,
            Link::Idle | Link::BackingOff { .. } => Next::Connect,
        }
    }

    /// A connect succeeded: the link is up with a new epoch.
    fn connected(&mut self, conn: C) -> u64 {
        self.epochs += 1;
        self.link = Link::Up { conn, epoch: self.epochs };
        self.epochs
    }

    /// A connect failed: back off, unless another caller got a connection up meanwhile.
    fn connect_failed(&mut self, now: Instant, backoff: Duration) {
        if !matches!(self.link, Link::Up { .. }) {
            self.link = Link::BackingOff { until: now + backoff };
        }
    }

    /// The connection of `epoch` broke: drop it (if it is still the current one).
    fn broken(&mut self, epoch: u64) {
        if matches!(self.link, Link::Up { epoch: current, .. } if current == epoch) {
            self.link = Link::Idle;
        }
    }
}

/// How a failed command leaves the link.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The connection is unusable (I/O, timeout, dropped, or a node that is no longer primary).
    Broken,
    /// The server is alive but cannot serve now (loading its data, failing over): keep the
    /// connection, report an outage.
    NotReady,
    /// The server refused the command itself: a bug, not an outage.
    Refused,
}

fn classify(e: &RedisError) -> Failure {
    use ServerErrorKind as S;
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
    {
        return Failure::Broken;
    }
    match e.kind() {
        ErrorKind::Server(S::ReadOnly) | ErrorKind::ClusterConnectionNotFound => Failure::Broken,
        ErrorKind::Server(S::BusyLoading | S::TryAgain | S::ClusterDown | S::MasterDown) => Failure::NotReady,
        _ => Failure::Refused,
    }
}

fn unavailable(reason: &'static str, source: RedisError) -> RedisStoreError {
    RedisStoreError::Unavailable { reason, source: Some(source) }
}

/// The one Redis connection of a process: lazy, with bounded timeouts and a reconnect backoff (see the module docs).
pub struct RedisStore {
    client: Client,
    settings: RedisSettings,
    /// Held for a few instructions only, never across an await.
    link: std::sync::Mutex<LinkState<Connection>>,
    /// One connect at a time; the others wait for its outcome.
    connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password (redis://:pass@host): never print it.
        f.debug_struct("RedisStore").field("cluster", &self.settings.cluster).finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The URL's connection info with `REDIS_USERNAME` / `REDIS_PASSWORD` applied.
    fn connection_info(settings: &RedisSettings) -> Result<redis::ConnectionInfo, RedisError> {
        use redis::IntoConnectionInfo;
        let info = settings.url.as_str().into_connection_info()?;
        let mut redis = info.redis_settings().clone();
        if let Some(user) = &settings.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &settings.password {
            redis = redis.set_password(password.expose());
        }
        Ok(info.set_redis_settings(redis))
    }

    /// Parses the URL; opens nothing.
    pub fn new(settings: RedisSettings) -> Result<Self, RedisStoreError> {
        let info = Self::connection_info(&settings).map_err(RedisStoreError::Settings)?;
        // The roots replace the crate's own (webpki-roots) for every node of a cluster too.
        let certs = settings
            .tls()
            .then(|| redis::TlsCertificates { client_tls: None, root_cert: Some(settings.trusted_roots()) });
        let client = if settings.cluster {
            let seeds = ClusterSeeds {
                url: info,
                certs,
                connect_timeout: settings.connect_timeout,
                response_timeout: settings.response_timeout,
                known: std::sync::Mutex::new(Vec::new()),
            };
            // Built once here only to refuse bad settings at init; each connect builds its own.
            seeds.client().map(|_| Client::Cluster(seeds))
        } else {
            match certs {
                Some(certs) => redis::Client::build_with_tls(info, certs),
                None => redis::Client::open(info),
            }
            .map(Client::Single)
        }
        .map_err(RedisStoreError::Settings)?;
        Ok(Self {
            client,
            settings,
            link: std::sync::Mutex::new(LinkState::new()),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// The settings it was built with.
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
                Client::Cluster(seeds) => {
                    let mut conn = seeds.client()?.get_async_connection().await?;
                    seeds.learn(&mut conn).await;
                    Ok(Connection::Cluster(conn))
                }
            }
        };
        match tokio::time::timeout(budget, attempt).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))),
        }
    }

    fn next(&self) -> Next<Connection> {
        self.link.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next(Instant::now())
    }

    fn update<R>(&self, f: impl FnOnce(&mut LinkState<Connection>) -> R) -> R {
        f(&mut self.link.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The current connection and its epoch, or a new one.
    async fn connection(&self) -> Result<(Connection, u64), RedisStoreError> {
        let backing_off =
            || RedisStoreError::Unavailable { reason: "recent connect failed; backing off", source: None };
        match self.next() {
            Next::Use(c, epoch) => return Ok((c, epoch)),
            Next::FailFast => return Err(backing_off()),
            Next::Connect => {}
        }
        // Concurrent callers share one connect instead of racing N of them. The holder's connect
        // is bounded by `open`'s budget, so nobody waits here for longer than that.
        let _gate = self.connecting.lock().await;
        match self.next() {
            Next::Use(c, epoch) => return Ok((c, epoch)),
            Next::FailFast => return Err(backing_off()),
            Next::Connect => {}
        }
        match self.open().await {
            Ok(c) => {
                let epoch = self.update(|l| l.connected(c.clone()));
                Ok((c, epoch))
            }
            Err(e) => {
                self.update(|l| l.connect_failed(Instant::now(), self.settings.reconnect_backoff));
                Err(unavailable("connect failed", e))
            }
        }
    }

    /// Runs `op` on a connection, mapping failures and retrying once on a fresh connection when
    /// the connection broke and `retry` allows it. Every call that ends in an outage is counted
    /// (`CacheUnavailable`): callers fail open or closed on it and answer, so without the count a
    /// cache that stays down would show only as latency.
    pub async fn run<T, F, Fut>(&self, retry: Retry, op: F) -> Result<T, RedisStoreError>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.round_trip(None, retry, op).await
    }

    /// [`run`](Self::run), with the command when the caller has one (for the subsegment).
    async fn round_trip<T, F, Fut>(&self, command: Option<&Cmd>, retry: Retry, op: F) -> Result<T, RedisStoreError>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        // A span per round trip (retries included) with the invocation's X-Ray trace id: the
        // Redis time of a request in the logs at DEBUG; the fields are computed only when the
        // span is enabled. And, for a sampled invocation, an X-Ray subsegment of the same time.
        let span = tracing::debug_span!("redis", trace_id = crate::xray::current().unwrap_or_default());
        let started = crate::xray::Started::now();
        let result = tracing::Instrument::instrument(self.attempt(retry, op), span).await;
        if let Some(started) = started {
            started.finish(&subsegment(command, &result));
        }
        if let Err(RedisStoreError::Unavailable { .. }) = &result {
            crate::metrics::count(crate::metrics::names::CACHE_UNAVAILABLE, 1);
        }
        result
    }

    async fn attempt<T, F, Fut>(&self, retry: Retry, op: F) -> Result<T, RedisStoreError>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempts = if retry == Retry::Idempotent { 2 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let (conn, epoch) = self.connection().await?;
            // Belt and braces: the connection's own response timeout should fire first.
            let budget = self.settings.response_timeout * 2;
            match tokio::time::timeout(budget, op(conn)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => match classify(&e) {
                    Failure::Broken => {
                        self.update(|l| l.broken(epoch));
                        last = Some(unavailable("connection broke", e));
                    }
                    Failure::NotReady => return Err(unavailable("server not ready", e)),
                    Failure::Refused => return Err(RedisStoreError::Command(e)),
                },
                Err(_) => {
                    self.update(|l| l.broken(epoch));
                    last = Some(RedisStoreError::Unavailable { reason: "response timed out", source: None });
                }
            }
        }
        Err(last.unwrap_or(RedisStoreError::Unavailable { reason: "no attempt made", source: None }))
    }

    /// One command, retried once on a fresh connection if `retry` allows.
    pub async fn query<T: redis::FromRedisValue>(&self, retry: Retry, cmd: &Cmd) -> Result<T, RedisStoreError> {
        self.round_trip(Some(cmd), retry, |mut conn| async move { cmd.query_async(&mut conn).await }).await
    }
}

/// The X-Ray subsegment of one round trip: `ElastiCache` in the `remote` namespace, a fault when
/// the cache was unavailable, an error when it refused the command, and the command's name when
/// the caller gave the command (`query`; scripts and pipelines through `run` carry none).
fn subsegment<T>(command: Option<&Cmd>, result: &Result<T, RedisStoreError>) -> crate::xray::Subsegment {
    use crate::xray::{Outcome, Subsegment};
    let outcome = match result {
        Ok(_) => Outcome::OK,
        Err(RedisStoreError::Command(_)) => Outcome::ERROR,
        Err(RedisStoreError::Unavailable { .. } | RedisStoreError::Settings(_)) => Outcome::FAULT,
    };
    let name = command.and_then(|c| match c.args_iter().next()? {
        redis::Arg::Simple(name) => Some(String::from_utf8_lossy(name).to_ascii_uppercase()),
        _ => None,
    });
    let metadata = name.map(|command| serde_json::json!({ "redis": { "command": command } }));
    Subsegment { outcome, metadata, ..Subsegment::remote("ElastiCache") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trips_subsegment_names_the_command_when_there_is_one() {
        use crate::xray::Outcome;
        let ok = subsegment(Some(redis::cmd("get").arg("post:1")), &Ok::<(), RedisStoreError>(()));
        assert_eq!((ok.name.as_ref(), ok.namespace, ok.outcome), ("ElastiCache", "remote", Outcome::OK));
        assert_eq!(ok.metadata, Some(serde_json::json!({"redis": {"command": "GET"}})));
        let down = RedisStoreError::Unavailable { reason: "response timed out", source: None };
        let down = subsegment::<()>(None, &Err(down));
        assert_eq!((down.outcome, down.metadata), (Outcome::FAULT, None));
        let refused = server_error("WRONGTYPE");
        assert_eq!(subsegment::<()>(None, &Err(RedisStoreError::Command(refused))).outcome, Outcome::ERROR);
    }

    const BACKOFF: Duration = Duration::from_millis(500);

    #[test]
    fn an_idle_link_connects() {
        let l = LinkState::<&str>::new();
        assert_eq!(l.next(Instant::now()), Next::Connect);
    }

    #[test]
    fn a_connect_puts_the_link_up_with_a_new_epoch() {
        let mut l = LinkState::new();
        let first = l.connected("a");
        assert_eq!(l.next(Instant::now()), Next::Use("a", first));
        let second = l.connected("b");
        assert!(second > first);
        assert_eq!(l.next(Instant::now()), Next::Use("b", second));
    }

    #[test]
    fn a_failed_connect_fails_callers_fast_until_the_backoff_ends() {
        let mut l = LinkState::<&str>::new();
        let now = Instant::now();
        l.connect_failed(now, BACKOFF);
        assert_eq!(l.next(now), Next::FailFast);
        assert_eq!(l.next(now + BACKOFF / 2), Next::FailFast);
        assert_eq!(l.next(now + BACKOFF), Next::Connect);
    }

    #[test]
    fn a_broken_connection_makes_the_next_caller_connect() {
        let mut l = LinkState::new();
        let epoch = l.connected("a");
        l.broken(epoch);
        assert_eq!(l.next(Instant::now()), Next::Connect);
    }

    #[test]
    fn a_stale_break_does_not_drop_a_newer_connection() {
        let mut l = LinkState::new();
        let old = l.connected("a");
        let new = l.connected("b");
        l.broken(old);
        assert_eq!(l.next(Instant::now()), Next::Use("b", new));
    }

    #[test]
    fn a_failed_connect_does_not_hide_a_connection_another_caller_opened() {
        let mut l = LinkState::new();
        let epoch = l.connected("a");
        l.connect_failed(Instant::now(), BACKOFF);
        assert_eq!(l.next(Instant::now()), Next::Use("a", epoch));
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn cluster_slots_name_every_node_once_and_skip_unknown_addresses() {
        let node = |host: &str, port: i64, id: &str| Value::Array(vec![bulk(host), Value::Int(port), bulk(id)]);
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 6379, "a"),
                node("10.0.0.4", 6379, "d"),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(10922), node("10.0.0.2", 6379, "b")]),
            Value::Array(vec![Value::Int(10923), Value::Int(12000), node("10.0.0.1", 6379, "a")]),
            Value::Array(vec![Value::Int(12001), Value::Int(16383), node("", 6379, "c"), node("?", 6380, "e")]),
        ]);
        let want = [("10.0.0.1", 6379), ("10.0.0.4", 6379), ("10.0.0.2", 6379)];
        assert_eq!(slot_nodes(&reply), want.map(|(h, p)| (h.to_owned(), p)).to_vec());
        assert!(slot_nodes(&Value::Nil).is_empty());
    }

    fn server_error(code: &str) -> RedisError {
        let mut parser = redis::Parser::new();
        let reply = format!("-{code} some detail\r\n");
        match parser.parse_value(reply.as_bytes()) {
            Ok(Value::ServerError(e)) => e.into(),
            other => panic!("not a server error: {other:?}"),
        }
    }

    #[test]
    fn server_replies_are_classified_by_what_they_mean_for_the_link() {
        assert_eq!(classify(&server_error("LOADING")), Failure::NotReady);
        assert_eq!(classify(&server_error("TRYAGAIN")), Failure::NotReady);
        assert_eq!(classify(&server_error("CLUSTERDOWN")), Failure::NotReady);
        assert_eq!(classify(&server_error("MASTERDOWN")), Failure::NotReady);
        assert_eq!(classify(&server_error("READONLY")), Failure::Broken);
        assert_eq!(classify(&server_error("WRONGTYPE")), Failure::Refused);
        assert_eq!(classify(&server_error("ERR")), Failure::Refused);
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&io), Failure::Broken);
    }
}
