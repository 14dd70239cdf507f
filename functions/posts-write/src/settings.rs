//! posts-write configuration, from the environment.

use shared::auth::access::AccessTokenSettings;
use shared::cache::CacheSettings;
use shared::clients::RedisSettings;
use shared::config::{ConfigError, EnvReader};
use shared::http::Cors;

#[derive(Clone, Debug)]
pub struct Settings {
    pub posts_table: String,
    pub redis: RedisSettings,
    pub cache: CacheSettings,
    pub cors: Cors,
    pub access_tokens: AccessTokenSettings,
    /// `POSTS_INDEX_WAIT_MS`: how long a write waits for the index to show it (see post_writes).
    pub index_wait: std::time::Duration,
}

impl Settings {
    pub fn from_env(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let settings = Settings {
            posts_table: env.required("POSTS_TABLE", "the DynamoDB posts table name"),
            redis: RedisSettings::from_env(&mut env),
            cache: CacheSettings::from_env(&mut env),
            cors: Cors::from_env(&mut env, shared::http::API_METHODS),
            access_tokens: AccessTokenSettings::from_env(&mut env),
            index_wait: shared::posts::index_wait_from_env(&mut env),
        };
        env.finish(settings)
    }
}
