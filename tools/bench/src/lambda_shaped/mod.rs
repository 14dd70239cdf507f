//! The Lambda-shaped mode of `make bench`: every endpoint over TLS ([`endpoints`]), each
//! function's process held to the CPU share of a memory size ([`cgroup`]), the figures Lambda
//! bills ([`cost`]), and the Node baseline ([`node`]) under the same conditions in the same run.
//!
//! Per function and memory size (128, 256, 512, 1,024 MB):
//! - init: exec → first `/next`, in the throttled group (Lambda does not document whether the
//!   init phase runs at the memory's share), and again with no limit;
//! - cold first response: the first invocation of a fresh process, connections and TLS
//!   handshakes included (the process moved into the throttled group before it, when its init ran
//!   unthrottled);
//! - warm p50/p99 and mean billed duration of each path of the function's stated mix;
//! - the cost per million requests of that mix with 1 % of requests on a new execution
//!   environment (billed init + first response).

pub mod cgroup;
pub mod cost;
pub mod endpoints;
pub mod node;
pub mod report;
mod subjects;
mod tracing_cost;

use std::path::Path;
use std::time::Duration;

use lambda_harness::{Function, SpawnOptions};
use serde_json::Value;

use self::cgroup::CpuShare;
use crate::floor::Events;
use crate::stats::percentile;

pub const MEMORY_SIZES: [u64; 4] = [128, 256, 512, 1024];
const TIMEOUT: Duration = Duration::from_secs(30);
const COLDS: usize = 5;
const WARM: usize = 200;
const WARM_UP: usize = 10;

/// A hook run before an invocation, outside its measurement (e.g. evicting a cache key).
pub type Before = Box<dyn Fn() + Send + Sync>;

/// One path of a function's mix.
pub struct PathSpec {
    pub label: &'static str,
    /// Share of the warm requests.
    pub share: f64,
    pub events: Events,
    pub before: Option<Before>,
    /// Invocations measured (the main path the most).
    pub runs: usize,
}

/// What is measured: a binary, its environment, the event of its cold start, and its mix.
pub struct Subject {
    pub name: String,
    pub bin: std::path::PathBuf,
    pub env: Vec<(String, String)>,
    /// The cold start's event and its hook (posts-read's is a miss: both connections opened).
    pub cold: Events,
    pub before_cold: Option<Before>,
    pub paths: Vec<PathSpec>,
}

/// One path's warm figures.
pub struct PathFigures {
    pub label: &'static str,
    pub share: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub mean_billed_ms: f64,
}

/// A subject's figures at one memory size.
pub struct Figures {
    pub memory_mb: u64,
    pub init_throttled: Duration,
    pub init_unthrottled: Duration,
    pub first_response: Duration,
    /// The first response of a process whose init ran unthrottled.
    pub first_after_unthrottled: Duration,
    pub cold_billed_ms: f64,
    pub paths: Vec<PathFigures>,
    pub throttled_periods: u64,
    /// Cold starts (of 2 × COLDS) and warm invocations that did not answer 2xx.
    pub cold_failures: usize,
    pub warm_failures: usize,
}

impl Figures {
    pub fn mix(&self) -> cost::Mix {
        cost::Mix {
            cold_share: 0.01,
            warm: self.paths.iter().map(|p| (p.share, p.mean_billed_ms)).collect(),
            cold_billed_ms: self.cold_billed_ms,
        }
    }

    /// Duration cost per million requests of the mix (without the request fee).
    pub fn duration_usd(&self) -> f64 {
        self.mix().duration_usd_per_million(self.memory_mb)
    }

    /// With the request fee.
    pub fn usd_per_million(&self) -> f64 {
        self.mix().usd_per_million(self.memory_mb)
    }

    /// Init + first response (throttled init): what the first caller of a new environment waits
    /// for beyond the network.
    pub fn cold_start(&self) -> Duration {
        self.init_throttled + self.first_response
    }

    pub fn main_path(&self) -> &PathFigures {
        &self.paths[0]
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    percentile(&v, 50.0)
}

/// Counts a failed answer (a function error or a non-2xx status) instead of stopping the run: at
/// a small share a timeout tuned on whole cores can fire, and that is a finding to report.
fn count_failure(name: &str, what: &str, inv: &lambda_harness::Invocation, failures: &mut usize) {
    if !crate::perf::succeeded(inv) {
        if *failures == 0 {
            eprintln!(
                "bench: {name}: {what}: status {:?}, error {:?}, body {}",
                inv.status_code(),
                inv.error_summary(),
                String::from_utf8_lossy(&inv.body).chars().take(300).collect::<String>()
            );
        }
        *failures += 1;
    }
}

/// One cold process: (init, first response). `throttled_init`: the process starts inside `share`;
/// otherwise it starts unlimited and is moved into `share` once its init is done.
async fn cold_once(
    subject: &Subject,
    share: &CpuShare,
    throttled_init: bool,
    failures: &mut usize,
) -> (Duration, Duration) {
    let cgroup = throttled_init.then(|| share.dir().to_path_buf());
    let options = SpawnOptions { env: subject.env.clone(), cgroup, ..SpawnOptions::default() };
    let f = Function::start(&subject.bin, &options).await.expect("spawn");
    let init = match f.wait_ready(TIMEOUT).await {
        Ok(init) => init,
        Err(e) => panic!("{}: init: {e}\n{}", subject.name, f.stop().await.logs),
    };
    if !throttled_init {
        share.adopt(f.pid()).expect("move the process into the throttled group");
    }
    if let Some(before) = &subject.before_cold {
        before();
    }
    let inv = f.invoke(&(subject.cold.first)(), TIMEOUT).await.expect("first invocation");
    count_failure(&subject.name, "cold start", &inv, failures);
    f.stop().await;
    (init, inv.latency)
}

/// Warm figures of every path, in one throttled process.
async fn warm(subject: &Subject, share: &CpuShare, failures: &mut usize) -> Vec<PathFigures> {
    let options =
        SpawnOptions { env: subject.env.clone(), cgroup: Some(share.dir().to_path_buf()), ..SpawnOptions::default() };
    let f = Function::start(&subject.bin, &options).await.expect("spawn");
    f.wait_ready(TIMEOUT).await.expect("init");
    let mut figures = Vec::new();
    for path in &subject.paths {
        let mut event = (path.events.first)();
        let mut latencies = Vec::with_capacity(path.runs);
        for i in 0..WARM_UP + path.runs {
            if let Some(before) = &path.before {
                before();
            }
            let inv = f.invoke(&event, TIMEOUT).await.expect("invoke");
            count_failure(&subject.name, path.label, &inv, failures);
            if let Some(next) = path.events.next {
                event = next(&event, &inv.json().unwrap_or(Value::Null));
            }
            if i >= WARM_UP {
                latencies.push(inv.latency);
            }
        }
        let mean_billed_ms = cost::mean_billed(&latencies);
        latencies.sort();
        figures.push(PathFigures {
            label: path.label,
            share: path.share,
            p50: percentile(&latencies, 50.0),
            p99: percentile(&latencies, 99.0),
            mean_billed_ms,
        });
    }
    f.stop().await;
    figures
}

/// Every figure of `subject` at `memory_mb`.
pub async fn measure(subject: &Subject, memory_mb: u64) -> Figures {
    let share = CpuShare::create(&format!("{}-{memory_mb}", subject.name.replace(' ', "-")), Some(memory_mb))
        .expect("the CPU share's cgroup");
    let (mut inits, mut firsts, mut billed) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cold_failures, mut warm_failures) = (0, 0);
    for _ in 0..COLDS {
        let (init, first) = cold_once(subject, &share, true, &mut cold_failures).await;
        billed.push(cost::billed_ms(init + first));
        inits.push(init);
        firsts.push(first);
    }
    let (mut open_inits, mut open_firsts) = (Vec::new(), Vec::new());
    for _ in 0..COLDS {
        let (init, first) = cold_once(subject, &share, false, &mut cold_failures).await;
        open_inits.push(init);
        open_firsts.push(first);
    }
    let paths = warm(subject, &share, &mut warm_failures).await;
    billed.sort_unstable();
    Figures {
        memory_mb,
        init_throttled: median(inits),
        init_unthrottled: median(open_inits),
        first_response: median(firsts),
        first_after_unthrottled: median(open_firsts),
        cold_billed_ms: billed[billed.len() / 2] as f64,
        paths,
        throttled_periods: share.throttled().0,
        cold_failures,
        warm_failures,
    }
}

/// The checks the mode refuses to run without, each with its reason.
pub fn preflight() -> Result<(), String> {
    cgroup::remove_stale();
    let probe = CpuShare::create("preflight", Some(128)).map_err(|e| {
        format!("the Lambda-shaped bench needs a cgroup with a CPU quota (run as root on a machine with the cpu controller): {e}")
    })?;
    drop(probe);
    for tool in ["openssl", "redis-server", "redis-cli", "node", "npm"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("the Lambda-shaped bench needs `{tool}` on PATH"));
        }
    }
    let seed = node::NodeSeed::source();
    if !seed.join("package-lock.json").is_file() {
        return Err(format!("the Node baseline is not at {} (set NODE_SEED)", seed.display()));
    }
    Ok(())
}

/// The whole Lambda-shaped section of docs/performance.md.
pub async fn section(bin_dir: &Path, stack_env: &[(String, String)], events: &Path, written_by: &str) -> report::Pages {
    let endpoints = endpoints::TlsEndpoints::start(stack_env).await.unwrap_or_else(|e| {
        eprintln!("bench: cannot set up the TLS endpoints: {e}");
        std::process::exit(2);
    });
    let node = node::NodeSeed::prepare().unwrap_or_else(|e| {
        eprintln!("bench: cannot prepare the Node baseline: {e}");
        std::process::exit(2);
    });
    // For a quick look at a part: BENCH_LAMBDA_ONLY=<subject,...>, BENCH_LAMBDA_SIZES=<MB,...>.
    let list = |name: &str| std::env::var(name).ok().map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>());
    let only = list("BENCH_LAMBDA_ONLY");
    let sizes: Vec<u64> = list("BENCH_LAMBDA_SIZES")
        .map(|v| v.iter().filter_map(|s| s.parse().ok()).collect())
        .unwrap_or_else(|| MEMORY_SIZES.to_vec());
    let mut measured = Vec::new();
    for subject in subjects::all(bin_dir, events, &endpoints, &node) {
        if only.as_ref().is_some_and(|o| !o.contains(&subject.name)) {
            continue;
        }
        let mut rows = Vec::new();
        for &mb in &sizes {
            eprintln!("bench: lambda-shaped {} at {mb} MB", subject.name);
            rows.push(measure(&subject, mb).await);
        }
        measured.push((subject.name.clone(), rows));
        eprintln!("bench: TLS connections so far: {}", endpoints.connections());
    }
    let mut extra = subjects::secrets_cost(bin_dir, &endpoints).await;
    let hit = crate::perf::read_event(events, "posts-read/get-hit.json");
    extra.push_str(&tracing_cost::section(bin_dir, &endpoints, &hit).await);
    report::markdown(&measured, &extra, written_by)
}
