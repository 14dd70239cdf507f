//! The floor of a cold start over TLS: the Lambda runtime loop and nothing else but the
//! connections posts-read opens on a cache miss (one `rediss://` connection and one HTTPS
//! connection to DynamoDB, each used for one round trip: `PING` and a `GetItem` of post 1), built
//! with the bundle's own clients (`shared::clients`: same TLS stack, same trust store).
//!
//! `TLS_FLOOR_CONNECT=init` opens them before the first `/next` (in the init phase Lambda bills for
//! `provided.al2023`), `first-use` (the default) on the first invocation, as the functions do. The
//! Lambda-shaped bench compares both, throttled and not, to decide where connections are opened.

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};
use shared::clients::{AwsClients, RedisSettings, RedisStore, Retry};
use shared::config::EnvReader;
use tokio::sync::OnceCell;

struct Connections {
    redis: RedisStore,
    aws: AwsClients,
    table: String,
}

impl Connections {
    async fn open() -> Result<Self, lambda_runtime::Error> {
        let mut env = EnvReader::from_env();
        let settings = RedisSettings::from_env(&mut env);
        let table = env.required("POSTS_TABLE", "the posts table");
        let (settings, table) = env.finish((settings, table))?;
        let connections = Self { redis: RedisStore::new(settings)?, aws: AwsClients::load(false).await, table };
        connections.round_trips().await?;
        Ok(connections)
    }

    async fn round_trips(&self) -> Result<(), lambda_runtime::Error> {
        let _: String = self.redis.query(Retry::Idempotent, &redis::cmd("PING")).await?;
        let key = AttributeValue::S("1".into());
        self.aws.dynamodb().get_item().table_name(&self.table).key("id", key).send().await?;
        Ok(())
    }
}

fn main() -> Result<(), lambda_runtime::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let opened = OnceCell::new();
        if std::env::var("TLS_FLOOR_CONNECT").as_deref() == Ok("init") {
            opened.set(Connections::open().await?).ok();
        }
        let opened = &opened;
        lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
            opened.get_or_try_init(Connections::open).await?;
            Ok::<_, lambda_runtime::Error>(json!({ "statusCode": 200, "body": "{}" }))
        }))
        .await
    })
}
