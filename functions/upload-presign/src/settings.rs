//! upload-presign configuration, from the environment.

use shared::auth::access::AccessTokenSettings;
use shared::config::{ConfigError, EnvReader, FromEnv};
use shared::http::Cors;
use shared::uploads::AvatarSettings;
use shared::uploads::UploadSettings;

#[derive(Clone, Debug)]
pub struct Settings {
    pub uploads: UploadSettings,
    pub avatars: AvatarSettings,
    pub cors: Cors,
    pub access_tokens: AccessTokenSettings,
}

impl FromEnv for Settings {
    fn from_env(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let settings = Settings {
            uploads: UploadSettings::from_env(&mut env),
            avatars: AvatarSettings::from_env(&mut env),
            cors: Cors::from_env(&mut env, shared::http::API_METHODS),
            access_tokens: AccessTokenSettings::from_env(&mut env),
        };
        env.finish(settings)
    }
}
