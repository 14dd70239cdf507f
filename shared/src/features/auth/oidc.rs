//! Sign-in by OIDC ID token: who a browser's user is, as the configured issuer (Cognito, Auth0,
//! Google, Entra, ...) says, checked here before auth-refresh starts a session.
//!
//! Why it is built this way:
//! - The issuer's keys come from its discovery document (`{OIDC_ISSUER}/.well-known/openid-configuration`
//!   → `jwks_uri`, OpenID Connect Discovery 1.0 §4), fetched through [`crate::outbound`] (timeouts,
//!   the invocation's deadline) on the first sign-in, not at init: a cold start never waits for a
//!   third party, and an issuer that is down costs the sign-in route only (503), never refresh.
//! - The key set is cached per execution environment. A token whose `kid` is not in it triggers one
//!   refetch (the issuer rolled its keys), at most once per `OIDC_JWKS_MIN_REFETCH_SECONDS`: a flood
//!   of tokens with made-up `kid`s costs the issuer one request per interval, and us O(1) each.
//!   Concurrent invocations (Lambda Managed Instances) share one fetch.
//! - The algorithm list is fixed by configuration (`OIDC_ALGORITHMS`, asymmetric only): `none` and
//!   every HMAC algorithm are refused before any key is looked at, and a key is used only with an
//!   algorithm of its own type (no RSA public key read as an HMAC secret).
//! - `iss` must equal the issuer, `aud` the app's client id (`OIDC_CLIENT_ID`), `exp`, `iat` and
//!   `nbf` are checked with `OIDC_LEEWAY_SECONDS` of clock skew, and `sub` must be present.
//! - Every refusal is one [`IdTokenError::Rejected`]: the reason is for the logs; the caller
//!   answers one 401 for all of them, so the answer is no oracle.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use crate::clock::now_secs;
use crate::config::EnvReader;
use crate::outbound::{Outbound, OutboundError};

/// Tokens larger than this are not ID tokens (a large Entra token with groups is ~5 KiB).
pub const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;
/// The algorithms accepted when `OIDC_ALGORITHMS` is unset: what Cognito, Auth0, Google and Entra
/// sign with (RS256), and the elliptic-curve ones some issuers offer.
pub const DEFAULT_ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
/// Algorithms that may appear in `OIDC_ALGORITHMS`: asymmetric only.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

// ---- settings ---------------------------------------------------------------------------------

/// `OIDC_ISSUER`, `OIDC_CLIENT_ID`, `OIDC_ALGORITHMS`, `OIDC_LEEWAY_SECONDS` (default 30) and
/// `OIDC_JWKS_MIN_REFETCH_SECONDS` (default 60). None of them is a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcSettings {
    /// The issuer identifier, exactly as the tokens' `iss` carries it (no trailing slash added or
    /// removed): `https://cognito-idp.<region>.amazonaws.com/<pool id>`, `https://<tenant>.auth0.com/`.
    pub issuer: String,
    /// The app's client id: the `aud` every accepted token must name.
    pub client_id: String,
    /// Accepted signature algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `iat` and `nbf`.
    pub leeway: Duration,
    /// The shortest time between two key-set fetches caused by unknown `kid`s.
    pub min_refetch: Duration,
}

impl OidcSettings {
    /// Reads the variables; `env` records every one missing or invalid. The issuer must be an
    /// `https://` URL, or `http://` on a loopback address (a development issuer on this machine).
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let issuer = env.required("OIDC_ISSUER", "the OIDC issuer URL, exactly as in the ID tokens' iss");
        if !issuer.is_empty() && !issuer_url_ok(&issuer) {
            env.reject(
                "OIDC_ISSUER",
                "an https:// URL (http:// only on 127.0.0.1 or localhost)",
                "not an https URL without query or fragment",
            );
        }
        let client_id = env.required("OIDC_CLIENT_ID", "the app's OIDC client id (the ID tokens' aud)");
        let mut algorithms = Vec::new();
        let listed = env.list("OIDC_ALGORITHMS");
        for name in &listed {
            match name.parse::<Algorithm>() {
                Ok(alg) if ASYMMETRIC.contains(&alg) => algorithms.push(alg),
                _ => env.reject(
                    "OIDC_ALGORITHMS",
                    "a comma-separated list of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
                    "not an asymmetric JWS algorithm (none and HMAC are never accepted)",
                ),
            }
        }
        if listed.is_empty() {
            algorithms = DEFAULT_ALGORITHMS.to_vec();
        }
        Self {
            issuer,
            client_id,
            algorithms,
            leeway: env.seconds("OIDC_LEEWAY_SECONDS", 30, 0..=300),
            min_refetch: env.seconds("OIDC_JWKS_MIN_REFETCH_SECONDS", 60, 1..=86_400),
        }
    }

    /// Where the discovery document is (OpenID Connect Discovery 1.0 §4.1).
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'))
    }
}

fn issuer_url_ok(issuer: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(issuer) else { return false };
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return false;
    }
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        _ => false,
    }
}

// ---- errors -----------------------------------------------------------------------------------

/// Why an ID token was refused. For the logs only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdRejection {
    /// Not a JWS of three base64url parts, or its header or claims are not JSON.
    Malformed,
    /// `alg` not in the accepted list (`none`, HMAC, or an algorithm not configured).
    Algorithm,
    /// No `kid`, or a `kid` the issuer does not publish, even after a refetch.
    UnknownKey,
    /// The signature does not verify with the issuer's key.
    Signature,
    /// `iss` is not the configured issuer.
    Issuer,
    /// `aud` does not name the client id.
    Audience,
    /// Past `exp` (plus leeway).
    Expired,
    /// `nbf` or `iat` in the future (beyond leeway), or a time claim missing.
    Time,
    /// No `sub`, or an empty one.
    Subject,
}

/// Why a sign-in could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    /// The token is not acceptable; the reason is for the logs (the caller answers one 401).
    #[error("ID token rejected: {0:?}")]
    Rejected(IdRejection),
    /// The issuer's discovery document or key set could not be fetched in time: retry later (503).
    #[error("the issuer's keys are unavailable: {0}")]
    Unavailable(#[source] OutboundError),
    /// The issuer answered something that is not a discovery document or a key set (503: the
    /// issuer's problem, not the caller's).
    #[error("the issuer published an unusable {what}: {reason}")]
    Unusable {
        /// `discovery document` or `key set`.
        what: &'static str,
        /// What was wrong with it.
        reason: String,
    },
}

// ---- the verifier ------------------------------------------------------------------------------

/// Who signed in: the issuer and the subject, which together name one user forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's `iss` (equal to the configured issuer).
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct IdClaims {
    #[serde(default)]
    sub: Option<String>,
    iss: String,
    iat: Option<u64>,
}

/// The cached keys and when they were last fetched.
#[derive(Default)]
struct KeyCache {
    jwks_uri: Option<String>,
    keys: Option<JwkSet>,
    fetched_at: Option<Instant>,
}

/// Verifies ID tokens of one issuer. Built once per execution environment (no I/O); cheap to
/// share across concurrent invocations.
pub struct IdTokenVerifier {
    settings: OidcSettings,
    outbound: Outbound,
    cache: RwLock<KeyCache>,
    /// Held while fetching: concurrent invocations that miss wait for one fetch.
    fetching: Mutex<()>,
}

impl std::fmt::Debug for IdTokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTokenVerifier").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl IdTokenVerifier {
    /// A verifier for `settings` that fetches through `outbound`; nothing is fetched yet.
    pub fn new(settings: OidcSettings, outbound: Outbound) -> Self {
        Self { settings, outbound, cache: RwLock::new(KeyCache::default()), fetching: Mutex::new(()) }
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Verifies `token` and returns who it names. `deadline`: when any fetch of the issuer's keys
    /// must have finished (the invocation's deadline less what the caller needs afterwards).
    pub async fn verify(&self, token: &str, deadline: Instant) -> Result<Identity, IdTokenError> {
        let reject = |r| IdTokenError::Rejected(r);
        if token.len() > MAX_ID_TOKEN_BYTES {
            return Err(reject(IdRejection::Malformed));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| reject(IdRejection::Malformed))?;
        // Before any key or fetch: `none` does not even parse as an Algorithm, HMAC is not listed.
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(reject(IdRejection::Algorithm));
        }
        let kid = header.kid.as_deref().filter(|k| !k.is_empty()).ok_or(reject(IdRejection::UnknownKey))?;
        let jwk = self.key(kid, deadline).await?;
        let key = usable_key(&jwk, header.alg).ok_or(reject(IdRejection::UnknownKey))?;
        let claims = self.check(token, header.alg, &key)?;
        Ok(Identity { issuer: claims.iss, subject: claims.sub.unwrap_or_default() })
    }

    fn check(&self, token: &str, alg: Algorithm, key: &DecodingKey) -> Result<IdClaims, IdTokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let mut validation = Validation::new(alg);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<IdClaims>(token, key, &validation).map_err(|e| {
            IdTokenError::Rejected(match e.kind() {
                ErrorKind::InvalidSignature => IdRejection::Signature,
                ErrorKind::ExpiredSignature => IdRejection::Expired,
                ErrorKind::ImmatureSignature => IdRejection::Time,
                ErrorKind::InvalidIssuer => IdRejection::Issuer,
                ErrorKind::InvalidAudience => IdRejection::Audience,
                ErrorKind::InvalidAlgorithm => IdRejection::Algorithm,
                ErrorKind::MissingRequiredClaim(c) if c == "sub" => IdRejection::Subject,
                ErrorKind::MissingRequiredClaim(c) if c == "exp" => IdRejection::Time,
                ErrorKind::MissingRequiredClaim(c) if c == "iss" => IdRejection::Issuer,
                ErrorKind::MissingRequiredClaim(c) if c == "aud" => IdRejection::Audience,
                _ => IdRejection::Malformed,
            })
        })?;
        let claims = data.claims;
        // OIDC Core §2: iat is required; one in the future is a token from a skewed or lying issuer.
        match claims.iat {
            Some(iat) if iat <= now_secs() + self.settings.leeway.as_secs() => {}
            _ => return Err(IdTokenError::Rejected(IdRejection::Time)),
        }
        if claims.sub.as_deref().is_none_or(str::is_empty) {
            return Err(IdTokenError::Rejected(IdRejection::Subject));
        }
        Ok(claims)
    }

    /// The issuer's key `kid`: from the cache, else after one fetch (at most one per
    /// `min_refetch` once keys are cached).
    async fn key(&self, kid: &str, deadline: Instant) -> Result<Jwk, IdTokenError> {
        if let Some(jwk) = self.cached(kid).await {
            return Ok(jwk);
        }
        let _one_fetch = self.fetching.lock().await;
        // Another invocation may have fetched while this one waited.
        if let Some(jwk) = self.cached(kid).await {
            return Ok(jwk);
        }
        let recently = {
            let cache = self.cache.read().await;
            cache.keys.is_some() && cache.fetched_at.is_some_and(|at| at.elapsed() < self.settings.min_refetch)
        };
        if recently {
            tracing::info!(kid, "ID token with an unknown kid; key set fetched recently, not again");
            return Err(IdTokenError::Rejected(IdRejection::UnknownKey));
        }
        let keys = self.fetch(deadline).await?;
        let found = keys.find(kid).cloned();
        let mut cache = self.cache.write().await;
        cache.keys = Some(keys);
        cache.fetched_at = Some(Instant::now());
        found.ok_or(IdTokenError::Rejected(IdRejection::UnknownKey))
    }

    async fn cached(&self, kid: &str) -> Option<Jwk> {
        self.cache.read().await.keys.as_ref().and_then(|k| k.find(kid)).cloned()
    }

    /// The discovery document (once per execution environment), then the key set.
    async fn fetch(&self, deadline: Instant) -> Result<JwkSet, IdTokenError> {
        // Bound first: a guard in the match scrutinee would live through the arms (and the write).
        let known = self.cache.read().await.jwks_uri.clone();
        let jwks_uri = match known {
            Some(uri) => uri,
            None => {
                let url = self.settings.discovery_url();
                let doc: Discovery = self.get_json(&url, deadline, "discovery document").await?;
                // Discovery §4.3: the document's issuer must be the one it was fetched for.
                if doc.issuer != self.settings.issuer {
                    return Err(IdTokenError::Unusable {
                        what: "discovery document",
                        reason: format!("its issuer is {:?}, not {:?}", doc.issuer, self.settings.issuer),
                    });
                }
                if !(doc.jwks_uri.starts_with("https://") || issuer_url_ok(&doc.jwks_uri)) {
                    return Err(IdTokenError::Unusable {
                        what: "discovery document",
                        reason: "jwks_uri is not an https URL".into(),
                    });
                }
                self.cache.write().await.jwks_uri = Some(doc.jwks_uri.clone());
                doc.jwks_uri
            }
        };
        let keys: JwkSet = self.get_json(&jwks_uri, deadline, "key set").await?;
        tracing::info!(keys = keys.keys.len(), "issuer key set fetched");
        Ok(keys)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        deadline: Instant,
        what: &'static str,
    ) -> Result<T, IdTokenError> {
        let client = self.outbound.client().map_err(IdTokenError::Unavailable)?;
        let response =
            self.outbound.execute(client.get(url), Some(deadline)).await.map_err(IdTokenError::Unavailable)?;
        serde_json::from_slice(&response.body)
            .map_err(|e| IdTokenError::Unusable { what, reason: e.to_string().chars().take(200).collect() })
    }
}

/// The key as a `DecodingKey` for `alg`, when the JWK may sign with it: a signing key (no `use`,
/// or `use: sig`), whose own `alg` (if it names one) is `alg`, of `alg`'s key type.
fn usable_key(jwk: &Jwk, alg: Algorithm) -> Option<DecodingKey> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    if let Some(own) = jwk.common.key_algorithm
        && own.to_string() != format!("{alg:?}")
    {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    (key.family() == alg.family()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> EnvReader<'static> {
        EnvReader::from_fn(move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn settings_refuse_none_hmac_and_plain_http_issuers() {
        let mut e = env(&[("OIDC_ISSUER", "https://issuer.example.com/"), ("OIDC_CLIENT_ID", "app")]);
        let s = OidcSettings::from_env(&mut e);
        assert!(e.finish(()).is_ok());
        assert_eq!(s.algorithms, DEFAULT_ALGORITHMS);
        assert_eq!(s.discovery_url(), "https://issuer.example.com/.well-known/openid-configuration");
        assert_eq!((s.leeway, s.min_refetch), (Duration::from_secs(30), Duration::from_secs(60)));

        let mut e = env(&[("OIDC_ISSUER", "http://127.0.0.1:4444"), ("OIDC_CLIENT_ID", "app")]);
        OidcSettings::from_env(&mut e);
        assert!(e.finish(()).is_ok(), "a loopback development issuer");

        for (issuer, algs) in [
            ("http://issuer.example.com", "RS256"),
            ("https://issuer.example.com/?x=1", "RS256"),
            ("https://issuer.example.com", "HS256"),
            ("https://issuer.example.com", "none"),
            ("https://issuer.example.com", "RS256,HS512"),
        ] {
            let vars: Vec<(String, String)> = vec![
                ("OIDC_ISSUER".into(), issuer.into()),
                ("OIDC_CLIENT_ID".into(), "app".into()),
                ("OIDC_ALGORITHMS".into(), algs.into()),
            ];
            let mut e = EnvReader::from_fn(move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()));
            OidcSettings::from_env(&mut e);
            assert!(e.finish(()).is_err(), "{issuer} {algs}");
        }
        let mut e = env(&[]);
        OidcSettings::from_env(&mut e);
        let names: Vec<_> = e.finish(()).unwrap_err().problems.into_iter().map(|p| p.variable).collect();
        assert_eq!(names, ["OIDC_ISSUER", "OIDC_CLIENT_ID"]);
    }
}
