//! auth-refresh configuration, from the environment. One error names every bad variable.

use shared::auth::RefreshSettings;
use shared::auth::access::SigningSettings;
use shared::auth::identities::Identities;
use shared::auth::oidc::OidcSettings;
use shared::clients::RedisSettings;
use shared::config::{ConfigError, EnvReader, FromEnv};
use shared::http::Cors;
use shared::outbound::OutboundSettings;

#[derive(Clone, Debug)]
pub struct Settings {
    pub redis: RedisSettings,
    pub cors: Cors,
    /// `JWT_SIGNING_KEY`, `JWT_SIGNING_KEY_ID`, `JWT_PUBLIC_KEYS`, `JWT_ISSUER`, `JWT_AUDIENCE`,
    /// `ACCESS_TOKEN_TTL_SECONDS`.
    pub access: SigningSettings,
    /// `REFRESH_TOKEN_SECRET`, `REFRESH_TOKEN_TTL_SECONDS`, `REFRESH_SESSION_MAX_SECONDS`,
    /// `REFRESH_REUSE_GRACE_MS`, `REFRESH_MAX_SESSIONS_PER_USER`, `REFRESH_RATE_BURST`,
    /// `REFRESH_RATE_PER_MINUTE`.
    pub refresh: RefreshSettings,
    /// `OIDC_ISSUER`, `OIDC_CLIENT_ID`, `OIDC_ALGORITHMS`, `OIDC_LEEWAY_SECONDS`,
    /// `OIDC_JWKS_MIN_REFETCH_SECONDS`: whose ID tokens sign users in.
    pub oidc: OidcSettings,
    /// `OUTBOUND_TIMEOUT_MS`, `OUTBOUND_CONNECT_TIMEOUT_MS`, `OUTBOUND_MAX_ATTEMPTS`: fetching the
    /// issuer's discovery document and keys.
    pub outbound: OutboundSettings,
    /// `USERS_TABLE`: where the first sign-in of an identity creates its user.
    pub users_table: String,
}

impl FromEnv for Settings {
    fn from_env(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let settings = Settings {
            redis: RedisSettings::from_env(&mut env),
            cors: Cors::from_env(&mut env, "POST,OPTIONS"),
            access: SigningSettings::from_env(&mut env),
            refresh: RefreshSettings::from_env(&mut env),
            oidc: OidcSettings::from_env(&mut env),
            outbound: OutboundSettings::from_env(&mut env),
            users_table: Identities::table_from_env(&mut env),
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
            "JWT_PUBLIC_KEYS" => Some("k1:short".into()),
            "REFRESH_TOKEN_SECRET" => Some("short".into()),
            _ => None,
        }))
        .unwrap_err();
        let names: Vec<_> = err.problems.iter().map(|p| p.variable.as_str()).collect();
        assert_eq!(
            names,
            [
                "REDIS_URL",
                "JWT_PUBLIC_KEYS",
                "JWT_SIGNING_KEY",
                "JWT_SIGNING_KEY_ID",
                "REFRESH_TOKEN_SECRET",
                "REFRESH_REUSE_GRACE_MS",
                "OIDC_ISSUER",
                "OIDC_CLIENT_ID",
                "USERS_TABLE"
            ]
        );
    }
}
