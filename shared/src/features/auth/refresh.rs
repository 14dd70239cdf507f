//! Refresh tokens: long-lived, single-use, rotated on every refresh, kept in Redis only as hashes.
//!
//! Why it is built this way:
//! - A token is `<userId>.<familyId>.<secret>`: 16 random bytes of family id and 32 of secret,
//!   base64url without padding. The user and family ride in the token so that every key a script
//!   touches can be named before the script runs and carries the user's hash tag `{<userId>}`: on
//!   Redis Cluster one user is one slot, and every script is a single-slot script. Editing the
//!   prefix only changes which key is looked up; the record found must name the same user and
//!   family, and its key is the SHA-256 of the *whole* token, so a forged prefix finds nothing.
//! - Redis holds SHA-256 of the token, never the token: a dump or a `MONITOR` of the cache does not
//!   hand out sessions. The secret has 256 bits of entropy, so a plain (unsalted) hash is enough.
//! - A token is live when its record exists, is `active`, names the user and family of its prefix,
//!   and its family is in the user's sessions index. Revoking is taking the family out of the index
//!   (or deleting the index, for revoke-all), atomically; deleting the family's records follows as
//!   tidy-up, by the names the family's set lists, with TTLs as the backstop. That split is what
//!   lets revoke-all declare all its keys: it cannot know the record names before it runs, and it
//!   does not need to.
//! - Rotation is one Lua script, so two refreshes with one token cannot both win. A token that was
//!   already rotated and comes back is reuse (RFC 9700 §4.14.2): the family is revoked. Within a
//!   short grace window after its rotation it is only refused, because two browser tabs refreshing
//!   at once is not an attack and must not log the user out.
//! - Time inside the scripts is the Redis server's (`TIME`), so Lambda hosts with drifting clocks
//!   agree on expiries and on the grace window.
//!
//! Keys (all under the user's hash tag):
//! ```text
//! auth:{uid}:rt:<sha256hex>   hash   user, family, issuedAt, state (active|rotated), rotatedAt
//! auth:{uid}:fam:<familyId>   zset   token hash -> its expiry (ms); expires with its newest token
//! auth:{uid}:sessions         zset   family id  -> the family's expiry (ms); expires with the newest
//! ```
//! Both sets are sorted by expiry so that every write can drop the members that have expired.
//!
//! [`Sessions`] puts the store and the access tokens together: it is what a login service calls to
//! start a session, what auth-refresh calls to refresh and end one, and what `ops session` uses.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

use super::{AccessTokenError, AccessTokens, UserId};
use crate::clients::{RedisStore, RedisStoreError, Retry};
use crate::config::{EnvReader, Secret};

/// Random bytes in a family id (128 bits: unique per user without coordination).
pub const FAMILY_BYTES: usize = 16;
/// Random bytes in the secret part (256 bits, as the issue asks).
pub const SECRET_BYTES: usize = 32;
/// base64url without padding of `FAMILY_BYTES` and `SECRET_BYTES`.
pub const FAMILY_CHARS: usize = 22;
pub const SECRET_CHARS: usize = 43;
/// The longest well-formed token; anything longer is refused before any work.
pub const MAX_TOKEN_CHARS: usize = 64 + 1 + FAMILY_CHARS + 1 + SECRET_CHARS;

/// Records deleted per `UNLINK` during tidy-up (bounded request size for very long families).
const UNLINK_BATCH: usize = 256;

// ---- settings ---------------------------------------------------------------------------------

/// `REFRESH_TOKEN_TTL_SECONDS` (default 7 days) and `REFRESH_REUSE_GRACE_MS` (default 5 s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshSettings {
    /// Lifetime of each refresh token; a family lives as long as its newest token.
    pub ttl: Duration,
    /// How long after its rotation a token is refused without revoking its family.
    pub reuse_grace: Duration,
}

impl Default for RefreshSettings {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(7 * 24 * 3600), reuse_grace: Duration::from_millis(5000) }
    }
}

impl RefreshSettings {
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let default = Self::default();
        Self {
            ttl: env.seconds("REFRESH_TOKEN_TTL_SECONDS", default.ttl.as_secs(), 60..=31_536_000),
            reuse_grace: env.millis("REFRESH_REUSE_GRACE_MS", default.reuse_grace.as_millis() as u64, 0..=60_000),
        }
    }
}

// ---- errors -----------------------------------------------------------------------------------

/// Why a refresh token was refused. For the logs only: clients get one and the same 401 for all
/// of them, so the answer never tells an attacker which tokens exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No token in the request.
    Missing,
    /// Not of the `<userId>.<familyId>.<secret>` shape.
    Malformed,
    /// Well-formed, but not a live token: never issued, expired, or its session was revoked.
    Unknown,
    /// Already rotated, presented again inside the grace window: refused, family kept.
    RotatedWithinGrace,
    /// Already rotated, presented again after the grace window: the family was revoked.
    Reused,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("refresh token rejected: {0:?}")]
    Rejected(Rejection),
    /// Redis could not be reached or is failing over: callers fail closed (503).
    #[error("token store unavailable: {0}")]
    Unavailable(#[source] RedisStoreError),
    /// Redis answered with an error: a bug in a script or a key of the wrong type.
    #[error("token store failed: {0}")]
    Store(#[source] RedisStoreError),
    /// A script answered something it never answers.
    #[error("unexpected reply from the token store: {0}")]
    Reply(String),
    #[error("the operating system's random source failed")]
    Random,
}

impl RefreshError {
    /// The store already tells an outage (unreachable, loading, failing over) from a refusal.
    fn from_store(e: RedisStoreError) -> Self {
        match e {
            RedisStoreError::Unavailable { .. } => Self::Unavailable(e),
            RedisStoreError::Command(_) | RedisStoreError::Settings(_) => Self::Store(e),
        }
    }
}

// ---- the token --------------------------------------------------------------------------------

/// A refresh token, parsed. `Debug` shows the user only: the token is a bearer credential.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    raw: String,
    user: UserId,
    family: String,
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshToken").field("user", &self.user).finish_non_exhaustive()
    }
}

fn is_base64url(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn random_base64url(bytes: usize) -> Result<String, RefreshError> {
    let mut buf = [0u8; 32];
    let buf = buf.get_mut(..bytes).ok_or(RefreshError::Random)?;
    // The OS source directly, not a user-space generator: no state that a frozen and thawed
    // execution environment could replay.
    rand::rngs::OsRng.try_fill_bytes(buf).map_err(|_| RefreshError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

impl RefreshToken {
    /// Parses `<userId>.<familyId>.<secret>`; `Malformed` for anything else, however close.
    pub fn parse(raw: &str) -> Result<Self, RefreshError> {
        let malformed = RefreshError::Rejected(Rejection::Malformed);
        if raw.len() > MAX_TOKEN_CHARS {
            return Err(malformed);
        }
        let mut parts = raw.split('.');
        let (Some(user), Some(family), Some(secret), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed);
        };
        let user = UserId::parse(user).map_err(|_| RefreshError::Rejected(Rejection::Malformed))?;
        if !is_base64url(family, FAMILY_CHARS) || !is_base64url(secret, SECRET_CHARS) {
            return Err(malformed);
        }
        Ok(Self { raw: raw.to_owned(), user, family: family.to_owned() })
    }

    /// A fresh token in `family` (a new family when `None`).
    fn generate(user: &UserId, family: Option<&str>) -> Result<Self, RefreshError> {
        let family = match family {
            Some(f) => f.to_owned(),
            None => random_base64url(FAMILY_BYTES)?,
        };
        let secret = random_base64url(SECRET_BYTES)?;
        Ok(Self { raw: format!("{user}.{family}.{secret}"), user: user.clone(), family })
    }

    /// The token itself, for the response body and the cookie. Never log it.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    pub fn user(&self) -> &UserId {
        &self.user
    }

    pub fn family(&self) -> &str {
        &self.family
    }

    /// SHA-256 of the whole token, hex: the only form of it Redis ever sees.
    fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.raw.as_bytes()))
    }
}

// ---- keys -------------------------------------------------------------------------------------

fn record_key(user: &UserId, digest: &str) -> String {
    format!("auth:{{{user}}}:rt:{digest}")
}

fn family_key(user: &UserId, family: &str) -> String {
    format!("auth:{{{user}}}:fam:{family}")
}

fn sessions_key(user: &UserId) -> String {
    format!("auth:{{{user}}}:sessions")
}

// ---- scripts ----------------------------------------------------------------------------------

/// Helpers every script starts with. Numbers are formatted with `%.0f` because Lua 5.1 numbers are
/// doubles and `tostring` switches to exponent notation, which `PEXPIREAT` refuses.
const LUA_PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function ms(n) return string.format('%.0f', n) end
-- A sorted set expires with its latest member.
local function expire_with_last(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', key, ms(tonumber(last[2]))) end
end
-- Writes a token as the newest of its family, drops expired members, moves the expiries.
local function add_token(record, family, sessions, user, fid, digest, now, ttl)
  local exp = ms(now + ttl)
  redis.call('HSET', record, 'user', user, 'family', fid, 'issuedAt', ms(now), 'state', 'active')
  redis.call('PEXPIREAT', record, exp)
  redis.call('ZADD', family, exp, digest)
  redis.call('ZREMRANGEBYSCORE', family, '-inf', ms(now))
  expire_with_last(family)
  redis.call('ZADD', sessions, exp, fid)
  redis.call('ZREMRANGEBYSCORE', sessions, '-inf', ms(now))
  expire_with_last(sessions)
  return exp
end
"#;

/// Starts a family. KEYS: record, family, sessions. ARGV: user, family id, digest, ttl ms.
const ISSUE: &str = r#"
local exp = add_token(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], now_ms(), tonumber(ARGV[4]))
return {'issued', {exp}}
"#;

/// Rotates a token. KEYS: presented record, family, sessions, successor record.
/// ARGV: user, family id, successor digest, ttl ms, grace ms.
const ROTATE: &str = r#"
local rec = redis.call('HMGET', KEYS[1], 'user', 'family', 'state', 'rotatedAt')
if rec[1] ~= ARGV[1] or rec[2] ~= ARGV[2] then return {'unknown', {}} end
-- The index is the gate: a family that is not in it was revoked, whatever its records say.
if not redis.call('ZSCORE', KEYS[3], ARGV[2]) then return {'unknown', {}} end
local now = now_ms()
if rec[3] == 'rotated' then
  if now - (tonumber(rec[4]) or 0) < tonumber(ARGV[5]) then return {'grace', {}} end
  local members = redis.call('ZRANGE', KEYS[2], 0, -1)
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
  return {'reused', members}
end
if rec[3] ~= 'active' then return {'unknown', {}} end
redis.call('HSET', KEYS[1], 'state', 'rotated', 'rotatedAt', ms(now))
local exp = add_token(KEYS[4], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], now, tonumber(ARGV[4]))
return {'rotated', {exp}}
"#;

/// Revokes the family of a token (logout). KEYS: record, family, sessions. ARGV: user, family id.
/// Any token the family ever issued will do, rotated or not: its holder wants the session gone.
const END: &str = r#"
local rec = redis.call('HMGET', KEYS[1], 'user', 'family')
if rec[1] ~= ARGV[1] or rec[2] ~= ARGV[2] then return {'unknown', {}} end
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return {'revoked', members}
"#;

/// Revokes every family of a user by deleting the index. KEYS: sessions. Returns the live families.
const END_ALL: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms(now_ms()))
local families = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return {'revoked', families}
"#;

/// Empties a revoked family's set and returns the digests it held. KEYS: family.
const DRAIN: &str = r#"
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return {'drained', members}
"#;

struct Scripts {
    issue: redis::Script,
    rotate: redis::Script,
    end: redis::Script,
    end_all: redis::Script,
    drain: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        let script = |body: &str| redis::Script::new(&format!("{LUA_PRELUDE}{body}"));
        Self {
            issue: script(ISSUE),
            rotate: script(ROTATE),
            end: script(END),
            end_all: script(END_ALL),
            drain: script(DRAIN),
        }
    }
}

/// Every script answers `{status, {strings}}`.
type Reply = (String, Vec<String>);

fn unexpected(reply: &Reply) -> RefreshError {
    RefreshError::Reply(reply.0.chars().take(32).collect())
}

// ---- the store --------------------------------------------------------------------------------

/// The refresh-token store. Cheap to clone; clones share the Redis connection.
#[derive(Clone)]
pub struct RefreshTokenStore {
    redis: Arc<RedisStore>,
    settings: RefreshSettings,
    scripts: Arc<Scripts>,
}

impl std::fmt::Debug for RefreshTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokenStore").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl RefreshTokenStore {
    pub fn new(redis: Arc<RedisStore>, settings: RefreshSettings) -> Self {
        Self { redis, settings, scripts: Arc::new(Scripts::new()) }
    }

    pub fn settings(&self) -> &RefreshSettings {
        &self.settings
    }

    fn ttl_ms(&self) -> u64 {
        self.settings.ttl.as_millis() as u64
    }

    async fn invoke(&self, retry: Retry, invocation: redis::ScriptInvocation<'_>) -> Result<Reply, RefreshError> {
        let invocation = &invocation;
        self.redis
            .run(retry, |mut conn| async move { invocation.invoke_async::<Reply>(&mut conn).await })
            .await
            .map_err(RefreshError::from_store)
    }

    /// Starts a new session (a new family) for `user` and returns its first token.
    pub async fn issue(&self, user: &UserId) -> Result<RefreshToken, RefreshError> {
        let token = RefreshToken::generate(user, None)?;
        let digest = token.digest();
        let mut invocation = self.scripts.issue.prepare_invoke();
        invocation
            .key(record_key(user, &digest))
            .key(family_key(user, &token.family))
            .key(sessions_key(user))
            .arg(user.as_str())
            .arg(&token.family)
            .arg(&digest)
            .arg(self.ttl_ms());
        // The token is generated before the call, so sending the script twice writes the same
        // record twice: safe to retry.
        let reply = self.invoke(Retry::Idempotent, invocation).await?;
        match reply.0.as_str() {
            "issued" => Ok(token),
            _ => Err(unexpected(&reply)),
        }
    }

    /// Consumes `presented` and returns its successor in the same family.
    pub async fn rotate(&self, presented: &RefreshToken) -> Result<RefreshToken, RefreshError> {
        let user = presented.user();
        let next = RefreshToken::generate(user, Some(&presented.family))?;
        let next_digest = next.digest();
        let mut invocation = self.scripts.rotate.prepare_invoke();
        invocation
            .key(record_key(user, &presented.digest()))
            .key(family_key(user, &presented.family))
            .key(sessions_key(user))
            .key(record_key(user, &next_digest))
            .arg(user.as_str())
            .arg(&presented.family)
            .arg(&next_digest)
            .arg(self.ttl_ms())
            .arg(self.settings.reuse_grace.as_millis() as u64);
        // Never resent: a second run would find the token rotated and refuse it (or, past the
        // grace window, revoke the family). Losing the answer costs the user one sign-in, not more.
        let reply = self.invoke(Retry::Once, invocation).await?;
        match reply.0.as_str() {
            "rotated" => Ok(next),
            "unknown" => Err(RefreshError::Rejected(Rejection::Unknown)),
            "grace" => Err(RefreshError::Rejected(Rejection::RotatedWithinGrace)),
            "reused" => {
                tracing::warn!(user = %user, "refresh token reused after rotation; session revoked");
                self.unlink_records(user, &reply.1).await;
                Err(RefreshError::Rejected(Rejection::Reused))
            }
            _ => Err(unexpected(&reply)),
        }
    }

    /// Revokes the session `presented` belongs to. `false` when there was no such session (already
    /// revoked, expired, never issued): the end state the caller asked for holds either way.
    pub async fn revoke_family(&self, presented: &RefreshToken) -> Result<bool, RefreshError> {
        let user = presented.user();
        let presented_key = record_key(user, &presented.digest());
        let mut invocation = self.scripts.end.prepare_invoke();
        invocation
            .key(&presented_key)
            .key(family_key(user, &presented.family))
            .key(sessions_key(user))
            .arg(user.as_str())
            .arg(&presented.family);
        let reply = self.invoke(Retry::Idempotent, invocation).await?;
        match reply.0.as_str() {
            "revoked" => {
                self.unlink_records(user, &reply.1).await;
                Ok(true)
            }
            "unknown" => Ok(false),
            _ => Err(unexpected(&reply)),
        }
    }

    /// Revokes every session of `user`; returns how many were live.
    pub async fn revoke_all(&self, user: &UserId) -> Result<usize, RefreshError> {
        let mut invocation = self.scripts.end_all.prepare_invoke();
        invocation.key(sessions_key(user));
        let reply = self.invoke(Retry::Idempotent, invocation).await?;
        if reply.0 != "revoked" {
            return Err(unexpected(&reply));
        }
        // From here every token of the user is refused; what follows only frees memory, so a
        // failure is logged and left to the TTLs.
        for family in reply.1.iter().filter(|f| is_base64url(f, FAMILY_CHARS)) {
            let mut invocation = self.scripts.drain.prepare_invoke();
            invocation.key(family_key(user, family));
            match self.invoke(Retry::Idempotent, invocation).await {
                Ok((status, digests)) if status == "drained" => self.unlink_records(user, &digests).await,
                Ok(other) => tracing::warn!(user = %user, reply = %other.0, "unexpected reply while draining a family"),
                Err(e) => tracing::warn!(user = %user, error = %e, "could not drain a revoked family; TTLs will"),
            }
        }
        Ok(reply.1.len())
    }

    /// Deletes token records of a revoked family (tidy-up; the family is already refused).
    async fn unlink_records(&self, user: &UserId, digests: &[String]) {
        let keys: Vec<String> = digests
            .iter()
            .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|d| record_key(user, d))
            .collect();
        for batch in keys.chunks(UNLINK_BATCH) {
            let result: Result<i64, _> = self.redis.query(Retry::Idempotent, redis::cmd("UNLINK").arg(batch)).await;
            if let Err(e) = result {
                tracing::warn!(user = %user, error = %e, "could not delete revoked token records; TTLs will");
                return;
            }
        }
    }
}

// ---- sessions ---------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Refresh(#[from] RefreshError),
    #[error(transparent)]
    Access(#[from] AccessTokenError),
}

/// What a client holds after signing in or refreshing.
#[derive(Clone, Debug)]
pub struct Session {
    pub user: UserId,
    pub refresh_token: RefreshToken,
    pub access_token: Secret,
    /// Lifetime of the access token.
    pub access_expires_in: Duration,
    /// Lifetime of the refresh token (the cookie's Max-Age).
    pub refresh_expires_in: Duration,
}

/// Refresh-token store plus access-token minting: the whole session lifecycle.
#[derive(Clone, Debug)]
pub struct Sessions {
    store: RefreshTokenStore,
    access: AccessTokens,
}

impl Sessions {
    pub fn new(store: RefreshTokenStore, access: AccessTokens) -> Self {
        Self { store, access }
    }

    pub fn store(&self) -> &RefreshTokenStore {
        &self.store
    }

    /// The verifier for `Authorization: Bearer` (logout-all).
    pub fn access_tokens(&self) -> &AccessTokens {
        &self.access
    }

    fn session(&self, refresh_token: RefreshToken) -> Result<Session, SessionError> {
        let access_token = Secret::new(self.access.mint(refresh_token.user())?);
        Ok(Session {
            user: refresh_token.user().clone(),
            refresh_token,
            access_token,
            access_expires_in: self.access.ttl,
            refresh_expires_in: self.store.settings.ttl,
        })
    }

    /// Signs `user` in: a new session. The caller has checked who the user is (a login service,
    /// or an operator through `ops session`).
    pub async fn start(&self, user: &UserId) -> Result<Session, SessionError> {
        let token = self.store.issue(user).await?;
        self.session(token)
    }

    /// Exchanges a refresh token for a new pair. Any failure to accept the token is
    /// `Refresh(Rejected(_))`; the reason is for logs.
    pub async fn refresh(&self, presented: &str) -> Result<Session, SessionError> {
        let presented = RefreshToken::parse(presented)?;
        let next = self.store.rotate(&presented).await?;
        self.session(next)
    }

    /// Signs out the session of a refresh token. `Ok(false)` when the token is malformed or not
    /// live: revocation succeeds for tokens that are already useless (as RFC 7009 §2.2 has it).
    pub async fn end(&self, presented: &str) -> Result<bool, SessionError> {
        match RefreshToken::parse(presented) {
            Ok(token) => Ok(self.store.revoke_family(&token).await?),
            Err(_) => Ok(false),
        }
    }

    /// Signs out every session of `user`; returns how many were live. Access tokens already
    /// minted stay valid until they expire (they are not looked up anywhere).
    pub async fn end_all(&self, user: &UserId) -> Result<usize, SessionError> {
        Ok(self.store.revoke_all(user).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    #[test]
    fn generated_tokens_parse_back_and_have_the_documented_lengths() {
        let t = RefreshToken::generate(&user("user-1"), None).unwrap();
        let parts: Vec<&str> = t.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "user-1");
        assert_eq!(parts[1].len(), FAMILY_CHARS);
        assert_eq!(parts[2].len(), SECRET_CHARS);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[1]).unwrap().len(), FAMILY_BYTES);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), SECRET_BYTES);
        assert_eq!(RefreshToken::parse(t.expose()).unwrap(), t);

        let next = RefreshToken::generate(t.user(), Some(t.family())).unwrap();
        assert_eq!(next.family(), t.family());
        assert_ne!(next.expose(), t.expose());
        assert_ne!(RefreshToken::generate(t.user(), None).unwrap().family(), t.family());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = RefreshToken::generate(&user("u"), None).unwrap();
        let (fam, secret) = (good.family().to_owned(), good.expose().rsplit('.').next().unwrap().to_owned());
        let long_user = "x".repeat(65);
        let cases = [
            String::new(),
            "garbage".into(),
            format!("u.{fam}"),
            format!("u.{fam}.{secret}.x"),
            format!(".{fam}.{secret}"),
            format!("{{u}}.{fam}.{secret}"),
            format!("{long_user}.{fam}.{secret}"),
            format!("u.{fam}x.{secret}"),
            format!("u.{fam}.{}", &secret[1..]),
            format!("u.{fam}.{}+", &secret[1..]),
            format!("u.{fam}.{}=", &secret[1..]),
            format!("u.{}é.{secret}", &fam[2..]),
            "a".repeat(10_000),
        ];
        for case in cases {
            assert!(
                matches!(RefreshToken::parse(&case), Err(RefreshError::Rejected(Rejection::Malformed))),
                "{case:?} was accepted"
            );
        }
    }

    #[test]
    fn keys_share_the_user_hash_tag_and_never_hold_the_token() {
        let t = RefreshToken::generate(&user("user_9"), None).unwrap();
        let keys = [record_key(t.user(), &t.digest()), family_key(t.user(), t.family()), sessions_key(t.user())];
        for key in &keys {
            assert!(key.starts_with("auth:{user_9}:"), "{key}");
            assert!(!key.contains(t.expose().rsplit('.').next().unwrap()), "{key}");
        }
        assert_eq!(t.digest().len(), 64);
        assert_ne!(t.digest(), RefreshToken::generate(t.user(), Some(t.family())).unwrap().digest());
    }

    #[test]
    fn debug_never_prints_the_token() {
        let t = RefreshToken::generate(&user("u"), None).unwrap();
        let printed = format!("{t:?}");
        assert!(!printed.contains(t.expose()) && !printed.contains(t.family()), "{printed}");
    }

    #[test]
    fn settings_default_and_bounds() {
        let mut env = EnvReader::from_fn(|_| None);
        assert_eq!(RefreshSettings::from_env(&mut env), RefreshSettings::default());
        assert!(env.finish(()).is_ok());

        let mut env = EnvReader::from_fn(|k| match k {
            "REFRESH_TOKEN_TTL_SECONDS" => Some("10".into()),
            "REFRESH_REUSE_GRACE_MS" => Some("soon".into()),
            _ => None,
        });
        RefreshSettings::from_env(&mut env);
        let err = env.finish(()).unwrap_err();
        let names: Vec<_> = err.problems.iter().map(|p| p.variable.as_str()).collect();
        assert_eq!(names, ["REFRESH_TOKEN_TTL_SECONDS", "REFRESH_REUSE_GRACE_MS"]);
    }
}
