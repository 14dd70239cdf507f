//! posts-read configuration, from the environment.

use shared::config::{ConfigError, EnvReader, FromEnv};
use shared::http::Cors;
use shared::posts::{Cursors, PostsSettings};

#[derive(Clone, Debug)]
pub struct Settings {
    pub posts: PostsSettings,
    pub cursors: Cursors,
    pub cors: Cors,
}

impl FromEnv for Settings {
    fn from_env(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let settings = Settings {
            posts: PostsSettings::from_env(&mut env),
            cursors: Cursors::from_env(&mut env),
            cors: Cors::from_env(&mut env, shared::http::API_METHODS),
        };
        env.finish(settings)
    }
}
