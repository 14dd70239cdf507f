//! `lambda-harness`: run real Lambda function binaries locally under an emulated Runtime API.
//!
//! `invoke` sends one event to one binary and prints the answer; `check` runs every entry of an event
//! manifest and prints one `ok|FAIL` line per event and a `N passed, M failed` summary. Both exit 1
//! when something failed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use lambda_harness::check::{CheckOptions, read_event, run_check};
use lambda_harness::env::{parse_assignment, read_env_file};
use lambda_harness::{Function, HarnessError, Invocation, SpawnOptions};
use serde_json::Value;

/// Lines of function output shown with a failure.
const LOG_TAIL_LINES: usize = 30;

#[derive(Parser)]
#[command(name = "lambda-harness", version, about = "Run Lambda function binaries under a local Runtime API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Invoke one event and print the function's answer.
    Invoke(InvokeArgs),
    /// Invoke every event of a manifest and check the status codes.
    Check(CheckArgs),
}

#[derive(Args)]
struct EnvArgs {
    /// Environment variable for the function (repeatable); wins over --env-file and the Lambda defaults.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Dotenv file (KEY=VALUE lines, # comments) of variables for the function (repeatable).
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<PathBuf>,
    /// Pass the harness's whole environment to the function (Lambda does not; by default only PATH,
    /// AWS credentials and RUST_LOG/RUST_BACKTRACE are passed).
    #[arg(long)]
    inherit_env: bool,
    /// Invocation timeout in seconds (the first invocation of a process includes its init).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    timeout: f64,
}

impl EnvArgs {
    fn settings(&self) -> Result<Vec<(String, String)>, HarnessError> {
        let mut settings = Vec::new();
        for file in &self.env_files {
            settings.extend(read_env_file(file)?);
        }
        for assignment in &self.env {
            settings.push(parse_assignment(assignment, "--env")?);
        }
        Ok(settings)
    }

    fn timeout(&self) -> Result<Duration, HarnessError> {
        Duration::try_from_secs_f64(self.timeout).ok().filter(|timeout| !timeout.is_zero()).ok_or_else(|| {
            HarnessError::InvalidEnv {
                origin: "--timeout".into(),
                reason: format!("{} is not a positive number of seconds", self.timeout),
            }
        })
    }
}

#[derive(Args)]
struct InvokeArgs {
    /// The function binary (bootstrap).
    #[arg(long = "bin", value_name = "PATH")]
    bin: PathBuf,
    /// The event JSON file, or - for standard input.
    #[arg(long, value_name = "FILE")]
    event: PathBuf,
    /// Fail unless the response's statusCode is N.
    #[arg(long, value_name = "N")]
    expect_status: Option<u16>,
    /// Copy the function's output to stderr as it runs.
    #[arg(long)]
    logs: bool,
    /// Append the function's output to FILE.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    #[command(flatten)]
    env: EnvArgs,
}

#[derive(Args)]
struct CheckArgs {
    /// JSON array of {"function", "event", "expectStatus"}; event paths are relative to its folder.
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// Folder with the function binaries, named after the functions.
    #[arg(long, value_name = "DIR")]
    bin_dir: PathBuf,
    /// Append each function's output to DIR/<function>.log.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Read DIR/<function>.env (when present) over --env-file for that function only: variables
    /// that differ per function, such as each one's cache user (scripts/stack.sh writes them).
    #[arg(long, value_name = "DIR")]
    function_env_dir: Option<PathBuf>,
    #[command(flatten)]
    env: EnvArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Invoke(args) => invoke(args).await,
        Command::Check(args) => check(args).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("lambda-harness: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Returns whether the invocation met expectations.
async fn invoke(args: InvokeArgs) -> Result<bool, HarnessError> {
    let timeout = args.env.timeout()?;
    let event = if args.event == Path::new("-") { read_stdin()? } else { read_event(&args.event)? };
    let options = SpawnOptions {
        env: args.env.settings()?,
        inherit_env: args.env.inherit_env,
        log_file: args.log_file,
        echo_logs: args.logs,
        cgroup: None,
    };
    let function = Function::start(&args.bin, &options).await?;
    // Wait for init first, so that the latency below is the invocation's alone.
    let result = match function.wait_ready(timeout).await {
        Ok(_) => function.invoke(&event, timeout).await,
        Err(error) => Err(error),
    };
    let cold_init = function.cold_init();
    let report = function.stop().await;
    // `stop` drained the pipes, so the logs are complete now; with --logs they were shown already.
    let logs: String = if args.logs {
        String::new()
    } else {
        tail(&report.logs, LOG_TAIL_LINES).map(|line| format!("    | {line}\n")).collect()
    };

    let invocation = match result {
        Ok(invocation) => invocation,
        Err(error) => {
            eprintln!("lambda-harness: {}: {error}", args.bin.display());
            eprint!("{logs}");
            return Ok(false);
        }
    };
    println!("{}", pretty(&invocation));
    let millis = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let rss = report
        .peak_rss_bytes
        .map_or_else(|| "unknown".to_owned(), |bytes| format!("{:.1} MiB", bytes as f64 / 1_048_576.0));
    eprintln!(
        "lambda-harness: request {}: cold init {}, latency {}, peak RSS {rss}",
        invocation.request_id,
        cold_init.map_or_else(|| "unknown".to_owned(), millis),
        millis(invocation.latency),
    );

    let problem = if let Some(error) = invocation.error_summary() {
        Some(format!("function error: {error}"))
    } else {
        match (args.expect_status, invocation.status_code()) {
            (Some(expected), Some(got)) if got != expected => {
                Some(format!("expected statusCode {expected}, got {got}"))
            }
            (Some(expected), None) => Some(format!("expected statusCode {expected}, but the response has none")),
            _ => None,
        }
    };
    match problem {
        Some(problem) => {
            eprintln!("lambda-harness: FAIL {}: {problem}", args.bin.display());
            eprint!("{logs}");
            Ok(false)
        }
        None => Ok(true),
    }
}

fn read_stdin() -> Result<Value, HarnessError> {
    let path = PathBuf::from("-");
    let text = std::io::read_to_string(std::io::stdin())
        .map_err(|source| HarnessError::ReadFile { path: path.clone(), source })?;
    serde_json::from_str(&text).map_err(|source| HarnessError::InvalidJson { path, source })
}

fn pretty(invocation: &Invocation) -> String {
    match invocation.json() {
        Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string()),
        Err(_) => String::from_utf8_lossy(&invocation.body).into_owned(),
    }
}

/// Returns whether every event passed.
async fn check(args: CheckArgs) -> Result<bool, HarnessError> {
    let options = CheckOptions {
        bin_dir: args.bin_dir,
        spawn: SpawnOptions {
            env: args.env.settings()?,
            inherit_env: args.env.inherit_env,
            log_file: None,
            echo_logs: false,
            cgroup: None,
        },
        timeout: args.env.timeout()?,
        log_dir: args.log_dir,
        function_env_dir: args.function_env_dir,
    };
    let summary = run_check(&args.manifest, &options, |outcome| {
        println!("{outcome}");
        if !outcome.passed() {
            for line in tail(&outcome.logs, LOG_TAIL_LINES) {
                eprintln!("    | {line}");
            }
        }
    })
    .await?;
    println!("{summary}");
    if summary.passed + summary.failed == 0 {
        eprintln!("lambda-harness: {} has no entries", args.manifest.display());
        return Ok(false);
    }
    Ok(summary.failed == 0)
}

fn tail(text: &str, lines: usize) -> impl Iterator<Item = &str> {
    let all: Vec<&str> = text.lines().collect();
    let skip = all.len().saturating_sub(lines);
    all.into_iter().skip(skip)
}
