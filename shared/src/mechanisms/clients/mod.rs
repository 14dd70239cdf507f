//! Clients built once per execution environment, in `main`, before the runtime loop.

pub mod aws;
pub mod redis;

pub use self::aws::{AwsClients, load_sdk_config};
pub use self::redis::{RedisSettings, RedisStore, RedisStoreError, Retry};
