//! auth-refresh configuration, from the environment. One error names every bad variable.

use shared::auth::RefreshSettings;
use shared::auth::access::AccessTokenSettings;
use shared::clients::RedisSettings;
use shared::config::{ConfigError, EnvReader, FromEnv};
use shared::http::Cors;

#[derive(Clone, Debug)]
pub struct Settings {
    pub redis: RedisSettings,
    pub cors: Cors,
    /// `JWT_SECRET`, `JWT_ISSUER`, `ACCESS_TOKEN_TTL_SECONDS`.
    pub access: AccessTokenSettings,
    /// `REFRESH_TOKEN_TTL_SECONDS`, `REFRESH_REUSE_GRACE_MS`.
    pub refresh: RefreshSettings,
}

impl FromEnv for Settings {
    fn from_env(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let settings = Settings {
            redis: RedisSettings::from_env(&mut env),
            cors: Cors::from_env(&mut env, "POST,OPTIONS"),
            access: AccessTokenSettings::from_env(&mut env),
            refresh: RefreshSettings::from_env(&mut env),
        };
        env.finish(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_error_names_every_missing_or_bad_variable() {
        let err = Settings::from_env(EnvReader::from_fn(|k| match k {
            "REFRESH_REUSE_GRACE_MS" => Some("-1".into()),
            "JWT_SECRET" => Some("short".into()),
            _ => None,
        }))
        .unwrap_err();
        let names: Vec<_> = err.problems.iter().map(|p| p.variable.as_str()).collect();
        assert_eq!(names, ["REDIS_URL", "JWT_SECRET", "REFRESH_REUSE_GRACE_MS"]);
    }
}
