//! Operator CLI for the bundle: seed demo data (later: mint sessions, revoke, replay the DLQ).
//! Reads the same environment as the functions (`.dev/env` locally; AWS_* for endpoints).

use clap::{Parser, Subcommand};
use shared::clients::{AwsClients, load_sdk_config};
use shared::config::{EnvReader, exit_on_error};
use shared::posts::{Post, PostId, PostsRepo};

#[derive(Parser)]
#[command(name = "ops", about = "Operator tasks for the Rust serverless bundle")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes demo posts "1".."N" into POSTS_TABLE (every third one unpublished).
    Seed {
        #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=500))]
        count: u32,
    },
}

/// Demo posts one hour apart, newest last; every third is a draft, which readers never see.
fn demo_posts(count: u32) -> Vec<Post> {
    let start = time::OffsetDateTime::now_utc() - time::Duration::hours(i64::from(count));
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    (1..=count)
        .map(|i| {
            let at = (start + time::Duration::hours(i64::from(i))).format(&fmt).unwrap_or_default();
            Post {
                id: PostId::parse(&i.to_string()).expect("numeric ids are valid"),
                title: format!("Demo post {i}"),
                body: format!("This is demo post number {i}, seeded by `ops seed`."),
                author_id: format!("user-{}", 1 + i % 3),
                published: i % 3 != 0,
                created_at: at.clone(),
                updated_at: at,
                version: 1,
            }
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Seed { count } => {
            let mut env = EnvReader::from_env();
            let table = env.required("POSTS_TABLE", "the DynamoDB posts table name");
            let table = exit_on_error(env.finish(table));
            let aws = AwsClients::new(&load_sdk_config().await, true);
            let repo = PostsRepo::new(aws.dynamodb, table);
            for post in demo_posts(count) {
                if let Err(e) = repo.put(&post).await {
                    eprintln!("ops seed: {e}");
                    std::process::exit(1);
                }
            }
            println!("{}", serde_json::json!({ "seeded": count, "table": repo.table() }));
        }
    }
}
