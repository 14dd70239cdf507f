//! Real `redis-server` processes for tests: a single server that can be stopped and restarted on
//! the same port (cache-down drills), and a 3-master cluster on loopback. Every server loads the
//! template's ACL users ([`crate::redis_acl`]). Either can serve TLS only (`rediss://`, as
//! ElastiCache Serverless does) with a certificate of a local CA ([`TlsFiles`]).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::redis_tls::TlsFiles;
use crate::{free_port, wait_for_port};

fn spawn(port: u16, dir: &std::path::Path, tls: Option<&TlsFiles>, extra: &[&str]) -> Child {
    let acl = crate::redis_acl::write_acl_file(dir);
    let listen = match tls {
        Some(tls) => tls.server_args(port),
        None => vec!["--port".into(), port.to_string()],
    };
    Command::new("redis-server")
        .args(listen)
        .args(["--bind", "127.0.0.1", "--save", ""])
        .args(["--dir", dir.to_str().expect("utf-8 dir")])
        .args(["--aclfile", acl.to_str().expect("utf-8 path")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server on PATH (scripts/bootstrap.sh installs it)")
}

/// redis-cli against `port`, over TLS when `tls` is given; `--raw` output, `-c` to follow
/// cluster redirects. Fails the test if redis-cli cannot run or reports an error.
pub(crate) fn redis_cli(port: u16, tls: Option<&TlsFiles>, follow: bool, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"]);
    if let Some(tls) = tls {
        cmd.args(tls.cli_args());
    }
    if follow {
        cmd.arg("-c");
    }
    let out = cmd.args(args).output().expect("redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("testkit-{tag}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// How a [`RedisServer`] keeps its data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing on disk: a restart comes back empty (a cache node replaced).
    #[default]
    None,
    /// Append-only file fsynced on every write: a restart comes back with every acknowledged write.
    AppendOnly,
    /// An RDB snapshot taken only by [`RedisServer::snapshot`]: a restart loads it, which is how a
    /// test holds a server in its `LOADING` phase for a while.
    Snapshot,
}

/// One redis-server, killed (by PID) on drop.
///
/// Its port lies outside the kernel's ephemeral range ([`crate::stable_port`]): while the server
/// is down for a restart, no outgoing connection or `bind(0)` listener of another process can be
/// handed that port, so the process that comes back is the one listening.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    persistence: Persistence,
    tls: Option<Arc<TlsFiles>>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(Persistence::None)
    }

    /// A server that speaks TLS only, with a certificate of a CA made for it ([`Self::tls`]).
    pub fn start_tls() -> Self {
        Self::launch_new(Persistence::None, Some(Arc::new(TlsFiles::generate())))
    }

    pub fn start_with(persistence: Persistence) -> Self {
        Self::launch_new(persistence, None)
    }

    fn launch_new(persistence: Persistence, tls: Option<Arc<TlsFiles>>) -> Self {
        let dir = temp_dir("redis");
        let mut server = Self { port: crate::stable_port(), dir, persistence, tls, child: None };
        // Another test may pick the same port between our check and the server's bind: pick again.
        for _ in 0..5 {
            match server.try_launch() {
                Ok(()) => return server,
                Err(_) => server.port = crate::stable_port(),
            }
        }
        server.launch();
        server
    }

    fn launch(&mut self) {
        if let Err(e) = self.try_launch() {
            panic!("{e}");
        }
    }

    fn try_launch(&mut self) -> Result<(), String> {
        let args: &[&str] = match self.persistence {
            Persistence::None => &["--appendonly", "no"],
            Persistence::AppendOnly => &["--appendonly", "yes", "--appendfsync", "always"],
            Persistence::Snapshot => &["--appendonly", "no", "--enable-debug-command", "local"],
        };
        let mut child = spawn(self.port, &self.dir, self.tls.as_deref(), args);
        // Something accepting on the port is not enough: it must be this process answering.
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server on port {} exited at start ({status}): port taken?", self.port));
            }
            if self.serving_pid() == Some(child.id()) {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-server did not answer on port {}: port taken?", self.port));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
        Ok(())
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA and certificate of a TLS server.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_deref()
    }

    /// The URL that signs in as the template's ACL user `user` (its local password).
    pub fn url_as(&self, user: &str) -> String {
        format!("redis://{user}:{}@127.0.0.1:{}", crate::redis_acl::password(user), self.port)
    }

    /// The PID of the redis-server answering on the port (it answers `LOADING` to most commands
    /// while it loads, but `INFO` works), if any.
    fn serving_pid(&self) -> Option<u32> {
        use std::io::{Read, Write};
        if let Some(tls) = &self.tls {
            // Through redis-cli (it speaks TLS), bounded by `timeout`: an impostor that accepts
            // and never completes the handshake must not hang the check.
            let out = Command::new("timeout")
                .args(["2", "redis-cli", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(tls.cli_args())
                .args(["INFO", "server"])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            return text.lines().find_map(|l| l.trim().strip_prefix("process_id:")).and_then(|p| p.trim().parse().ok());
        }
        // A raw exchange with a read timeout: an impostor that accepts and never answers must not
        // hang the check (redis-cli would wait for ever).
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
        stream.write_all(b"INFO server\r\n").ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    reply.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&reply).contains("process_id:") && reply.ends_with(b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
        let text = String::from_utf8_lossy(&reply);
        text.lines().find_map(|l| l.trim().strip_prefix("process_id:")).and_then(|p| p.trim().parse().ok())
    }

    /// The server's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, like a crashed node; returns at once (the kernel closes its sockets).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and waits until the port refuses connections.
    pub fn stop(&mut self) {
        self.kill();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts a new process on the same port, with whatever the persistence mode kept.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Starts the server again after [`RedisServer::kill`] or [`RedisServer::stop`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.launch();
    }

    /// SIGSTOP: the kernel still accepts connections, nothing answers (a frozen node).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`RedisServer::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid().expect("server running");
        let status = Command::new("kill").args([sig, &pid.to_string()]).status().expect("kill");
        assert!(status.success(), "kill {sig} {pid}");
    }

    /// Fills the server with `keys` keys and saves a snapshot ([`Persistence::Snapshot`] only), so
    /// that the next start spends a while loading it.
    pub fn snapshot(&self, keys: u64) {
        assert_eq!(self.persistence, Persistence::Snapshot, "snapshot needs Persistence::Snapshot");
        assert_eq!(self.cli(&["DEBUG", "POPULATE", &keys.to_string(), "filler", "64"]), "OK");
        assert_eq!(self.cli(&["SAVE"]), "OK");
    }

    /// A synchronous command through redis-cli, for assertions from outside the code under test.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--no-raw"])
            .args(self.tls.as_deref().map(TlsFiles::cli_args).unwrap_or_default())
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.pid().is_some() {
            // A frozen process ignores nothing but SIGKILL; thaw it anyway so it dies cleanly.
            let _ = Command::new("kill").args(["-CONT", &self.pid().unwrap_or(0).to_string()]).status();
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port for a cluster node: its bus port (port + 10000) must be free too, and both lie below the
/// ephemeral range so that a node restarted on its port finds it still free.
fn free_cluster_port() -> u16 {
    loop {
        let port = crate::stable_port_in(10_000..crate::EPHEMERAL_FLOOR - 10_000);
        if std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A Redis Cluster of `masters` nodes (no replicas) on loopback, created with `redis-cli --cluster`.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    dir: PathBuf,
    tls: Option<Arc<TlsFiles>>,
    children: Vec<Child>,
}

fn spawn_node(port: u16, dir: &std::path::Path, tls: Option<&TlsFiles>) -> Child {
    let node_dir = dir.join(port.to_string());
    std::fs::create_dir_all(&node_dir).expect("node dir");
    let bus = (port + 10_000).to_string();
    let mut args = vec!["--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"];
    args.extend(["--cluster-port", &bus]);
    if tls.is_some() {
        // The cluster bus is TLS too, and nodes announce their TLS port to clients.
        args.extend(["--tls-cluster", "yes"]);
    }
    spawn(port, &node_dir, tls, &args)
}

impl RedisCluster {
    pub fn start(masters: usize) -> Self {
        Self::start_on(masters, None)
    }

    /// A cluster whose nodes speak TLS only (clients and bus), as ElastiCache Serverless does.
    pub fn start_tls(masters: usize) -> Self {
        Self::start_on(masters, Some(Arc::new(TlsFiles::generate())))
    }

    fn start_on(masters: usize, tls: Option<Arc<TlsFiles>>) -> Self {
        let dir = temp_dir("cluster");
        let mut ports = Vec::new();
        let mut children = Vec::new();
        for _ in 0..masters {
            let port = free_cluster_port();
            children.push(spawn_node(port, &dir, tls.as_deref()));
            ports.push(port);
        }
        // From here on a failed start still kills every node (Drop).
        let cluster = Self { ports: ports.clone(), dir, tls, children };
        for port in &ports {
            wait_for_port(*port, Duration::from_secs(10));
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let status = Command::new("redis-cli")
            .args(cluster.tls_cli_args())
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(status.success(), "cluster create failed");
        cluster.wait_ok();
        cluster
    }

    /// Waits until every node reports the cluster as ok.
    fn wait_ok(&self) {
        let start = Instant::now();
        for port in &self.ports {
            loop {
                let out = Command::new("redis-cli")
                    .args(["-p", &port.to_string()])
                    .args(self.tls_cli_args())
                    .args(["cluster", "info"])
                    .output()
                    .expect("redis-cli");
                if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(20), "cluster never became ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// SIGKILLs every node (the whole cache gone at once).
    pub fn kill_all(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }

    /// Starts every node again on its port (each rejoins from its nodes.conf, data empty) and
    /// waits until the cluster is ok.
    pub fn start_all_again(&mut self) {
        assert!(self.children.is_empty(), "kill_all first");
        for port in &self.ports {
            self.children.push(spawn_node(*port, &self.dir, self.tls.as_deref()));
        }
        for port in &self.ports {
            wait_for_port(*port, Duration::from_secs(10));
        }
        self.wait_ok();
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.ports[0])
    }

    /// The CA and certificate of a TLS cluster.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_deref()
    }

    fn tls_cli_args(&self) -> Vec<String> {
        self.tls.as_deref().map(TlsFiles::cli_args).unwrap_or_default()
    }

    /// One command on the node that owns its key (redis-cli `-c` follows the redirect), `--raw`.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.ports[0], self.tls.as_deref(), true, args)
    }

    /// One command on each node, in `ports` order (`--raw`).
    pub fn cli_each(&self, args: &[&str]) -> Vec<String> {
        self.ports.iter().map(|port| redis_cli(*port, self.tls.as_deref(), false, args)).collect()
    }

    /// The cluster node id of the node on `port`.
    pub fn node_id(&self, port: u16) -> String {
        redis_cli(port, self.tls.as_deref(), false, &["CLUSTER", "MYID"])
    }

    /// Starts a new, empty master and joins it to the cluster (`redis-cli --cluster add-node`),
    /// as a scale-out or a node replacement does; returns its port.
    pub fn add_master(&mut self) -> u16 {
        let port = free_cluster_port();
        self.children.push(spawn_node(port, &self.dir, self.tls.as_deref()));
        self.ports.push(port);
        wait_for_port(port, Duration::from_secs(10));
        let existing = self.ports.iter().find(|p| **p != port).expect("a node to join through");
        self.cluster_tool(&["add-node", &format!("127.0.0.1:{port}"), &format!("127.0.0.1:{existing}")]);
        // The join spreads by gossip: a reshard before every node knows the new one fails
        // ("Unknown node").
        let id = self.node_id(port);
        let start = Instant::now();
        while !self.cli_each(&["CLUSTER", "NODES"]).iter().all(|nodes| nodes.contains(&id)) {
            assert!(start.elapsed() < Duration::from_secs(20), "the new node never became known to every node");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_ok();
        port
    }

    /// Moves every slot of the master on `from` to the master on `to`, keys included
    /// (`redis-cli --cluster reshard`), and waits until the cluster is ok again.
    pub fn move_all_slots(&self, from: u16, to: u16) {
        let from_id = self.node_id(from);
        let slots: usize = redis_cli(from, self.tls.as_deref(), false, &["CLUSTER", "NODES"])
            .lines()
            .find(|l| l.starts_with(&from_id))
            .map(|l| {
                l.split_whitespace()
                    .skip(8)
                    .map(|range| match range.split_once('-') {
                        Some((a, b)) => b.parse::<usize>().unwrap_or(0) - a.parse::<usize>().unwrap_or(0) + 1,
                        None => 1,
                    })
                    .sum()
            })
            .unwrap_or(0);
        assert!(slots > 0, "node {from} owns no slots");
        let to_id = self.node_id(to);
        self.cluster_tool(&[
            "reshard",
            &format!("127.0.0.1:{to}"),
            "--cluster-from",
            &from_id,
            "--cluster-to",
            &to_id,
            "--cluster-slots",
            &slots.to_string(),
            "--cluster-yes",
        ]);
        self.wait_ok();
    }

    /// Removes the (slot-less) node on `port` from the cluster (`redis-cli --cluster del-node`,
    /// the other nodes forget it) and SIGKILLs its process: the node is gone for good.
    pub fn remove_node(&mut self, port: u16) {
        let index = self.ports.iter().position(|p| *p == port).expect("a node of this cluster");
        let id = self.node_id(port);
        let other = *self.ports.iter().find(|p| **p != port).expect("another node");
        self.cluster_tool(&["del-node", &format!("127.0.0.1:{other}"), &id]);
        let mut child = self.children.remove(index);
        self.ports.remove(index);
        let _ = child.kill();
        let _ = child.wait();
        self.wait_ok();
    }

    /// SIGSTOPs the node on `port` for `pause`, then SIGCONTs it: a node that stops answering for
    /// a moment (a long GC-like stall, a network blip), shorter than the cluster's node timeout, so
    /// no failover follows. Clients waiting on it time out.
    pub fn pause_node(&self, port: u16, pause: Duration) {
        let index = self.ports.iter().position(|p| *p == port).expect("a node of this cluster");
        let pid = self.children[index].id().to_string();
        let signal = |sig: &str| {
            let status = Command::new("kill").args([sig, &pid]).status().expect("kill");
            assert!(status.success(), "kill {sig} {pid}");
        };
        signal("-STOP");
        std::thread::sleep(pause);
        signal("-CONT");
    }

    fn cluster_tool(&self, args: &[&str]) {
        let out = Command::new("redis-cli")
            .args(self.tls_cli_args())
            .arg("--cluster")
            .args(args)
            .output()
            .expect("redis-cli --cluster");
        if !out.status.success() {
            // The end of the output says what failed (a reshard prints a line per slot before).
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            let tail: String =
                text.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            panic!("redis-cli --cluster {args:?} failed: {tail}");
        }
    }

    /// The URL that signs in as the template's ACL user `user` (its local password).
    pub fn url_as(&self, user: &str) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://{user}:{}@127.0.0.1:{}", crate::redis_acl::password(user), self.ports[0])
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
