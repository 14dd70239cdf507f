//! posts-write configuration, from the environment.

use shared::auth::access::AccessTokenSettings;
use shared::config::{ConfigError, EnvReader, FromEnv};
use shared::http::Cors;
use shared::posts::PostsSettings;

#[derive(Clone, Debug)]
pub struct Settings {
    pub posts: PostsSettings,
    pub cors: Cors,
    pub access_tokens: AccessTokenSettings,
    /// `POSTS_INDEX_WAIT_MS`: how long a write waits for the index to show it (see `shared::posts::writes`).
    pub index_wait: std::time::Duration,
}

impl FromEnv for Settings {
    fn from_env(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let settings = Settings {
            posts: PostsSettings::from_env(&mut env),
            cors: Cors::from_env(&mut env, shared::http::API_METHODS),
            access_tokens: AccessTokenSettings::from_env(&mut env),
            index_wait: shared::posts::index_wait_from_env(&mut env),
        };
        env.finish(settings)
    }
}
