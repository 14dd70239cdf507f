//! `make bench` and the fault drills: the release bootstraps run the way Lambda runs them (the
//! local Runtime API of `lambda-harness`, environment included); figures go to docs/performance.md
//! and drill results to docs/reliability.md, each with the command that produced it.

mod concurrency;
mod drill_runs;
mod drills;
mod drills_async;
mod drills_cluster;
mod drills_posts;
mod floor;
mod lambda_shaped;
mod perf;
mod sessions;
mod stats;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use drill_runs::DrillFuture;

/// The part of docs/reliability.md that explains what was found, kept beside the code that writes it.
const RELIABILITY_NOTES: &str = include_str!("reliability_notes.md");

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Sizes, cold init, warm latency, RSS, stampede → docs/performance.md.
    Perf(Args),
    /// Only the Lambda-shaped section (TLS endpoints, CPU shares, billed cost, the Node baseline),
    /// the part of `perf` it writes, to `--out`.
    Lambda(Args),
    /// Only the posts-read concurrency 1/4/16 section (the part of `perf` it writes), to `--out`.
    Concurrency(Args),
    /// Fault drills → docs/reliability.md; exits 1 when a drill misses its goal.
    Drill(Args),
    /// Cold starts and a warm loop of one function on one event, nothing else: the workload that
    /// `scripts/profile.sh` records with `perf`.
    Exercise {
        #[arg(long)]
        bin: PathBuf,
        #[arg(long)]
        env_file: PathBuf,
        #[arg(long)]
        event: PathBuf,
        #[arg(long, default_value_t = 20)]
        colds: usize,
        #[arg(long, default_value_t = 5000)]
        warm: usize,
    },
    /// Only the session pieces: the "Session memory" bench section and the refresh-flood drill,
    /// printed as Markdown (what `make bench` / `make drill` write among the rest).
    Sessions {
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
    /// Drills only: run just this one (redis-posts-read, redis-seed-replaced, redis-auth-refresh, refresh-flood,
    /// webhook-killed, posts-flood, ses-outage).
    #[arg(long)]
    only: Option<String>,
    /// Drills only: runs of each drill on an idle machine (one more runs under CPU load).
    #[arg(long, env = "DRILL_REPEAT", default_value_t = 5)]
    repeat: usize,
}

/// The Lambda-shaped mode needs a cgroup CPU quota, TLS tools and the Node baseline: without any
/// of them the bench stops with the reason instead of measuring something else.
pub fn refuse_without_lambda_shape() {
    if let Err(reason) = lambda_shaped::preflight() {
        eprintln!("bench: {reason}");
        std::process::exit(2);
    }
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Cmd::Perf(args) => perf::run(&args).await,
        Cmd::Lambda(args) => {
            refuse_without_lambda_shape();
            let env = lambda_harness::env::read_env_file(&args.env_file).expect("env file");
            let written_by = format!("Written by `{}`.", args.command);
            let pages = lambda_shaped::section(&args.bin_dir, &env, &args.events, &written_by).await;
            let md = [pages.summary, pages.decisions, pages.figures].join("\n");
            std::fs::write(&args.out, md).expect("write the section");
            println!("wrote {}", args.out.display());
        }
        Cmd::Concurrency(args) => {
            let env = lambda_harness::env::read_env_file(&args.env_file).expect("env file");
            let hit = perf::read_event(&args.events, "posts-read/get-hit.json");
            let n = args.warm_invocations.max(200);
            let md = concurrency::section(&args.bin_dir.join("posts-read"), &env, &hit, n).await;
            std::fs::write(&args.out, md).expect("write the section");
            println!("wrote {}", args.out.display());
        }
        Cmd::Exercise { bin, env_file, event, colds, warm } => {
            let env = lambda_harness::env::read_env_file(&env_file).expect("env file");
            let text = std::fs::read_to_string(&event).expect("event file");
            let events = floor::Events::same(serde_json::from_str(&text).expect("event JSON"));
            let row = floor::measure("exercise", &bin, &env, &events, colds, warm).await;
            println!(
                "init {:?}, first response {:?}, CPU/invocation {:?}, p50 {:?}, p99 {:?}, peak RSS after first {} KiB \
                 (anonymous {} KiB, mapped files {} KiB)",
                row.init,
                row.first_response,
                row.cpu_per_invocation,
                row.p50,
                row.p99,
                row.rss_first / 1024,
                row.anon_first / 1024,
                row.file_first / 1024
            );
        }
        Cmd::Sessions { bin_dir, env_file, events } => {
            let env = lambda_harness::env::read_env_file(&env_file).expect("env file");
            println!("{}", sessions::memory_section(&bin_dir, &env, &events).await);
            let row = floor::refresh_row(&bin_dir, &env, &events, 10, 2000).await;
            println!(
                "refresh (rotation), release: init {:?}, CPU/invocation {:?}, warm p50 {:?}, p99 {:?}\n",
                row.init, row.cpu_per_invocation, row.p50, row.p99
            );
            let refresh = perf::read_event(&events, "auth-refresh/refresh-body.json");
            let r = sessions::refresh_flood(&bin_dir, &env, &refresh).await;
            println!("{}", r.markdown);
            if !r.passed {
                std::process::exit(1);
            }
        }
        Cmd::Drill(args) => {
            let env = lambda_harness::env::read_env_file(&args.env_file).expect("env file");
            let hit = perf::read_event(&args.events, "posts-read/get-hit.json");
            let refresh = perf::read_event(&args.events, "auth-refresh/refresh-body.json");
            let webhook = perf::read_event(&args.events, "stripe-webhook/payment-succeeded.json");
            let wanted = |name: &str| args.only.as_deref().is_none_or(|o| o == name);
            let repeat = args.repeat;
            let (bin, env) = (&args.bin_dir, &env);
            let mut results = Vec::new();
            if wanted("redis-posts-read") {
                let drill = || -> DrillFuture<'_> { Box::pin(drills::redis_down_posts_read(bin, env, &hit)) };
                results.push(drill_runs::repeated("redis-posts-read", repeat, drill).await);
            }
            if wanted("redis-seed-replaced") {
                let drill =
                    || -> DrillFuture<'_> { Box::pin(drills_cluster::seed_node_replaced_posts_read(bin, env, &hit)) };
                results.push(drill_runs::repeated("redis-seed-replaced", repeat, drill).await);
            }
            if wanted("redis-auth-refresh") {
                let drill = || -> DrillFuture<'_> { Box::pin(drills::redis_down_auth_refresh(bin, env, &refresh)) };
                results.push(drill_runs::repeated("redis-auth-refresh", repeat, drill).await);
            }
            if wanted("refresh-flood") {
                let drill = || -> DrillFuture<'_> { Box::pin(sessions::refresh_flood(bin, env, &refresh)) };
                results.push(drill_runs::repeated("refresh-flood", repeat, drill).await);
            }
            if wanted("webhook-killed") {
                let drill =
                    || -> DrillFuture<'_> { Box::pin(drills_async::webhook_killed_mid_event(bin, env, &webhook)) };
                results.push(drill_runs::repeated("webhook-killed", repeat, drill).await);
            }
            if wanted("posts-flood") {
                let drill = || -> DrillFuture<'_> { Box::pin(drills_posts::deep_page_flood(bin, &args.events, env)) };
                results.push(drill_runs::repeated("posts-flood", repeat, drill).await);
            }
            if wanted("ses-outage") {
                let drill = || -> DrillFuture<'_> { Box::pin(drills_async::ses_outage(bin, env)) };
                results.push(drill_runs::repeated("ses-outage", repeat, drill).await);
            }
            if results.is_empty() {
                eprintln!("no drill named {:?}", args.only);
                std::process::exit(2);
            }
            let mut md = format!(
                "# Reliability drills\n\nWritten by `{}` on {}. Each drill runs the release bootstraps under the \
                 local Lambda Runtime API (tools/lambda-harness) against real redis-server / moto processes on \
                 loopback, breaks one dependency on purpose, and counts what callers saw. Each drill runs {repeat} \
                 times on an idle machine and once more with every core busy (`DRILL_REPEAT` sets the count); \
                 it passes only if every run does.\n\n| drill | runs passed |\n| --- | --- |\n",
                args.command,
                time::OffsetDateTime::now_utc().date()
            );
            for r in &results {
                md.push_str(&format!("| {} | {}/{} |\n", r.name, r.passed(), r.runs.len()));
            }
            md.push('\n');
            md.push_str(RELIABILITY_NOTES);
            for r in &results {
                md.push_str(&r.markdown());
            }
            std::fs::write(&args.out, md).expect("write report");
            println!("wrote {}", args.out.display());
            if results.iter().any(|r| !r.all_passed()) {
                eprintln!("a drill missed its goal; see {}", args.out.display());
                std::process::exit(1);
            }
        }
    }
}
