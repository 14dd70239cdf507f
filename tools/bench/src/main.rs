//! `make bench` and the fault drills: the release bootstraps run the way Lambda runs them (the
//! local Runtime API of `lambda-harness`, environment included); figures go to BENCHMARKS.md and
//! drill results to RELIABILITY.md, each with the command that produced it.

mod corpus;
mod drills;
mod drills_async;
mod drills_posts;
mod perf;
mod stack_env;
mod stats;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Sizes, cold init, warm latency, RSS, stampede → BENCHMARKS.md.
    Perf(Args),
    /// Fault drills → RELIABILITY.md; exits 1 when a drill misses its goal.
    Drill(Args),
    /// The bad-input corpus against every HTTP function; exits 1 on any non-4xx, non-problem
    /// answer or a panic.
    Corpus {
        #[arg(long)]
        bin_dir: PathBuf,
        #[arg(long)]
        env_file: PathBuf,
        #[arg(long, default_value = "events")]
        events: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct Args {
    /// Folder with the release binaries.
    #[arg(long)]
    bin_dir: PathBuf,
    /// dotenv file of the local stack (scripts/stack.sh writes it).
    #[arg(long)]
    env_file: PathBuf,
    /// Where the events live.
    #[arg(long, default_value = "events")]
    events: PathBuf,
    /// Markdown output.
    #[arg(long)]
    out: PathBuf,
    /// The command line to record beside the figures.
    #[arg(long)]
    command: String,
    #[arg(long, default_value_t = 1000)]
    warm_invocations: usize,
    /// Drills only: run just this one (redis-posts-read, redis-auth-refresh, webhook-killed,
    /// ses-outage).
    #[arg(long)]
    only: Option<String>,
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Cmd::Perf(args) => perf::run(&args).await,
        Cmd::Corpus { bin_dir, env_file, events } => {
            let env = lambda_harness::env::read_env_file(&env_file).expect("env file");
            let bearer = stack_env::bearer(&env, "corpus-user");
            let base = perf::read_event(&events, "posts-read/get-hit.json");
            let (mut passed, mut failed) = (0usize, 0usize);
            for function in ["posts-read", "posts-write", "auth-refresh", "upload-presign", "stripe-webhook"] {
                let bin = bin_dir.join(function);
                if !bin.exists() {
                    eprintln!("corpus: {} is not built", bin.display());
                    failed += 1;
                    continue;
                }
                let cases = corpus::cases(function, &base, &bearer);
                let (ok, failures) = corpus::run(&bin, &env, &cases).await;
                println!("{function}: {ok}/{} hostile requests answered with a 4xx problem", cases.len());
                for f in &failures {
                    println!("  FAIL {function}: {f}");
                }
                passed += ok;
                failed += failures.len();
            }
            println!("{passed} passed, {failed} failed");
            if failed > 0 {
                std::process::exit(1);
            }
        }
        Cmd::Drill(args) => {
            let env = lambda_harness::env::read_env_file(&args.env_file).expect("env file");
            let hit = perf::read_event(&args.events, "posts-read/get-hit.json");
            let refresh = perf::read_event(&args.events, "auth-refresh/refresh-body.json");
            let webhook = perf::read_event(&args.events, "stripe-webhook/payment-succeeded.json");
            let wanted = |name: &str| args.only.as_deref().is_none_or(|o| o == name);
            let mut results = Vec::new();
            if wanted("redis-posts-read") {
                results.push(drills::redis_down_posts_read(&args.bin_dir, &env, &hit).await);
            }
            if wanted("redis-auth-refresh") {
                results.push(drills::redis_down_auth_refresh(&args.bin_dir, &env, &refresh).await);
            }
            if wanted("webhook-killed") {
                results.push(drills_async::webhook_killed_mid_event(&args.bin_dir, &env, &webhook).await);
            }
            if wanted("posts-flood") {
                results.push(drills_posts::deep_page_flood(&args.bin_dir, &args.events, &env).await);
            }
            if wanted("ses-outage") {
                results.push(drills_async::ses_outage(&args.bin_dir, &env).await);
            }
            if results.is_empty() {
                eprintln!("no drill named {:?}", args.only);
                std::process::exit(2);
            }
            let mut md = format!(
                "# Reliability drills\n\nWritten by `{}` on {}. Each drill runs the release bootstraps under the \
                 local Lambda Runtime API (tools/lambda-harness) against real redis-server / moto processes on \
                 loopback, breaks one dependency on purpose, and counts what callers saw.\n\n",
                args.command,
                time::OffsetDateTime::now_utc().date()
            );
            for r in &results {
                md.push_str(&r.markdown);
            }
            std::fs::write(&args.out, md).expect("write report");
            println!("wrote {}", args.out.display());
            if results.iter().any(|r| !r.passed) {
                eprintln!("a drill missed its goal; see {}", args.out.display());
                std::process::exit(1);
            }
        }
    }
}
