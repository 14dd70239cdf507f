//! posts-read configuration, from the environment.

use shared::cache::CacheSettings;
use shared::clients::RedisSettings;
use shared::config::{ConfigError, EnvReader};
use shared::http::Cors;
use shared::posts::Cursors;

#[derive(Clone, Debug)]
pub struct Settings {
    pub posts_table: String,
    pub redis: RedisSettings,
    pub cache: CacheSettings,
    pub cursors: Cursors,
    pub cors: Cors,
}

impl Settings {
    pub fn from_env(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let settings = Settings {
            posts_table: env.required("POSTS_TABLE", "the DynamoDB posts table name"),
            redis: RedisSettings::from_env(&mut env),
            cache: CacheSettings::from_env(&mut env),
            cursors: Cursors::from_env(&mut env),
            cors: Cors::from_env(&mut env, shared::http::API_METHODS),
        };
        env.finish(settings)
    }
}
