//! A function binary ("bootstrap") running as a child process, started the way Lambda starts it.
//!
//! Lambda runs the `bootstrap` of a `provided.al2023` function with a fixed set of environment
//! variables (the Runtime API address, the function's name, memory size, version, region, log format,
//! handler and task root) and nothing else of the host's environment. [`Function::spawn`] does the
//! same against a [`RuntimeApi`] on loopback, captures the process's stdout and stderr so tests can
//! read the function's logs, watches for the process dying so an invocation fails at once instead of
//! at its timeout, and reads the process's peak RSS from `/proc` for benchmarks.
//!
//! The child is killed (through its `Child` handle, so by its PID) when the `Function` is dropped.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::HarnessError;
use crate::runtime_api::{Invocation, RuntimeApi};

/// Region used when neither the caller's environment nor the inherited one names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Variables taken from the harness's own environment even when it is not inherited: the search path,
/// and the credentials Lambda would hand the function through its execution role.
const FORWARDED: &[&str] = &[
    "PATH",
    "LD_LIBRARY_PATH",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Makes the child write itself into `group`'s `cgroup.procs` between fork and exec. The file is
/// opened here, in the parent, so the child only makes one `write(2)` (nothing that allocates or
/// takes a lock after `fork`); "0" names the writing process, in cgroup v1 and v2 alike.
fn join_cgroup_before_exec(command: &mut Command, group: &Path) -> Result<(), HarnessError> {
    let procs = group.join("cgroup.procs");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&procs)
        .map_err(|source| HarnessError::Cgroup { path: procs.clone(), source })?;
    // SAFETY: the closure runs in the forked child before exec; it only calls write(2) on a file
    // descriptor that was opened before the fork, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || (&file).write_all(b"0"));
    }
    Ok(())
}

/// How long [`Function::stop`] waits for the log pipes to drain after the process is gone.
const LOG_DRAIN: Duration = Duration::from_secs(2);

/// How to start a function beyond its binary and the Runtime API.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    /// Extra environment, applied last: these values win over the Lambda defaults.
    pub env: Vec<(String, String)>,
    /// Pass the harness's whole environment to the function (Lambda does not). Off by default; only
    /// a few variables are passed then: PATH, LD_LIBRARY_PATH, the AWS credential variables (which
    /// Lambda provides from the execution role), RUST_LOG, RUST_BACKTRACE, SSL_CERT_FILE/DIR.
    pub inherit_env: bool,
    /// Also append the function's stdout and stderr to this file.
    pub log_file: Option<PathBuf>,
    /// Also copy the function's output to the harness's stderr as it arrives.
    pub echo_logs: bool,
    /// A cgroup directory (v1 controller folder or v2 group) the process joins before it execs
    /// the bootstrap, so that a CPU limit applies from its first instruction (init included), as
    /// Lambda's does. `None`: the harness's own cgroup.
    pub cgroup: Option<PathBuf>,
}

/// What [`Function::stop`] found out about the process.
#[derive(Debug, Clone)]
pub struct StopReport {
    /// Peak resident set size (`VmHWM`) in bytes, if the process was still alive to be measured.
    pub peak_rss_bytes: Option<u64>,
    /// Whether the process had already exited on its own before it was stopped.
    pub exited_on_its_own: bool,
    /// Its exit status (a signal, when the harness killed it).
    pub status: Option<ExitStatus>,
    /// Everything it wrote to stdout and stderr (lossy UTF-8), drained to the end.
    pub logs: String,
}

/// A running function process, serving one [`RuntimeApi`].
pub struct Function {
    api: RuntimeApi,
    name: String,
    bootstrap: PathBuf,
    pid: u32,
    spawned_at: Instant,
    exit: watch::Receiver<Option<ExitStatus>>,
    kill: Option<oneshot::Sender<()>>,
    logs: LogSink,
    readers: Vec<JoinHandle<()>>,
}

impl Function {
    /// Starts `bootstrap` against `api` with Lambda's environment plus `env` (whose values win).
    pub fn spawn(
        bootstrap: impl AsRef<Path>,
        env: &[(String, String)],
        api: &RuntimeApi,
    ) -> Result<Function, HarnessError> {
        let options = SpawnOptions { env: env.to_vec(), ..SpawnOptions::default() };
        Function::spawn_with(bootstrap, &options, api)
    }

    /// Starts `bootstrap` on a Runtime API of its own (one execution environment).
    pub async fn start(bootstrap: impl AsRef<Path>, options: &SpawnOptions) -> Result<Function, HarnessError> {
        let api = RuntimeApi::start().await?;
        Function::spawn_with(bootstrap, options, &api)
    }

    /// Starts `bootstrap` against `api` as described by `options`. Must be called inside a Tokio
    /// runtime. `api` should not have served another process: cold init is measured from its first poll.
    pub fn spawn_with(
        bootstrap: impl AsRef<Path>,
        options: &SpawnOptions,
        api: &RuntimeApi,
    ) -> Result<Function, HarnessError> {
        let given = bootstrap.as_ref();
        let bootstrap = std::fs::canonicalize(given)
            .map_err(|source| HarnessError::BinaryNotFound { path: given.to_path_buf(), source })?;
        if !bootstrap.is_file() {
            let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
            return Err(HarnessError::BinaryNotFound { path: given.to_path_buf(), source });
        }
        let default_name =
            bootstrap.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "function".into());
        let task_root = bootstrap.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));

        let env = lambda_environment(&default_name, &task_root, api, options);
        let name = env.get("AWS_LAMBDA_FUNCTION_NAME").cloned().unwrap_or(default_name);
        let region = env.get("AWS_REGION").cloned().unwrap_or_else(|| DEFAULT_REGION.into());
        api.set_function(&name, &region);

        let logs = LogSink::new(options.log_file.as_deref(), options.echo_logs)?;
        let mut command = Command::new(&bootstrap);
        command
            .env_clear()
            .envs(&env)
            .current_dir(&task_root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(group) = &options.cgroup {
            join_cgroup_before_exec(&mut command, group)?;
        }

        let spawned_at = Instant::now();
        let mut child = command.spawn().map_err(|source| HarnessError::Spawn { path: bootstrap.clone(), source })?;
        let pid = child.id().unwrap_or(0);

        let mut readers = Vec::with_capacity(2);
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(copy_lines(stdout, logs.clone())));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(copy_lines(stderr, logs.clone())));
        }

        let (exit_tx, exit) = watch::channel(None);
        let (kill, kill_rx) = oneshot::channel();
        tokio::spawn(supervise(child, exit_tx, kill_rx));

        Ok(Function { api: api.clone(), name, bootstrap, pid, spawned_at, exit, kill: Some(kill), logs, readers })
    }

    /// The Runtime API this process talks to.
    pub fn api(&self) -> &RuntimeApi {
        &self.api
    }

    /// `AWS_LAMBDA_FUNCTION_NAME` as the function sees it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The absolute path of the binary.
    pub fn bootstrap(&self) -> &Path {
        &self.bootstrap
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The instant just before the process was started.
    pub fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    /// Cold init: from starting the process to its first `GET /next`, once that happened.
    pub fn cold_init(&self) -> Option<Duration> {
        self.api.first_poll().map(|at| at.saturating_duration_since(self.spawned_at))
    }

    /// Waits until the function has initialised (its first `GET /next`) and returns the cold init
    /// time; fails at once if the process exits or reports an init error first.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Duration, HarnessError> {
        tokio::select! {
            biased;
            at = self.api.wait_first_poll() => Ok(at.saturating_duration_since(self.spawned_at)),
            failure = self.api.wait_init_error() => {
                Err(HarnessError::InitError { error_type: failure.error_type, message: failure.message })
            }
            error = self.exited() => Err(error),
            () = tokio::time::sleep(timeout) => Err(HarnessError::Timeout(timeout)),
        }
    }

    /// Invokes the function with `event` and waits up to `timeout` for its answer. Fails promptly
    /// with [`HarnessError::ProcessExited`] if the process dies first.
    pub async fn invoke(&self, event: &Value, timeout: Duration) -> Result<Invocation, HarnessError> {
        self.api.invoke_until(event, timeout, self.exited()).await
    }

    /// The exit status, if the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// True while the process has not exited.
    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Peak resident set size so far (`VmHWM` of `/proc/<pid>/status`), in bytes. Only while the
    /// process is alive.
    pub fn peak_rss_bytes(&self) -> Result<u64, HarnessError> {
        if !self.is_running() {
            return Err(HarnessError::Rss { pid: self.pid, reason: "the process has exited".into() });
        }
        read_vm_hwm(self.pid)
    }

    /// Everything the function wrote to stdout and stderr so far (lossy UTF-8).
    pub fn logs(&self) -> String {
        self.logs.since(0)
    }

    /// The current length of the captured logs, to pass to [`Function::logs_since`] later.
    pub fn logs_len(&self) -> usize {
        self.logs.len()
    }

    /// What the function wrote since the log length was `offset`.
    pub fn logs_since(&self, offset: usize) -> String {
        self.logs.since(offset)
    }

    /// SIGTERM, as Lambda sends at shutdown, then up to `grace` for the process to exit by itself
    /// (a profiler under it writes its output then), then [`stop`](Self::stop).
    pub async fn terminate(self, grace: Duration) -> StopReport {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        let mut exit = self.exit.clone();
        let _ = tokio::time::timeout(grace, exit.wait_for(Option::is_some)).await;
        self.stop().await
    }

    /// Measures peak RSS, kills the process if it is still running, waits for it and for its output
    /// to be fully captured.
    pub async fn stop(mut self) -> StopReport {
        let peak_rss_bytes = self.peak_rss_bytes().ok();
        let exited_on_its_own = !self.is_running();
        if let Some(kill) = self.kill.take() {
            // The supervisor is gone only if the process already exited; nothing to kill then.
            let _ = kill.send(());
        }
        let mut exit = self.exit.clone();
        let status = match exit.wait_for(Option::is_some).await {
            Ok(status) => *status,
            Err(_) => None,
        };
        for reader in std::mem::take(&mut self.readers) {
            // A grandchild holding the pipes open must not hang the harness.
            let _ = tokio::time::timeout(LOG_DRAIN, reader).await;
        }
        StopReport { peak_rss_bytes, exited_on_its_own, status, logs: self.logs() }
    }

    /// Resolves when the process exits, to the error an invocation should fail with.
    async fn exited(&self) -> HarnessError {
        let mut exit = self.exit.clone();
        let status = match exit.wait_for(Option::is_some).await {
            Ok(status) => status.map(|s| s.to_string()),
            Err(_) => None,
        };
        HarnessError::ProcessExited { status: status.unwrap_or_else(|| "status unknown".into()) }
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

/// Owns the child: reports its exit, or kills it (by PID, through its handle) when asked.
async fn supervise(mut child: Child, exit_tx: watch::Sender<Option<ExitStatus>>, kill_rx: oneshot::Receiver<()>) {
    let status = tokio::select! {
        status = child.wait() => status.ok(),
        // Asked to stop, or the `Function` was dropped without asking: either way, kill.
        _ = kill_rx => {
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    exit_tx.send_replace(status.or_else(unknown_status));
}

/// An exit status for a child whose wait failed (it is gone, but the OS did not say how).
fn unknown_status() -> Option<ExitStatus> {
    use std::os::unix::process::ExitStatusExt;
    Some(ExitStatus::from_raw(-1))
}

/// Lambda's environment for `provided.al2023`, under the caller's values.
fn lambda_environment(
    default_name: &str,
    task_root: &Path,
    api: &RuntimeApi,
    options: &SpawnOptions,
) -> BTreeMap<String, String> {
    let mut base: BTreeMap<String, String> = if options.inherit_env {
        std::env::vars().collect()
    } else {
        FORWARDED.iter().filter_map(|key| std::env::var(key).ok().map(|value| ((*key).to_owned(), value))).collect()
    };
    let caller: BTreeMap<String, String> = options.env.iter().cloned().collect();
    let given = |key: &str| caller.get(key).or_else(|| base.get(key)).cloned();

    let region = given("AWS_REGION").or_else(|| given("AWS_DEFAULT_REGION")).unwrap_or_else(|| DEFAULT_REGION.into());
    let name = given("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| default_name.to_owned());
    let task_root = task_root.to_string_lossy().into_owned();
    let stream = log_stream_name();

    let defaults = [
        ("AWS_LAMBDA_RUNTIME_API", api.host_port()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".into()),
        ("AWS_REGION", region.clone()),
        ("AWS_DEFAULT_REGION", region),
        ("_HANDLER", "bootstrap".into()),
        ("LAMBDA_TASK_ROOT", task_root.clone()),
        ("LAMBDA_RUNTIME_DIR", task_root),
        ("LANG", "en_US.UTF-8".into()),
        ("TZ", ":UTC".into()),
    ];
    for (key, value) in defaults {
        // Inherited host values for Lambda's own variables are overridden; the region and name were
        // resolved above from what the caller (or the inherited environment) gave.
        base.insert(key.to_owned(), value);
    }
    base.extend(caller);
    base
}

/// `YYYY/MM/DD/[$LATEST]<32 hex>`, the shape of a Lambda log stream name.
fn log_stream_name() -> String {
    let days = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}/{month:02}/{day:02}/[$LATEST]{}", uuid::Uuid::new_v4().simple())
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Reads `VmHWM` (peak RSS, in kB) from `/proc/<pid>/status` and returns bytes.
fn read_vm_hwm(pid: u32) -> Result<u64, HarnessError> {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).map_err(|e| HarnessError::Rss { pid, reason: format!("{path}: {e}") })?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .ok_or_else(|| HarnessError::Rss { pid, reason: format!("no VmHWM line in {path}") })?;
    let kib: u64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|e| HarnessError::Rss { pid, reason: format!("bad VmHWM value {line:?}: {e}") })?;
    Ok(kib * 1024)
}

/// Where captured output goes: an in-memory buffer, and optionally a file and the harness's stderr.
#[derive(Clone)]
struct LogSink {
    buffer: Arc<Mutex<Vec<u8>>>,
    file: Option<Arc<Mutex<File>>>,
    echo: bool,
}

impl LogSink {
    fn new(path: Option<&Path>, echo: bool) -> Result<LogSink, HarnessError> {
        let file = match path {
            Some(path) => {
                let file = File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| HarnessError::WriteFile { path: path.to_path_buf(), source })?;
                Some(Arc::new(Mutex::new(file)))
            }
            None => None,
        };
        Ok(LogSink { buffer: Arc::default(), file, echo })
    }

    fn write(&self, line: &[u8]) {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(line);
        // Losing a line of a log file or of the echo is better than failing the invocation.
        if let Some(file) = &self.file {
            let _ = file.lock().unwrap_or_else(PoisonError::into_inner).write_all(line);
        }
        if self.echo {
            let _ = std::io::stderr().lock().write_all(line);
        }
    }

    fn len(&self) -> usize {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn since(&self, offset: usize) -> String {
        let buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(buffer.get(offset..).unwrap_or_default()).into_owned()
    }
}

/// Copies one output stream of the child into the sink, a whole line at a time so that stdout and
/// stderr interleave by line.
async fn copy_lines(stream: impl AsyncRead + Unpin, sink: LogSink) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => sink.write(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[tokio::test]
    async fn caller_env_wins_and_region_defaults() {
        let api = RuntimeApi::start().await.expect("server starts");
        let options = SpawnOptions {
            env: vec![
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "512".into()),
                ("AWS_REGION".into(), "eu-west-1".into()),
            ],
            ..SpawnOptions::default()
        };
        let env = lambda_environment("posts-read", Path::new("/var/task"), &api, &options);
        assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "512");
        assert_eq!(env["AWS_REGION"], "eu-west-1");
        assert_eq!(env["AWS_DEFAULT_REGION"], "eu-west-1");
        assert_eq!(env["AWS_LAMBDA_RUNTIME_API"], api.host_port());
        assert_eq!(env["LAMBDA_TASK_ROOT"], "/var/task");

        let env = lambda_environment("posts-read", Path::new("/var/task"), &api, &SpawnOptions::default());
        assert_eq!(env["AWS_REGION"], DEFAULT_REGION);
        assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "posts-read");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
        assert_eq!(env["_HANDLER"], "bootstrap");
    }
}
