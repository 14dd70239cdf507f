//! `ops id-token`: an ID token signed by the local OIDC issuer of `make dev` and the test stack
//! (testkit's `oidc-issuer`, started by scripts/stack.sh), for signing in through
//! `POST /auth/session` from a terminal, and for the `{{id-token:<sub>}}` placeholders of the
//! sample events. Reads `OIDC_ISSUER` and `OIDC_CLIENT_ID` (auth-refresh's own settings, in
//! `.dev/env`) and `OIDC_DEV_ISSUER_KEY`, the issuer's key file (`{"kid", "pkcs8"}`, ES256).
//! A real issuer's key is never on this machine: this only works against the local one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// How long a token lives: long enough for a `make bench` run over rendered events.
const TTL_SECS: u64 = 3600;

/// The local issuer's signing key and the names its tokens carry.
pub struct DevIssuer {
    issuer: String,
    client_id: String,
    kid: String,
    key: EncodingKey,
}

impl DevIssuer {
    /// From `OIDC_ISSUER`, `OIDC_CLIENT_ID` and the key file named by `OIDC_DEV_ISSUER_KEY`.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set (source .dev/env)"));
        let path = var("OIDC_DEV_ISSUER_KEY")?;
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let file: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        let kid = file["kid"].as_str().ok_or_else(|| format!("{path}: no kid"))?.to_owned();
        let pkcs8 = file["pkcs8"]
            .as_str()
            .and_then(|k| URL_SAFE_NO_PAD.decode(k).ok())
            .ok_or_else(|| format!("{path}: no pkcs8 key"))?;
        Ok(Self {
            issuer: var("OIDC_ISSUER")?,
            client_id: var("OIDC_CLIENT_ID")?,
            kid,
            key: EncodingKey::from_ec_der(&pkcs8),
        })
    }

    /// A fresh ID token for `sub`, for `aud` (default: the configured client id).
    pub fn token(&self, sub: &str, aud: Option<&str>) -> Result<String, String> {
        let now = shared::clock::now_secs();
        let claims = serde_json::json!({
            "iss": self.issuer, "sub": sub, "aud": aud.unwrap_or(&self.client_id),
            "iat": now, "exp": now + TTL_SECS, "auth_time": now,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| format!("signing: {e}"))
    }
}

const OPEN: &str = "{{id-token:";

/// Replaces every `{{id-token:<sub>}}` in `text` with a fresh token of the local issuer; text
/// without one is returned as it is (and needs no issuer).
pub fn fill_id_token_placeholders(
    text: &str,
    issuer: impl Fn() -> Result<DevIssuer, String>,
) -> Result<String, String> {
    if !text.contains(OPEN) {
        return Ok(text.to_owned());
    }
    let issuer = issuer()?;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let end = after.find("}}").ok_or("an {{id-token: placeholder is not closed")?;
        out.push_str(&issuer.token(&after[..end], None)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}
