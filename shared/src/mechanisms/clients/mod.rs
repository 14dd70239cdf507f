//! Clients built once per execution environment, in `main`, before the runtime loop, and the
//! typed errors of the stores built on them.

pub mod aws;
pub mod dynamo;
pub mod redis;

pub use self::aws::{AwsClients, load_sdk_config};
pub use self::dynamo::{DynamoError, DynamoErrorKind};
pub use self::redis::{RedisSettings, RedisStore, RedisStoreError, Retry};
