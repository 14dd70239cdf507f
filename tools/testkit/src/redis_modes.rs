//! One Redis for a suite that runs in several modes: a single server or a 3-master cluster, in
//! plaintext or TLS. `ClusterTls` is what a deployed function meets (ElastiCache Serverless is
//! always cluster mode and TLS; the template sets `rediss://` and `REDIS_CLUSTER=true`).

use crate::redis_server::redis_cli;
use crate::{RedisCluster, RedisServer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisMode {
    Single,
    SingleTls,
    Cluster,
    /// As deployed.
    ClusterTls,
}

impl RedisMode {
    pub fn cluster(self) -> bool {
        matches!(self, RedisMode::Cluster | RedisMode::ClusterTls)
    }

    pub fn tls(self) -> bool {
        matches!(self, RedisMode::SingleTls | RedisMode::ClusterTls)
    }
}

/// A running Redis of some [`RedisMode`], stopped (by PID) on drop.
pub enum Redis {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Redis {
    pub fn start(mode: RedisMode) -> Self {
        match mode {
            RedisMode::Single => Redis::Single(RedisServer::start()),
            RedisMode::SingleTls => Redis::Single(RedisServer::start_tls()),
            RedisMode::Cluster => Redis::Cluster(RedisCluster::start(3)),
            RedisMode::ClusterTls => Redis::Cluster(RedisCluster::start_tls(3)),
        }
    }

    pub fn url(&self) -> String {
        match self {
            Redis::Single(s) => s.url(),
            Redis::Cluster(c) => c.url(),
        }
    }

    fn tls(&self) -> Option<&crate::TlsFiles> {
        match self {
            Redis::Single(s) => s.tls(),
            Redis::Cluster(c) => c.tls(),
        }
    }

    /// The function environment that points at this Redis: `REDIS_URL`, `REDIS_CLUSTER` and,
    /// for TLS, `REDIS_CA_BUNDLE` (the test's CA; in AWS it is unset and the Amazon roots apply).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("REDIS_URL", self.url()),
            ("REDIS_CLUSTER", matches!(self, Redis::Cluster(_)).to_string()),
            // Generous timeouts: the machine running the tests may be busy compiling.
            ("REDIS_CONNECT_TIMEOUT_MS", "1000".to_owned()),
            ("REDIS_RESPONSE_TIMEOUT_MS", "1000".to_owned()),
        ];
        if let Some(tls) = self.tls() {
            env.push(("REDIS_CA_BUNDLE", tls.ca().to_str().expect("utf-8 path").to_owned()));
        }
        env
    }

    /// One command, on the node that owns its key (`--raw` output), from outside the code under test.
    pub fn cli(&self, args: &[&str]) -> String {
        match self {
            Redis::Single(s) => redis_cli(s.port, s.tls(), false, args),
            Redis::Cluster(c) => c.cli(args),
        }
    }

    /// One command on every node (a primary each), e.g. `SCRIPT FLUSH`.
    pub fn cli_each(&self, args: &[&str]) -> Vec<String> {
        match self {
            Redis::Single(s) => vec![redis_cli(s.port, s.tls(), false, args)],
            Redis::Cluster(c) => c.cli_each(args),
        }
    }

    /// Every key on every node, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .cli_each(&["--scan", "--pattern", "*"])
            .iter()
            .flat_map(|out| out.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort();
        keys
    }

    /// Milliseconds left on `key` (-2: no such key, -1: no TTL).
    pub fn pttl(&self, key: &str) -> i64 {
        self.cli(&["PTTL", key]).parse().expect("PTTL is an integer")
    }
}
