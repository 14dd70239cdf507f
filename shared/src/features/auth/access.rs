//! Access tokens: EdDSA (Ed25519) JWTs with `sub`, `iat`, `nbf`, `exp`, `jti`, `iss`, `aud` and a
//! `kid` header, signed by auth-refresh only and verified by every function that takes
//! `Authorization: Bearer`.
//!
//! Why asymmetric: with one shared HS256 key, every function that could check a token could also
//! mint one for any user. Verifiers here hold public keys only ([`AccessTokens`] has no way to
//! sign), so a compromised posts-write or upload-presign can read tokens but not make them.
//!
//! Verification pins the algorithm (an HS256 token, the old format, is refused outright, as is
//! `alg` confusion with the public key as an HMAC secret), selects the key by `kid` among at most
//! a few configured ones (two during a key roll), requires issuer and audience, refuses a `crit`
//! header (RFC 7515 §4.1.11: we understand no extension), an `nbf` or `iat` in the future and a
//! token whose lifetime (`exp − iat`) is longer than the configured TTL plus leeway: a leaked
//! signing key or a bug that mints ten-year tokens does not get ten years.

use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::UserId;
use crate::clock::now_secs;
use crate::config::{EnvReader, Secret};

/// Seconds of clock skew tolerated on `exp`, `nbf` and `iat` between the minting and verifying hosts.
pub const LEEWAY_SECS: u64 = 5;
/// The shortest `ACCESS_TOKEN_TTL_SECONDS`. Every signed-in client refreshes once per lifetime,
/// against a per-user refresh budget (REFRESH_RATE_PER_MINUTE, 10 in template.yaml) that all its
/// tabs and devices share, and the verifiers accept [`LEEWAY_SECS`] past `exp`: below a minute,
/// a few tabs would exhaust the budget and the leeway would be a large share of the lifetime.
pub const MIN_TTL_SECS: u64 = 60;
/// The `iss` minted and required when `JWT_ISSUER` is unset.
pub const DEFAULT_ISSUER: &str = "rust-serverless-bundle";
/// The `aud` minted and required when `JWT_AUDIENCE` is unset.
pub const DEFAULT_AUDIENCE: &str = "rust-serverless-bundle-api";
/// Public keys a verifier holds at once: the current one and the next (or previous) during a roll.
pub const MAX_PUBLIC_KEYS: usize = 4;
/// Tokens far larger than anything we mint are refused before any parsing.
const MAX_TOKEN_CHARS: usize = 2048;

/// The claims of an access token: what [`AccessTokenSigner::mint`] writes and
/// [`AccessTokens::verify`] returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user the token acts for: a [`UserId`], checked on every verify.
    pub sub: String,
    /// When the token was minted, in seconds since the Unix epoch.
    pub iat: u64,
    /// Not valid before this, in seconds since the Unix epoch: minted equal to `iat`, optional when
    /// verifying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// When the token stops being accepted, in seconds since the Unix epoch (`iat` plus the
    /// access-token TTL).
    pub exp: u64,
    /// A random id per token (UUID v4, 32 hex digits): no two tokens are alike, even for one user
    /// in one second.
    pub jti: String,
    /// Who minted the token: must equal the configured issuer (`JWT_ISSUER`).
    pub iss: String,
    /// Who the token is for: must equal the configured audience (`JWT_AUDIENCE`).
    pub aud: String,
}

impl AccessClaims {
    /// The subject as a user id (tokens are only minted for valid ids).
    pub fn user_id(&self) -> Result<UserId, AccessTokenError> {
        UserId::parse(&self.sub).map_err(|_| AccessTokenError::Invalid)
    }
}

/// Why an access token was refused, or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessTokenError {
    /// Past its `exp` (beyond [`LEEWAY_SECS`]): the client should refresh and try again.
    #[error("access token expired")]
    Expired,
    /// Anything else: malformed, wrong algorithm, unknown `kid`, bad signature, issuer, audience,
    /// times or subject.
    #[error("access token invalid")]
    Invalid,
    /// Minting or key generation failed (an unusable signing key, an invalid key id); the text says
    /// which.
    #[error("access token could not be signed: {0}")]
    Signing(String),
}

/// A key id: what `kid` names. Short and header-safe.
fn valid_kid(kid: &str) -> bool {
    crate::id::is_valid_id(kid)
}

// ---- keys -------------------------------------------------------------------------------------

/// An Ed25519 public key under its `kid`.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The key id that tokens signed with this key carry in their `kid` header.
    pub kid: String,
    /// The raw 32-byte Ed25519 public key.
    pub key: [u8; 32],
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({}:{})", self.kid, URL_SAFE_NO_PAD.encode(self.key))
    }
}

impl PublicKey {
    /// `kid:base64url(32-byte key)`, the form of one `JWT_PUBLIC_KEYS` entry.
    pub fn parse(entry: &str) -> Option<Self> {
        let (kid, key) = entry.split_once(':')?;
        let key: [u8; 32] = URL_SAFE_NO_PAD.decode(key).ok()?.try_into().ok()?;
        valid_kid(kid).then(|| Self { kid: kid.to_owned(), key })
    }

    /// The `JWT_PUBLIC_KEYS` entry for this key: what [`PublicKey::parse`] reads back.
    pub fn to_entry(&self) -> String {
        format!("{}:{}", self.kid, URL_SAFE_NO_PAD.encode(self.key))
    }
}

/// A fresh Ed25519 key pair: (`JWT_SIGNING_KEY` value, `JWT_PUBLIC_KEYS` entry). `ops keygen`.
pub fn generate_key_pair(kid: &str) -> Result<(Secret, PublicKey), AccessTokenError> {
    if !valid_kid(kid) {
        return Err(AccessTokenError::Signing("a key id is 1 to 64 of A-Z a-z 0-9 - _".into()));
    }
    let pair = Ed25519KeyPair::generate().map_err(|_| AccessTokenError::Signing("key generation failed".into()))?;
    let pkcs8 = pair.to_pkcs8().map_err(|_| AccessTokenError::Signing("key encoding failed".into()))?;
    let key: [u8; 32] = pair
        .public_key()
        .as_ref()
        .try_into()
        .map_err(|_| AccessTokenError::Signing("unexpected public key length".into()))?;
    Ok((Secret::new(URL_SAFE_NO_PAD.encode(pkcs8.as_ref())), PublicKey { kid: kid.to_owned(), key }))
}

/// The `JWT_PUBLIC_KEYS` entry of a `JWT_SIGNING_KEY` value, if it is an Ed25519 key: what a
/// key's maker (the signing-key custom resource) tells verifiers of a key it made before.
pub fn public_key_of(kid: &str, signing_key: &str) -> Option<PublicKey> {
    Some(PublicKey { kid: kid.to_owned(), key: public_half(signing_key)? })
}

/// The public half of a `JWT_SIGNING_KEY` value (base64url PKCS#8), if it is an Ed25519 key.
fn public_half(signing_key: &str) -> Option<[u8; 32]> {
    let der = URL_SAFE_NO_PAD.decode(signing_key).ok()?;
    let pair = Ed25519KeyPair::from_pkcs8(&der).ok()?;
    pair.public_key().as_ref().try_into().ok()
}

// ---- settings ---------------------------------------------------------------------------------

/// What every verifier reads: `JWT_PUBLIC_KEYS`, `JWT_ISSUER`, `JWT_AUDIENCE`,
/// `ACCESS_TOKEN_TTL_SECONDS`.
#[derive(Clone, Debug)]
pub struct AccessTokenSettings {
    /// The keys a token may be signed with, one per `kid` (at most [`MAX_PUBLIC_KEYS`]).
    pub public_keys: Vec<PublicKey>,
    /// The `iss` every token must carry (`JWT_ISSUER`, default [`DEFAULT_ISSUER`]).
    pub issuer: String,
    /// The `aud` every token must carry (`JWT_AUDIENCE`, default [`DEFAULT_AUDIENCE`]).
    pub audience: String,
    /// Lifetime of a minted token, and the longest `exp − iat` a verifier accepts (default 15 min).
    pub ttl: Duration,
}

impl AccessTokenSettings {
    /// Reads these variables; `env` records every one that is missing or invalid.
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let expected = "1 to 4 comma-separated kid:base64url-ed25519-public-key entries (ops keygen)";
        let entries = env.list("JWT_PUBLIC_KEYS");
        if entries.is_empty() {
            env.required("JWT_PUBLIC_KEYS", expected);
        }
        let mut public_keys: Vec<PublicKey> = Vec::new();
        for entry in &entries {
            match PublicKey::parse(entry) {
                Some(k) if !public_keys.iter().any(|p| p.kid == k.kid) => public_keys.push(k),
                Some(_) => env.reject("JWT_PUBLIC_KEYS", expected, "a kid is listed twice"),
                None => env.reject("JWT_PUBLIC_KEYS", expected, "not a kid:key entry"),
            }
        }
        if public_keys.len() > MAX_PUBLIC_KEYS {
            env.reject("JWT_PUBLIC_KEYS", expected, "too many keys");
        }
        Self {
            public_keys,
            issuer: env.optional("JWT_ISSUER").unwrap_or_else(|| DEFAULT_ISSUER.to_owned()),
            audience: env.optional("JWT_AUDIENCE").unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned()),
            ttl: env.seconds("ACCESS_TOKEN_TTL_SECONDS", 900, MIN_TTL_SECS..=86_400),
        }
    }
}

/// What the signer (auth-refresh, `ops`) reads besides: `JWT_SIGNING_KEY` (base64url PKCS#8 of an
/// Ed25519 key) and `JWT_SIGNING_KEY_ID`, whose public key must be among `JWT_PUBLIC_KEYS` (or
/// the tokens it mints would be refused everywhere, its own logout-all included).
#[derive(Clone, Debug)]
pub struct SigningSettings {
    /// The private key: base64url PKCS#8 of an Ed25519 key (`JWT_SIGNING_KEY`).
    pub key: Secret,
    /// The `kid` header of minted tokens (`JWT_SIGNING_KEY_ID`).
    pub kid: String,
    /// The verifier's settings: the signer mints with their issuer, audience and TTL, and its key
    /// must be among their public keys.
    pub verify: AccessTokenSettings,
}

impl SigningSettings {
    /// Reads the verifier's variables and these; `env` also records a signing key whose public half
    /// is not listed under its kid.
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let verify = AccessTokenSettings::from_env(env);
        let key = env.secret("JWT_SIGNING_KEY", "base64url PKCS#8 of an Ed25519 private key (ops keygen)");
        let kid = env.required("JWT_SIGNING_KEY_ID", "the kid of JWT_SIGNING_KEY, listed in JWT_PUBLIC_KEYS");
        if !key.expose().is_empty() {
            match public_half(key.expose()) {
                None => env.reject("JWT_SIGNING_KEY", "base64url PKCS#8 of an Ed25519 private key", "not one"),
                Some(public) if !kid.is_empty() => {
                    let listed = verify.public_keys.iter().find(|p| p.kid == kid);
                    if listed.is_none_or(|p| p.key != public) {
                        env.reject(
                            "JWT_SIGNING_KEY_ID",
                            "a kid listed in JWT_PUBLIC_KEYS with JWT_SIGNING_KEY's public key",
                            "not listed with this key",
                        );
                    }
                }
                Some(_) => {}
            }
        }
        Self { key, kid, verify }
    }
}

// ---- verifying --------------------------------------------------------------------------------

/// The verifier: public keys only.
#[derive(Clone)]
pub struct AccessTokens {
    keys: Vec<(String, DecodingKey)>,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("AccessTokens").field("kids", &kids).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// The protected header, read before any key is chosen: `alg`, `kid`, and whether `crit` is there.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

impl AccessTokens {
    /// A verifier for `settings`: EdDSA only, issuer and audience required, [`LEEWAY_SECS`] of
    /// clock skew.
    pub fn new(settings: &AccessTokenSettings) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "jti", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        let keys = settings.public_keys.iter().map(|p| (p.kid.clone(), DecodingKey::from_ed_der(&p.key))).collect();
        Self { keys, validation, ttl: settings.ttl }
    }

    /// The longest lifetime (`exp − iat`) a token may have: `ACCESS_TOKEN_TTL_SECONDS`.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Verifies header, signature, issuer, audience and times; returns the claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, AccessTokenError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(AccessTokenError::Invalid);
        }
        let header = token
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|h| serde_json::from_slice::<RawHeader>(&h).ok())
            .ok_or(AccessTokenError::Invalid)?;
        if header.alg != "EdDSA" || header.crit.is_some() {
            return Err(AccessTokenError::Invalid);
        }
        let kid = header.kid.ok_or(AccessTokenError::Invalid)?;
        let (_, key) = self.keys.iter().find(|(k, _)| *k == kid).ok_or(AccessTokenError::Invalid)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AccessTokenError::Expired,
            _ => AccessTokenError::Invalid,
        })?;
        let claims = data.claims;
        let now = now_secs();
        // An `iat` in the future (beyond leeway) means a clock or a forgery problem; a lifetime
        // longer than we ever mint means a key that is minting what it should not.
        if claims.iat > now + LEEWAY_SECS || claims.exp.saturating_sub(claims.iat) > self.ttl.as_secs() + LEEWAY_SECS {
            return Err(AccessTokenError::Invalid);
        }
        claims.user_id()?;
        Ok(claims)
    }
}

// ---- signing ----------------------------------------------------------------------------------

/// The signer: auth-refresh's private key. Nothing else holds one.
#[derive(Clone)]
pub struct AccessTokenSigner {
    encoding: EncodingKey,
    kid: String,
    issuer: String,
    audience: String,
    ttl: Duration,
    verifier: AccessTokens,
}

impl std::fmt::Debug for AccessTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenSigner").field("kid", &self.kid).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl AccessTokenSigner {
    /// A signer for `settings`, which [`SigningSettings::from_env`] has checked: a key that does
    /// not decode makes [`mint`](Self::mint) fail, not this.
    pub fn new(settings: &SigningSettings) -> Self {
        let der = URL_SAFE_NO_PAD.decode(settings.key.expose()).unwrap_or_default();
        Self {
            encoding: EncodingKey::from_ed_der(&der),
            kid: settings.kid.clone(),
            issuer: settings.verify.issuer.clone(),
            audience: settings.verify.audience.clone(),
            ttl: settings.verify.ttl,
            verifier: AccessTokens::new(&settings.verify),
        }
    }

    /// Lifetime of the tokens it mints: the `expires_in` a client is told.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The verifier of the same settings (auth-refresh's logout-all).
    pub fn verifier(&self) -> &AccessTokens {
        &self.verifier
    }

    /// Mints a token for `user`, valid for the configured TTL.
    pub fn mint(&self, user: &UserId) -> Result<String, AccessTokenError> {
        let iat = now_secs();
        let claims = AccessClaims {
            sub: user.as_str().to_owned(),
            iat,
            nbf: Some(iat),
            exp: iat + self.ttl.as_secs(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| AccessTokenError::Signing(e.to_string()))
    }
}

/// Replaces every `{{access-token:<userId>}}` in `text` with a fresh token for that user: sample
/// events carry placeholders, since a real token expires within the access-token TTL (and one
/// that did not would be refused for its lifetime). `ops render-events` and the event tests use it.
pub fn fill_access_token_placeholders(text: &str, signer: &AccessTokenSigner) -> Result<String, AccessTokenError> {
    const OPEN: &str = "{{access-token:";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let end = after.find("}}").ok_or(AccessTokenError::Invalid)?;
        let user = UserId::parse(&after[..end]).map_err(|_| AccessTokenError::Invalid)?;
        out.push_str(&signer.mint(&user)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_tokens_of_their_user() {
        let k = keys("k1", 900);
        let text = r#"{"a": "Bearer {{access-token:user-1}}", "b": "{{access-token:user-2}}", "c": "plain"}"#;
        let filled = fill_access_token_placeholders(text, &k.signer).unwrap();
        let v: serde_json::Value = serde_json::from_str(&filled).unwrap();
        let a = v["a"].as_str().unwrap().strip_prefix("Bearer ").unwrap();
        assert_eq!(k.signer.verifier().verify(a).unwrap().sub, "user-1");
        assert_eq!(k.signer.verifier().verify(v["b"].as_str().unwrap()).unwrap().sub, "user-2");
        assert_eq!(v["c"], "plain");
        assert!(fill_access_token_placeholders("{{access-token:{bad}}}", &k.signer).is_err());
    }

    #[test]
    fn the_ttl_is_at_least_the_minimum() {
        let (_, public) = generate_key_pair("k1").unwrap();
        let keys = public.to_entry();
        let read = |ttl: String| {
            let mut env = EnvReader::from_fn(|k| match k {
                "JWT_PUBLIC_KEYS" => Some(keys.clone()),
                "ACCESS_TOKEN_TTL_SECONDS" => Some(ttl.clone()),
                _ => None,
            });
            let settings = AccessTokenSettings::from_env(&mut env);
            env.finish(settings)
        };
        let shortest = read(MIN_TTL_SECS.to_string()).expect("the minimum is allowed");
        assert_eq!(shortest.ttl, Duration::from_secs(MIN_TTL_SECS));
        let err = read((MIN_TTL_SECS - 1).to_string()).expect_err("below the minimum");
        let names: Vec<_> = err.problems.iter().map(|p| p.variable.as_str()).collect();
        assert_eq!(names, ["ACCESS_TOKEN_TTL_SECONDS"]);
    }

    struct Keys {
        signer: AccessTokenSigner,
        settings: SigningSettings,
    }

    fn keys(kid: &str, ttl: u64) -> Keys {
        let (private, public) = generate_key_pair(kid).unwrap();
        let settings = SigningSettings {
            key: private,
            kid: kid.into(),
            verify: AccessTokenSettings {
                public_keys: vec![public],
                issuer: DEFAULT_ISSUER.into(),
                audience: DEFAULT_AUDIENCE.into(),
                ttl: Duration::from_secs(ttl),
            },
        };
        Keys { signer: AccessTokenSigner::new(&settings), settings }
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// Signs arbitrary header and claims with `k`'s private key, as a buggy or hostile minter would.
    fn sign_raw(k: &Keys, header: serde_json::Value, claims: serde_json::Value) -> String {
        let der = URL_SAFE_NO_PAD.decode(k.settings.key.expose()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(&der).unwrap();
        let input = format!("{}.{}", b64(&header), b64(&claims));
        let sig = pair.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn claims(now: u64, ttl: u64) -> serde_json::Value {
        serde_json::json!({"sub": "u", "iat": now, "exp": now + ttl, "jti": "j", "iss": DEFAULT_ISSUER, "aud": DEFAULT_AUDIENCE})
    }

    #[test]
    fn minted_tokens_verify_and_carry_the_claims() {
        let k = keys("k1", 900);
        let jwt = k.signer.mint(&UserId::parse("user-1").unwrap()).unwrap();
        let claims = k.signer.verifier().verify(&jwt).unwrap();
        assert_eq!(claims.sub, "user-1");
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!((claims.iss.as_str(), claims.aud.as_str()), (DEFAULT_ISSUER, DEFAULT_AUDIENCE));
        assert_eq!(claims.jti.len(), 32);
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::EdDSA, Some("k1")));
    }

    #[test]
    fn two_keys_at_once_during_a_roll() {
        let (old, new) = (keys("old", 900), keys("new", 900));
        let mut both = new.settings.verify.clone();
        both.public_keys.extend(old.settings.verify.public_keys.clone());
        let verifier = AccessTokens::new(&both);
        let user = UserId::parse("u").unwrap();
        assert!(verifier.verify(&old.signer.mint(&user).unwrap()).is_ok());
        assert!(verifier.verify(&new.signer.mint(&user).unwrap()).is_ok());
        // Only the new key: the old one's tokens are refused.
        assert_eq!(new.signer.verifier().verify(&old.signer.mint(&user).unwrap()), Err(AccessTokenError::Invalid));
    }

    #[test]
    fn unknown_kid_other_key_other_audience_and_hs256_are_refused() {
        let k = keys("k1", 900);
        let v = k.signer.verifier();
        let now = now_secs();
        let hdr = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"});
        assert!(v.verify(&sign_raw(&k, hdr.clone(), claims(now, 900))).is_ok(), "the control case");

        let unknown = sign_raw(&k, serde_json::json!({"alg": "EdDSA", "kid": "k9"}), claims(now, 900));
        assert_eq!(v.verify(&unknown), Err(AccessTokenError::Invalid), "unknown kid");
        let no_kid = sign_raw(&k, serde_json::json!({"alg": "EdDSA"}), claims(now, 900));
        assert_eq!(v.verify(&no_kid), Err(AccessTokenError::Invalid), "no kid");
        // Another key pair claiming our kid.
        let impostor = keys("k1", 900);
        assert_eq!(
            v.verify(&impostor.signer.mint(&UserId::parse("u").unwrap()).unwrap()),
            Err(AccessTokenError::Invalid)
        );
        let mut other_aud = claims(now, 900);
        other_aud["aud"] = "another-api".into();
        assert_eq!(v.verify(&sign_raw(&k, hdr.clone(), other_aud)), Err(AccessTokenError::Invalid));
        let mut no_aud = claims(now, 900);
        no_aud.as_object_mut().unwrap().remove("aud");
        assert_eq!(v.verify(&sign_raw(&k, hdr.clone(), no_aud)), Err(AccessTokenError::Invalid));

        // The old format: HS256 with a shared secret, and HS256 keyed with the public key itself.
        let old = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(now, 900),
            &EncodingKey::from_secret(b"dev-only-jwt-secret-not-for-production-0001"),
        )
        .unwrap();
        assert_eq!(v.verify(&old), Err(AccessTokenError::Invalid));
        let mut confused = Header::new(Algorithm::HS256);
        confused.kid = Some("k1".into());
        let public = k.settings.verify.public_keys[0].key;
        let confused = jsonwebtoken::encode(&confused, &claims(now, 900), &EncodingKey::from_secret(&public)).unwrap();
        assert_eq!(v.verify(&confused), Err(AccessTokenError::Invalid));
        assert_eq!(v.verify("garbage"), Err(AccessTokenError::Invalid));
    }

    #[test]
    fn future_nbf_long_lifetimes_future_iat_and_crit_are_refused() {
        let k = keys("k1", 900);
        let v = k.signer.verifier();
        let now = now_secs();
        let hdr = serde_json::json!({"alg": "EdDSA", "kid": "k1"});

        let mut future_nbf = claims(now, 900);
        future_nbf["nbf"] = (now + 600).into();
        assert_eq!(v.verify(&sign_raw(&k, hdr.clone(), future_nbf)), Err(AccessTokenError::Invalid));

        let ten_years = claims(now, 10 * 365 * 86_400);
        assert_eq!(v.verify(&sign_raw(&k, hdr.clone(), ten_years)), Err(AccessTokenError::Invalid));
        let just_inside = claims(now, 900 + LEEWAY_SECS);
        assert!(v.verify(&sign_raw(&k, hdr.clone(), just_inside)).is_ok());

        let mut future_iat = claims(now + 600, 900);
        future_iat["exp"] = (now + 900).into();
        assert_eq!(v.verify(&sign_raw(&k, hdr.clone(), future_iat)), Err(AccessTokenError::Invalid));

        let crit = serde_json::json!({"alg": "EdDSA", "kid": "k1", "crit": ["exp"]});
        assert_eq!(v.verify(&sign_raw(&k, crit, claims(now, 900))), Err(AccessTokenError::Invalid));
    }

    #[test]
    fn expired_tokens_are_refused_beyond_the_leeway() {
        let k = keys("k1", 900);
        let v = k.signer.verifier();
        let now = now_secs();
        let hdr = serde_json::json!({"alg": "EdDSA", "kid": "k1"});
        let mut late = claims(now - 900 - LEEWAY_SECS - 1, 900);
        late["exp"] = (now - LEEWAY_SECS - 1).into();
        assert_eq!(v.verify(&sign_raw(&k, hdr.clone(), late)), Err(AccessTokenError::Expired));
        let within = claims(now - 901, 900);
        assert!(v.verify(&sign_raw(&k, hdr, within)).is_ok(), "one second late is inside the leeway");
    }

    #[test]
    fn settings_check_the_keys_and_their_pairing() {
        let (private, public) = generate_key_pair("k1").unwrap();
        let (_, other) = generate_key_pair("k2").unwrap();
        let vars = |pairs: Vec<(&'static str, String)>| {
            EnvReader::from_fn(move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
        };
        let mut env = vars(vec![
            ("JWT_PUBLIC_KEYS", format!("{},{}", public.to_entry(), other.to_entry())),
            ("JWT_SIGNING_KEY", private.expose().to_owned()),
            ("JWT_SIGNING_KEY_ID", "k1".into()),
        ]);
        let s = SigningSettings::from_env(&mut env);
        assert!(env.finish(()).is_ok());
        assert_eq!(s.verify.public_keys.len(), 2);

        let mut env = vars(vec![
            ("JWT_PUBLIC_KEYS", other.to_entry()),
            ("JWT_SIGNING_KEY", private.expose().to_owned()),
            ("JWT_SIGNING_KEY_ID", "k2".into()),
        ]);
        SigningSettings::from_env(&mut env);
        assert_eq!(env.finish(()).unwrap_err().problems[0].variable, "JWT_SIGNING_KEY_ID", "k2 is not this key");

        let mut env = vars(vec![("JWT_PUBLIC_KEYS", "k1:short".into()), ("JWT_SIGNING_KEY", "garbage".into())]);
        SigningSettings::from_env(&mut env);
        let err = env.finish(()).unwrap_err();
        let names: Vec<_> = err.problems.iter().map(|p| p.variable.as_str()).collect();
        assert_eq!(names, ["JWT_PUBLIC_KEYS", "JWT_SIGNING_KEY_ID", "JWT_SIGNING_KEY"]);
        assert!(!err.to_string().contains("garbage"), "values are never printed");
    }
}
