//! Operator CLI for the bundle: seed demo data, mint a session for a user, revoke a user's sessions,
//! replay a dead-letter queue, and (for `make dev`) feed a local queue to a function the way
//! Lambda's event source mapping does. Reads the same environment as the functions (`.dev/env`
//! locally; AWS_* for endpoints, REDIS_* and JWT_* for sessions), so what it mints the functions
//! accept.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName};
use clap::{Parser, Subcommand};
use shared::auth::access::{SigningSettings, fill_access_token_placeholders, generate_key_pair};
use shared::auth::{AccessTokenSigner, RefreshSettings, RefreshTokenStore, Sessions, UserId};
use shared::clients::{AwsClients, RedisSettings, RedisStore, load_sdk_config};
use shared::config::{EnvReader, exit_on_error};
use shared::posts::{Post, PostId, PostsRepo};

mod id_token;

#[derive(Parser)]
#[command(name = "ops", about = "Operator tasks for the Rust serverless bundle")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes demo posts "1".."N" into POSTS_TABLE (every third one unpublished) and, when
    /// ORDERS_TABLE / SUBSCRIPTIONS_TABLE are set, the pending order `ord_demo_1` and the active
    /// subscription `sub_demo_1` that events/stripe-webhook pays and cancels, and when UPLOADS_BUCKET
    /// is set, the two uploads of user-1 that events/upload-presign records (a PNG, an HTML "PNG").
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
    /// Mints an Ed25519 key pair for access tokens and prints
    /// {"kid", "JWT_SIGNING_KEY", "JWT_SIGNING_KEY_ID", "publicKeyEntry"}: the private key goes to
    /// auth-refresh only (JwtSigningKey), the entry into JWT_PUBLIC_KEYS (JwtPublicKeys).
    Keygen {
        /// The key id tokens name in their `kid` header (1 to 64 of A-Z a-z 0-9 - _).
        #[arg(long, default_value = "k1")]
        kid: String,
    },
    /// Copies a folder of sample events (a manifest and its event files) to another, replacing
    /// every `{{access-token:<userId>}}` with a fresh access token signed with JWT_SIGNING_KEY.
    RenderEvents {
        #[arg(long)]
        from: std::path::PathBuf,
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Prints an ID token of the local OIDC issuer (make dev, the test stack) for `sub`, alone on
    /// stdout: `curl -H 'content-type: application/json' -H "origin: $ORIGIN"
    /// -d "{\"idToken\":\"$(ops id-token --sub alice)\"}" $API_URL/auth/session`.
    /// Reads OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_DEV_ISSUER_KEY (.dev/env).
    IdToken {
        /// The subject (the user at the issuer).
        #[arg(long)]
        sub: String,
        /// The audience (default: OIDC_CLIENT_ID); another one makes a token auth-refresh refuses.
        #[arg(long)]
        aud: Option<String>,
    },
    /// Moves messages from a dead-letter queue back to a queue (send, then delete), keeping their
    /// body and message attributes. Prints {"moved": N}.
    DlqReplay {
        /// The dead-letter queue's URL.
        #[arg(long)]
        from: String,
        /// The queue to put the messages back on.
        #[arg(long)]
        to: String,
        /// Move at most this many messages (default: until the dead-letter queue is empty).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max: Option<u64>,
    },
    /// Feeds a queue to a function like Lambda's SQS event source mapping: long-polls batches,
    /// POSTs each as an SQS event to the function's invoke URL, and deletes the messages the
    /// function did not list in batchItemFailures. Runs until killed (`make dev`).
    PollQueue {
        #[arg(long)]
        queue_url: String,
        /// For example http://127.0.0.1:9000/2015-03-31/functions/email-sender/invocations.
        #[arg(long)]
        invoke_url: String,
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=10))]
        batch_size: u8,
        /// Long-poll wait, in seconds.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=20))]
        wait: u8,
    },
}

fn parse_user_id(raw: &str) -> Result<UserId, String> {
    UserId::parse(raw).map_err(|e| e.to_string())
}

/// The session service over REDIS_* / JWT_* / ACCESS_TOKEN_TTL_SECONDS / REFRESH_* variables.
fn sessions(command: &str) -> Sessions {
    let mut env = EnvReader::from_env();
    let redis = RedisSettings::from_env(&mut env);
    let access = SigningSettings::from_env(&mut env);
    let refresh = RefreshSettings::from_env(&mut env);
    let (redis, access, refresh) = exit_on_error(env.finish((redis, access, refresh)));
    let redis = match RedisStore::new(redis) {
        Ok(store) => Arc::new(store),
        Err(e) => fail(command, e),
    };
    Sessions::new(RefreshTokenStore::new(redis, refresh), AccessTokenSigner::new(&access))
}

/// Copies every file under `from` to `to`, filling access-token and ID-token placeholders.
fn render_events(from: &std::path::Path, to: &std::path::Path) -> Result<usize, String> {
    let mut env = EnvReader::from_env();
    let access = SigningSettings::from_env(&mut env);
    let signer = AccessTokenSigner::new(&exit_on_error(env.finish(access)));
    let mut count = 0;
    let mut dirs = vec![from.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            let target = to.join(path.strip_prefix(from).map_err(|e| e.to_string())?);
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            std::fs::create_dir_all(target.parent().unwrap_or(to)).map_err(|e| e.to_string())?;
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let filled =
                fill_access_token_placeholders(&text, &signer).map_err(|e| format!("{}: {e}", path.display()))?;
            let filled = id_token::fill_id_token_placeholders(&filled, id_token::DevIssuer::from_env)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            std::fs::write(&target, filled).map_err(|e| format!("{}: {e}", target.display()))?;
            count += 1;
        }
    }
    Ok(count)
}

fn fail(command: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("ops {command}: {e}");
    std::process::exit(1);
}

/// Objects under user-1's upload prefix, as a browser would have PUT them with presigned URLs.
fn demo_uploads() -> [(&'static str, &'static [u8]); 2] {
    const PNG_1X1: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00,
        0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0xDA, 0x63, 0x64, 0x60, 0xF8, 0x5F, 0x0F, 0x00, 0x02, 0x87, 0x01, 0x80,
        0xEB, 0x47, 0xBA, 0x92, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];
    [
        ("uploads/user-1/6f1c2b9e-4d3a-4b8e-9f21-0a5c7e3d1b42.png", PNG_1X1),
        (
            "uploads/user-1/0d6e8a4f-2c1b-4e7a-8b3c-5f9d1e2a7c60.png",
            b"<!doctype html><html><body>not a png</body></html>",
        ),
    ]
}

/// Demo posts one hour apart, newest last; every third is a draft, which readers never see.
/// The pending order that `events/stripe-webhook/payment-succeeded.json` pays (2599 eur), so
/// that under `make dev` the webhook leads to a real order confirmation email.
fn demo_order() -> shared::payments::Order {
    use shared::payments::{Order, OrderId, OrderItem, OrderStatus};
    Order {
        id: OrderId::parse("ord_demo_1").expect("valid order id"),
        status: OrderStatus::Pending,
        email: "customer@example.com".into(),
        currency: "eur".into(),
        total: 2599,
        items: vec![
            OrderItem { name: "Rust mug".into(), quantity: 1, unit_amount: 1599 },
            OrderItem { name: "Sticker <b>pack</b>".into(), quantity: 2, unit_amount: 500 },
        ],
        created_at: shared::clock::timestamp_now(),
        paid_at: None,
        payment_intent_id: None,
    }
}

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

/// An SQS client whose timeouts allow long polling (the functions' clients cut an attempt at 2 s).
async fn sqs_client() -> aws_sdk_sqs::Client {
    let sdk = load_sdk_config().await;
    let timeouts = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_secs(60))
        .build();
    aws_sdk_sqs::Client::from_conf(aws_sdk_sqs::config::Builder::from(&sdk).timeout_config(timeouts).build())
}

fn base64_data(bytes: Vec<u8>) -> Base64Data {
    let mut data = Base64Data::default();
    *data = bytes;
    data
}

/// The record Lambda's event source mapping makes of a received message.
fn sqs_record(message: &Message, queue_arn: &str) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = message.message_id.clone();
    record.receipt_handle = message.receipt_handle.clone();
    record.body = message.body.clone();
    record.md5_of_body = message.md5_of_body.clone();
    record.md5_of_message_attributes = message.md5_of_message_attributes.clone();
    record.attributes = message
        .attributes
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| (name.as_str().to_owned(), value))
        .collect();
    record.message_attributes = shared::email::dlq::sendable_attributes(message)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| {
            let mut attribute = SqsMessageAttribute::default();
            attribute.data_type = Some(value.data_type);
            attribute.string_value = value.string_value;
            attribute.binary_value = value.binary_value.map(|b| base64_data(b.into_inner()));
            attribute.string_list_values = value.string_list_values.unwrap_or_default();
            attribute.binary_list_values =
                value.binary_list_values.unwrap_or_default().into_iter().map(|b| base64_data(b.into_inner())).collect();
            (name, attribute)
        })
        .collect();
    record.event_source = Some("aws:sqs".into());
    record.event_source_arn = Some(queue_arn.to_owned());
    // arn:aws:sqs:REGION:ACCOUNT:NAME
    record.aws_region = queue_arn.split(':').nth(3).map(str::to_owned);
    record
}

/// Which records of a batch failed, read from the function's answer the way Lambda reads it: an
/// error, an unreadable answer, or a failure entry that names no record of the batch fails the
/// whole batch; no (or an empty) `batchItemFailures` means every record succeeded.
fn failed_records(status: u16, function_error: bool, body: &[u8], batch: &HashSet<String>) -> HashSet<String> {
    let everything = || batch.clone();
    if !(200..300).contains(&status) || function_error {
        return everything();
    }
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() || text.trim() == "null" {
        return HashSet::new();
    }
    let Ok(answer) = serde_json::from_str::<serde_json::Value>(&text) else { return everything() };
    if answer.get("errorType").is_some() || answer.get("errorMessage").is_some() {
        return everything();
    }
    let Some(failures) = answer.get("batchItemFailures").filter(|f| !f.is_null()) else { return HashSet::new() };
    let Some(failures) = failures.as_array() else { return everything() };
    let mut failed = HashSet::new();
    for failure in failures {
        match failure.get("itemIdentifier").and_then(|id| id.as_str()) {
            Some(id) if batch.contains(id) => {
                failed.insert(id.to_owned());
            }
            _ => return everything(),
        }
    }
    failed
}

async fn poll_queue(queue_url: &str, invoke_url: &str, batch_size: u8, wait: u8) -> ! {
    let sqs = sqs_client().await;
    let http = reqwest::Client::builder()
        // The first invocation under `cargo lambda watch` includes compiling the function.
        .timeout(Duration::from_secs(900))
        .build()
        .unwrap_or_else(|e| fail("poll-queue", e));
    let queue_arn = loop {
        match sqs.get_queue_attributes().queue_url(queue_url).attribute_names(QueueAttributeName::QueueArn).send().await
        {
            Ok(out) => {
                if let Some(arn) = out.attributes.and_then(|mut a| a.remove(&QueueAttributeName::QueueArn)) {
                    break arn;
                }
                fail("poll-queue", format!("{queue_url} has no QueueArn"));
            }
            Err(e) => {
                eprintln!("ops poll-queue: {queue_url}: {}", DisplayErrorContext(&e));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    eprintln!("ops poll-queue: {queue_arn} -> {invoke_url}");
    loop {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(i32::from(batch_size))
            .wait_time_seconds(i32::from(wait))
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                eprintln!("ops poll-queue: receive: {}", DisplayErrorContext(&e));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(|m| sqs_record(m, &queue_arn)).collect();
        let batch: HashSet<String> = messages.iter().filter_map(|m| m.message_id.clone()).collect();
        let failed = match http.post(invoke_url).json(&event).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let function_error = response.headers().contains_key("x-amz-function-error");
                let body = response.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                failed_records(status, function_error, &body, &batch)
            }
            Err(e) => {
                eprintln!("ops poll-queue: invoke: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                batch.clone()
            }
        };
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.message_id.as_ref().is_some_and(|id| !failed.contains(id)))
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle.clone())
                    .build()
                    .ok()
            })
            .collect();
        let deleted = entries.len();
        if !entries.is_empty()
            && let Err(e) = sqs.delete_message_batch().queue_url(queue_url).set_entries(Some(entries)).send().await
        {
            eprintln!("ops poll-queue: delete: {}", DisplayErrorContext(&e));
        }
        println!("{}", serde_json::json!({ "received": messages.len(), "deleted": deleted, "failed": failed.len() }));
    }
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
            let repo_client = aws.dynamodb().clone();
            let repo = PostsRepo::new(aws.dynamodb().clone(), table);
            for post in demo_posts(count) {
                if let Err(e) = repo.put(&post).await {
                    eprintln!("ops seed: {e}");
                    std::process::exit(1);
                }
            }
            let orders = match std::env::var("ORDERS_TABLE") {
                Ok(orders_table) if !orders_table.is_empty() => {
                    let orders = shared::payments::OrdersRepo::new(repo_client.clone(), orders_table);
                    if let Err(e) = orders.put(&demo_order()).await {
                        eprintln!("ops seed: {e}");
                        std::process::exit(1);
                    }
                    1
                }
                _ => 0,
            };
            if let Ok(table) = std::env::var("SUBSCRIPTIONS_TABLE")
                && !table.is_empty()
            {
                // The subscription events/stripe-webhook/subscription-deleted.json cancels.
                let subscriptions = shared::payments::SubscriptionsRepo::new(repo_client.clone(), table);
                if let Err(e) = subscriptions.put("sub_demo_1", "active", Some("cus_demo_1")).await {
                    eprintln!("ops seed: {e}");
                    std::process::exit(1);
                }
            }
            let mut uploads = 0;
            if let Ok(bucket) = std::env::var("UPLOADS_BUCKET")
                && !bucket.is_empty()
            {
                // The uploads events/upload-presign records: a real PNG, and an HTML file that was
                // uploaded as image/png (refused with 422 and deleted).
                for (key, body) in demo_uploads() {
                    let put = aws
                        .s3()
                        .put_object()
                        .bucket(&bucket)
                        .key(key)
                        .content_type("image/png")
                        .body(body.to_vec().into())
                        .send()
                        .await;
                    if let Err(e) = put {
                        eprintln!("ops seed: {}", aws_sdk_s3::error::DisplayErrorContext(&e));
                        std::process::exit(1);
                    }
                    uploads += 1;
                }
            }
            println!(
                "{}",
                serde_json::json!({ "seeded": count, "table": repo.table(), "orders": orders, "uploads": uploads })
            );
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
        Command::Keygen { kid } => match generate_key_pair(&kid) {
            Ok((private, public)) => println!(
                "{}",
                serde_json::json!({
                    "kid": kid,
                    "JWT_SIGNING_KEY": private.expose(),
                    "JWT_SIGNING_KEY_ID": kid,
                    "publicKeyEntry": public.to_entry(),
                })
            ),
            Err(e) => fail("keygen", e),
        },
        Command::IdToken { sub, aud } => {
            match id_token::DevIssuer::from_env().and_then(|issuer| issuer.token(&sub, aud.as_deref())) {
                Ok(token) => println!("{token}"),
                Err(e) => fail("id-token", e),
            }
        }
        Command::RenderEvents { from, to } => match render_events(&from, &to) {
            Ok(files) => println!("{}", serde_json::json!({ "files": files })),
            Err(e) => fail("render-events", e),
        },
        Command::DlqReplay { from, to, max } => {
            let sqs = sqs_client().await;
            let max = max.map(|m| usize::try_from(m).unwrap_or(usize::MAX));
            match shared::email::dlq::replay(&sqs, &from, &to, max).await {
                Ok(report) => println!("{}", serde_json::json!({ "moved": report.moved })),
                Err(e) => fail("dlq-replay", e),
            }
        }
        Command::PollQueue { queue_url, invoke_url, batch_size, wait } => {
            poll_queue(&queue_url, &invoke_url, batch_size, wait).await
        }
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

    #[test]
    fn replay_and_poller_arguments() {
        let ok =
            Cli::try_parse_from(["ops", "dlq-replay", "--from", "http://q/dlq", "--to", "http://q/main", "--max", "3"]);
        assert!(matches!(ok.unwrap().command, Command::DlqReplay { max: Some(3), .. }));
        assert!(Cli::try_parse_from(["ops", "dlq-replay", "--from", "a", "--to", "b", "--max", "0"]).is_err());
        assert!(Cli::try_parse_from(["ops", "dlq-replay", "--from", "a"]).is_err());
        let poll = Cli::try_parse_from(["ops", "poll-queue", "--queue-url", "q", "--invoke-url", "u"]).unwrap();
        assert!(matches!(poll.command, Command::PollQueue { batch_size: 10, wait: 1, .. }));
        assert!(
            Cli::try_parse_from(["ops", "poll-queue", "--queue-url", "q", "--invoke-url", "u", "--batch-size", "11"])
                .is_err()
        );
    }

    #[test]
    fn batch_answers_are_read_as_lambda_reads_them() {
        let batch: HashSet<String> = ["a", "b", "c"].into_iter().map(String::from).collect();
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        let read = |status, error, body: &str| failed_records(status, error, body.as_bytes(), &batch);
        assert_eq!(read(200, false, r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#), ids(&["b"]));
        assert_eq!(read(200, false, r#"{"batchItemFailures":[]}"#), ids(&[]));
        assert_eq!(read(200, false, r#"{}"#), ids(&[]));
        assert_eq!(read(200, false, ""), ids(&[]));
        assert_eq!(read(200, false, "null"), ids(&[]));
        // Whole-batch failures.
        for (status, error, body) in [
            (200, false, r#"{"batchItemFailures":[{"itemIdentifier":"zzz"}]}"#),
            (200, false, r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#),
            (200, false, r#"{"batchItemFailures":[{"id":"a"}]}"#),
            (200, false, r#"{"errorType":"Panic","errorMessage":"boom"}"#),
            (200, true, r#"{"batchItemFailures":[]}"#),
            (200, false, "not json"),
            (502, false, ""),
        ] {
            assert_eq!(read(status, error, body), batch, "{status} {error} {body}");
        }
    }

    #[test]
    fn records_look_like_the_event_source_mappings() {
        let message = Message::builder()
            .message_id("m1")
            .receipt_handle("rh")
            .body("{}")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2")
            .message_attributes(
                "source",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("checkout")
                    .build()
                    .unwrap(),
            )
            .build();
        let record = serde_json::to_value(sqs_record(&message, "arn:aws:sqs:eu-west-1:123456789012:q")).unwrap();
        assert_eq!(record["messageId"], "m1");
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(record["eventSourceARN"], "arn:aws:sqs:eu-west-1:123456789012:q");
        assert_eq!(record["awsRegion"], "eu-west-1");
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(record["messageAttributes"]["source"]["stringValue"], "checkout");
        assert_eq!(record["messageAttributes"]["source"]["dataType"], "String");
    }
}
