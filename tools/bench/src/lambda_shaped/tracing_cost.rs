//! What X-Ray tracing costs an invocation: posts-read's cache hit (one Redis round trip, so one
//! subsegment) and cache miss (Redis, DynamoDB GetItem, Redis: three), warm, at the 256 MB share,
//! with every invocation sampled and the subsegments sent to a UDP socket the bench holds (the
//! X-Ray daemon's end), against the same process's unsampled invocations. The datagrams are
//! counted by the receiving socket, outside the function.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use lambda_harness::{Function, SpawnOptions};

use super::cgroup::CpuShare;
use super::endpoints::TlsEndpoints;
use crate::floor::process_cpu;
use crate::stats::{ms, percentile, us};

const RUNS: usize = 300;

struct Run {
    p50: Duration,
    p99: Duration,
    cpu: Duration,
}

async fn run(f: &Function, event: &serde_json::Value, sampled: bool, before: &dyn Fn()) -> Run {
    f.api().set_sampled(sampled);
    let mut latencies = Vec::with_capacity(RUNS);
    let mut cpu = Duration::ZERO;
    for _ in 0..RUNS {
        before();
        let start = process_cpu(f.pid());
        let inv = f.invoke(event, Duration::from_secs(30)).await.expect("invoke");
        cpu += process_cpu(f.pid()).saturating_sub(start);
        assert!(crate::perf::succeeded(&inv), "posts-read: {:?}", inv.error_summary());
        latencies.push(inv.latency);
    }
    latencies.sort();
    Run { p50: percentile(&latencies, 50.0), p99: percentile(&latencies, 99.0), cpu: cpu / RUNS as u32 }
}

/// The daemon's end: a thread receiving every datagram as it arrives (a socket left unread
/// would drop what overflows its buffer) and counting them.
struct Daemon {
    address: String,
    received: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the daemon's socket");
        socket.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        let address = socket.local_addr().expect("address").to_string();
        let (received, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (count, stopped) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stopped.load(Ordering::Relaxed) {
                if socket.recv(&mut buf).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self { address, received, stop, thread: Some(thread) }
    }

    /// Datagrams received since the last call, after a moment for the last ones to land.
    fn take(&self) -> usize {
        std::thread::sleep(Duration::from_millis(200));
        self.received.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub async fn section(bin_dir: &std::path::Path, endpoints: &TlsEndpoints, hit: &serde_json::Value) -> String {
    let daemon = Daemon::start();
    let mut env = endpoints.function_env("posts-read");
    env.push(("AWS_XRAY_DAEMON_ADDRESS".into(), daemon.address.clone()));
    let share = CpuShare::create("tracing-256", Some(256)).expect("cgroup");
    let options = SpawnOptions { env, cgroup: Some(share.dir().to_path_buf()), ..SpawnOptions::default() };
    let f = Function::start(bin_dir.join("posts-read"), &options).await.expect("spawn");
    f.wait_ready(Duration::from_secs(30)).await.expect("init");
    let evict = || {
        let _ = endpoints.redis.cli(&["DEL", "post:1"]);
    };
    let nothing = || {};
    for _ in 0..20 {
        f.invoke(hit, Duration::from_secs(30)).await.expect("warm-up");
    }
    daemon.take();
    let mut md = String::from(
        "### The cost of tracing\n\n\
         posts-read warm at the 256 MB share, 300 invocations each, every one sampled (subsegments sent to \
         a UDP socket standing for the X-Ray daemon) or none; CPU is the process's own (all threads, \
         from /proc), per invocation. Datagrams counted by the receiving socket.\n\n\
         | path | sampled: p50 / p99 / CPU | not sampled: p50 / p99 / CPU | subsegments received per sampled invocation |\n\
         | --- | --- | --- | --- |\n",
    );
    for (label, before) in [("cache hit", &nothing as &dyn Fn()), ("cache miss", &evict as &dyn Fn())] {
        let off = run(&f, hit, false, before).await;
        let unsampled = daemon.take();
        let on = run(&f, hit, true, before).await;
        let datagrams = daemon.take();
        assert_eq!(unsampled, 0, "unsampled invocations sent {unsampled} subsegments");
        md.push_str(&format!(
            "| {label} | {} / {} / {} | {} / {} / {} | {:.1} |\n",
            ms(on.p50),
            ms(on.p99),
            us(on.cpu),
            ms(off.p50),
            ms(off.p99),
            us(off.cpu),
            datagrams as f64 / RUNS as f64
        ));
    }
    f.stop().await;
    md.push('\n');
    md
}
