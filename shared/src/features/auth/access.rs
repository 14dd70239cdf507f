//! Access tokens: HS256 JWTs with `sub`, `iat`, `exp`, `jti`, `iss`, minted by auth-refresh and
//! verified by every function that takes `Authorization: Bearer`.
//!
//! Verification pins the algorithm (no `alg` confusion), the issuer, and requires every claim;
//! the clock-skew leeway is small and explicit (`LEEWAY_SECS`).

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::UserId;
use crate::clock::now_secs;
use crate::config::{EnvReader, Secret};

/// Seconds of clock skew tolerated on `exp` and `iat` between the minting and verifying hosts.
pub const LEEWAY_SECS: u64 = 5;
pub const DEFAULT_ISSUER: &str = "rust-serverless-bundle";
/// HS256 keys shorter than the hash output weaken it (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    pub iss: String,
}

impl AccessClaims {
    /// The subject as a user id (tokens are only minted for valid ids).
    pub fn user_id(&self) -> Result<UserId, AccessTokenError> {
        UserId::parse(&self.sub).map_err(|_| AccessTokenError::Invalid)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessTokenError {
    #[error("access token expired")]
    Expired,
    #[error("access token invalid")]
    Invalid,
    #[error("access token could not be signed: {0}")]
    Signing(String),
}

#[derive(Clone)]
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    pub ttl: Duration,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens").field("issuer", &self.issuer).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// Settings read from `JWT_SECRET`, `JWT_ISSUER`, `ACCESS_TOKEN_TTL_SECONDS`.
#[derive(Clone, Debug)]
pub struct AccessTokenSettings {
    pub secret: Secret,
    pub issuer: String,
    pub ttl: Duration,
}

impl AccessTokenSettings {
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let expected = "a random secret of at least 32 bytes";
        let secret = env.secret("JWT_SECRET", expected);
        if !secret.expose().is_empty() && secret.expose().len() < MIN_SECRET_BYTES {
            env.reject("JWT_SECRET", expected, "too short");
        }
        Self {
            secret,
            issuer: env.optional("JWT_ISSUER").unwrap_or_else(|| DEFAULT_ISSUER.to_owned()),
            ttl: env.seconds("ACCESS_TOKEN_TTL_SECONDS", 900, 60..=86_400),
        }
    }
}

impl AccessTokens {
    pub fn new(settings: &AccessTokenSettings) -> Self {
        let secret = settings.secret.expose().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "jti"]);
        validation.validate_exp = true;
        validation.validate_aud = false;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: settings.issuer.clone(),
            ttl: settings.ttl,
        }
    }

    /// Mints a token for `user`, valid for the configured TTL.
    pub fn mint(&self, user: &UserId) -> Result<String, AccessTokenError> {
        let iat = now_secs();
        let claims = AccessClaims {
            sub: user.as_str().to_owned(),
            iat,
            exp: iat + self.ttl.as_secs(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            iss: self.issuer.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AccessTokenError::Signing(e.to_string()))
    }

    /// Verifies signature, algorithm, issuer and expiry; returns the claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, AccessTokenError> {
        // Tokens far larger than anything we mint are refused before any parsing.
        if token.len() > 2048 {
            return Err(AccessTokenError::Invalid);
        }
        let data =
            jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => AccessTokenError::Expired,
                    _ => AccessTokenError::Invalid,
                }
            })?;
        // An `iat` in the future (beyond leeway) means a clock or a forgery problem.
        if data.claims.iat > now_secs() + LEEWAY_SECS {
            return Err(AccessTokenError::Invalid);
        }
        data.claims.user_id()?;
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str, ttl: u64) -> AccessTokens {
        AccessTokens::new(&AccessTokenSettings {
            secret: Secret::new(secret),
            issuer: DEFAULT_ISSUER.into(),
            ttl: Duration::from_secs(ttl),
        })
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn minted_tokens_verify_and_carry_the_claims() {
        let t = tokens(SECRET, 900);
        let jwt = t.mint(&UserId::parse("user-1").unwrap()).unwrap();
        let claims = t.verify(&jwt).unwrap();
        assert_eq!(claims.sub, "user-1");
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.iss, DEFAULT_ISSUER);
        assert_eq!(claims.jti.len(), 32);
    }

    #[test]
    fn wrong_key_tampering_and_other_algorithms_are_refused() {
        let t = tokens(SECRET, 900);
        let jwt = t.mint(&UserId::parse("u").unwrap()).unwrap();
        let other = tokens("another-secret-another-secret-xx", 900);
        assert_eq!(other.verify(&jwt), Err(AccessTokenError::Invalid));

        let mut parts: Vec<String> = jwt.split('.').map(String::from).collect();
        parts[1] = parts[1].replacen('e', "f", 1);
        assert_eq!(t.verify(&parts.join(".")), Err(AccessTokenError::Invalid));

        // alg=none with the same claims
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let none = format!("{header}.{}.", jwt.split('.').nth(1).unwrap());
        assert_eq!(t.verify(&none), Err(AccessTokenError::Invalid));
        assert_eq!(t.verify("garbage"), Err(AccessTokenError::Invalid));
    }

    #[test]
    fn expired_tokens_are_refused_beyond_the_leeway() {
        let t = tokens(SECRET, 900);
        let now = now_secs();
        let claims = AccessClaims {
            sub: "u".into(),
            iat: now - 1000,
            exp: now - LEEWAY_SECS - 1,
            jti: "j".into(),
            iss: DEFAULT_ISSUER.into(),
        };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &t.encoding).unwrap();
        assert_eq!(t.verify(&jwt), Err(AccessTokenError::Expired));

        let within = AccessClaims { exp: now - 1, ..claims };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &within, &t.encoding).unwrap();
        assert!(t.verify(&jwt).is_ok(), "one second late is inside the leeway");
    }

    #[test]
    fn short_secrets_are_a_config_error() {
        let mut env = EnvReader::from_fn(|k| (k == "JWT_SECRET").then(|| "short".to_owned()));
        AccessTokenSettings::from_env(&mut env);
        let err = env.finish(()).unwrap_err();
        assert_eq!(err.problems[0].variable, "JWT_SECRET");
        assert!(!err.to_string().contains("short\n"), "the value itself is never printed");
    }
}
