//! Operator CLI for the bundle: seed demo data, mint a session for a user, revoke a user's sessions
//! (later: replay the DLQ). Reads the same environment as the functions (`.dev/env` locally; AWS_*
//! for endpoints, REDIS_* and JWT_* for sessions), so what it mints the functions accept.

use std::sync::Arc;

use clap::{Parser, Subcommand};
use shared::clients::{AwsClients, RedisSettings, RedisStore, load_sdk_config};
use shared::config::{EnvReader, exit_on_error};
use shared::posts::{Post, PostId, PostsRepo};
use shared::tokens::access::AccessTokenSettings;
use shared::tokens::{AccessTokens, RefreshSettings, RefreshTokenStore, Sessions, UserId};

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
    /// Signs a user in: starts a session and prints {"refreshToken","accessToken"} as JSON.
    /// This is how local users and tests log in (there is no login service in the bundle).
    Session {
        #[arg(long, value_parser = parse_user_id)]
        user_id: UserId,
    },
    /// Revokes every session of a user and prints how many were live.
    Revoke {
        #[arg(long, value_parser = parse_user_id)]
        user_id: UserId,
    },
}

fn parse_user_id(raw: &str) -> Result<UserId, String> {
    UserId::parse(raw).map_err(|e| e.to_string())
}

/// The session service over REDIS_* / JWT_* / ACCESS_TOKEN_TTL_SECONDS / REFRESH_* variables.
fn sessions(command: &str) -> Sessions {
    let mut env = EnvReader::from_env();
    let redis = RedisSettings::from_env(&mut env);
    let access = AccessTokenSettings::from_env(&mut env);
    let refresh = RefreshSettings::from_env(&mut env);
    let (redis, access, refresh) = exit_on_error(env.finish((redis, access, refresh)));
    let redis = match RedisStore::new(redis) {
        Ok(store) => Arc::new(store),
        Err(e) => fail(command, e),
    };
    Sessions::new(RefreshTokenStore::new(redis, refresh), AccessTokens::new(&access))
}

fn fail(command: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("ops {command}: {e}");
    std::process::exit(1);
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
        Command::Session { user_id } => match sessions("session").start(&user_id).await {
            Ok(session) => println!(
                "{}",
                serde_json::json!({
                    "refreshToken": session.refresh_token.expose(),
                    "accessToken": session.access_token.expose(),
                })
            ),
            Err(e) => fail("session", e),
        },
        Command::Revoke { user_id } => match sessions("revoke").end_all(&user_id).await {
            Ok(revoked) => println!("{}", serde_json::json!({ "userId": user_id, "revoked": revoked })),
            Err(e) => fail("revoke", e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn user_ids_are_checked_before_anything_runs() {
        let ok = Cli::try_parse_from(["ops", "session", "--user-id", "user-1"]).unwrap();
        assert!(matches!(ok.command, Command::Session { user_id } if user_id.as_str() == "user-1"));
        assert!(Cli::try_parse_from(["ops", "revoke", "--user-id", "{bad}"]).is_err());
        assert!(Cli::try_parse_from(["ops", "session"]).is_err());
    }
}
