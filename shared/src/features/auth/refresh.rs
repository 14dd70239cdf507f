//! Refresh tokens: long-lived, single-use, rotated on every refresh; a session costs Redis one
//! hash field however often it rotates.
//!
//! Why it is built this way:
//! - A token is `<userId>.<familyId>.<seq>.<mac>` ([`super::refresh_token`]): the family's
//!   `seq`-th token, MAC'd with a key derived from `REFRESH_TOKEN_SECRET` and the family. Redis
//!   holds, per user, one hash with one field per live family: its current number, when it was
//!   reached, its idle expiry and its absolute end ([`super::session_scripts`]). Nothing stored is a
//!   credential, nothing grows with rotations, and every earlier token of a family is recognised by
//!   its number alone.
//! - Rotation is one Lua script, so two refreshes with one token cannot both win. The current
//!   number rotates; the number just before, inside the grace window, gets the *same* successor
//!   again (the successor is a function of the number, so nothing extra is stored): two tabs
//!   refreshing at once both stay signed in, and a reply lost on the network and resent by the
//!   client (or by the Redis client's own retry) costs nothing. Any earlier number, or the one
//!   before outside the window, is reuse (RFC 9700 §4.14.2): the family is deleted. So when a thief
//!   and the victim hold the same family, the next presentation of a superseded token outside the
//!   window ends it for both; neither keeps a session past it.
//! - Sessions end after `REFRESH_TOKEN_TTL_SECONDS` without a refresh and, whatever happens,
//!   `REFRESH_SESSION_MAX_SECONDS` after they started.
//! - A user has at most `REFRESH_MAX_SESSIONS_PER_USER` sessions; a new sign-in evicts the least
//!   recently refreshed. Revoke-all is one `DEL` of that hash.
//! - Refreshes are rate limited per user by a token bucket under the same hash tag
//!   (`REFRESH_RATE_BURST`, `REFRESH_RATE_PER_MINUTE`), checked inside the rotation script: a flood
//!   from one stolen session costs one small hash and O(1) per request. Only a token the script
//!   would honour spends from the bucket: a dead one (revoked, superseded, unknown) is refused
//!   first, so replaying it cannot lock the user's live sessions out.
//! - Every key carries the user's hash tag `{<userId>}`: on Redis Cluster a user is one slot and
//!   every script is single-slot.
//!
//! [`Sessions`] puts the store and the access-token signer together: it is what a login service
//! calls to start a session, what auth-refresh calls to refresh and end one, and what `ops session`
//! uses.

use std::sync::Arc;
use std::time::Duration;

use super::UserId;
use super::access::{AccessTokenError, AccessTokenSigner};
use super::refresh_token::{RefreshTokenKey, is_base64url};
use super::session_scripts::{Reply, Scripts};
use crate::clients::{RedisStore, RedisStoreError, Retry};
use crate::config::{EnvReader, Secret};

pub use super::refresh_token::{FAMILY_CHARS, RefreshToken};

// ---- settings ---------------------------------------------------------------------------------

/// `REFRESH_TOKEN_SECRET`, `REFRESH_TOKEN_TTL_SECONDS` (idle, default 7 days),
/// `REFRESH_SESSION_MAX_SECONDS` (absolute, default 30 days), `REFRESH_REUSE_GRACE_MS` (default
/// 5 s), `REFRESH_MAX_SESSIONS_PER_USER` (default 10), `REFRESH_RATE_BURST` (default 10) and
/// `REFRESH_RATE_PER_MINUTE` (default 10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshSettings {
    /// The secret tokens are MAC'd with (`REFRESH_TOKEN_SECRET`).
    pub key: RefreshTokenKey,
    /// A session ends this long after its last refresh.
    pub ttl: Duration,
    /// A session ends this long after it started, however often it refreshes.
    pub max_lifetime: Duration,
    /// How long after a rotation the token before it still gets the same successor.
    pub reuse_grace: Duration,
    /// Live sessions a user may have; a sign-in beyond it ends the least recently refreshed.
    pub max_sessions_per_user: u32,
    /// Refreshes a user may make at once.
    pub rate_burst: u32,
    /// Refreshes a user may make per minute, sustained.
    pub rate_per_minute: u32,
}

impl RefreshSettings {
    /// Idle lifetime when `REFRESH_TOKEN_TTL_SECONDS` is unset: 7 days.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
    /// Absolute lifetime when `REFRESH_SESSION_MAX_SECONDS` is unset: 30 days.
    pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
    /// Reuse grace window when `REFRESH_REUSE_GRACE_MS` is unset: 5 s, enough for two tabs or one
    /// resent request.
    pub const DEFAULT_GRACE: Duration = Duration::from_millis(5000);

    /// The defaults, with `key`.
    pub fn with_key(key: RefreshTokenKey) -> Self {
        Self {
            key,
            ttl: Self::DEFAULT_TTL,
            max_lifetime: Self::DEFAULT_MAX_LIFETIME,
            reuse_grace: Self::DEFAULT_GRACE,
            max_sessions_per_user: 10,
            rate_burst: 10,
            rate_per_minute: 10,
        }
    }

    /// Reads these variables; `env` records every one missing or out of range, and an absolute
    /// lifetime shorter than the idle one.
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let d = Self::with_key(RefreshTokenKey::from_env(env));
        let settings = Self {
            ttl: env.seconds("REFRESH_TOKEN_TTL_SECONDS", d.ttl.as_secs(), 1..=31_536_000),
            max_lifetime: env.seconds("REFRESH_SESSION_MAX_SECONDS", d.max_lifetime.as_secs(), 1..=31_536_000),
            reuse_grace: env.millis("REFRESH_REUSE_GRACE_MS", d.reuse_grace.as_millis() as u64, 0..=60_000),
            max_sessions_per_user: env.int_in("REFRESH_MAX_SESSIONS_PER_USER", 10, 1..=100) as u32,
            rate_burst: env.int_in("REFRESH_RATE_BURST", 10, 1..=1_000_000) as u32,
            rate_per_minute: env.int_in("REFRESH_RATE_PER_MINUTE", 10, 1..=1_000_000) as u32,
            ..d
        };
        if settings.max_lifetime < settings.ttl {
            env.reject(
                "REFRESH_SESSION_MAX_SECONDS",
                "at least REFRESH_TOKEN_TTL_SECONDS",
                "shorter than the idle lifetime",
            );
        }
        settings
    }

    /// Bucket refill in tokens per millisecond.
    fn refill_per_ms(&self) -> f64 {
        f64::from(self.rate_per_minute) / 60_000.0
    }

    /// How long a bucket takes to fill from empty: after that, no key is the same as a full one.
    fn bucket_ttl_ms(&self) -> u64 {
        ((f64::from(self.rate_burst) / self.refill_per_ms()).ceil() as u64).max(1000)
    }
}

// ---- errors -----------------------------------------------------------------------------------

/// Why a refresh token was refused. For the logs only: clients get one and the same 401 for all
/// of them, so the answer never tells an attacker which tokens exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No token in the request.
    Missing,
    /// Not of the `<userId>.<familyId>.<seq>.<mac>` shape (a token of the old format included).
    Malformed,
    /// Of the shape, but its MAC is wrong: edited, or made without the secret.
    Forged,
    /// Genuine, but its session is gone: revoked, evicted, or never started here.
    Unknown,
    /// Genuine, but its session passed its idle or absolute expiry.
    Expired,
    /// A superseded token presented again outside the grace window: the session was revoked.
    Reused,
}

/// Why a refresh-token operation failed: the token, the rate limit, Redis, or the random source.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The token was refused; the reason is for the logs (clients get one and the same 401).
    #[error("refresh token rejected: {0:?}")]
    Rejected(Rejection),
    /// The user's refresh bucket is empty: try again after `retry_after`.
    #[error("too many refreshes; retry after {retry_after:?}")]
    RateLimited {
        /// Time until the user's bucket holds a token again (at least 1 ms).
        retry_after: Duration,
    },
    /// Redis could not be reached or is failing over: callers fail closed (503).
    #[error("token store unavailable: {0}")]
    Unavailable(#[source] RedisStoreError),
    /// Redis answered with an error: a bug in a script, a key of the wrong type, or an ACL refusal.
    #[error("token store failed: {0}")]
    Store(#[source] RedisStoreError),
    /// A script answered something it never answers.
    #[error("unexpected reply from the token store: {0}")]
    Reply(String),
    /// The OS random source failed while choosing a family id: no session starts on weaker
    /// randomness.
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

// ---- keys -------------------------------------------------------------------------------------

/// The user's live families (one hash field each).
pub fn sessions_key(user: &UserId) -> String {
    format!("auth:{{{user}}}:sessions")
}

/// The user's refresh token bucket.
pub fn rate_key(user: &UserId) -> String {
    format!("auth:{{{user}}}:rate")
}

fn unexpected(reply: &Reply) -> RefreshError {
    RefreshError::Reply(reply.0.chars().take(32).collect())
}

fn millis(n: i64) -> Duration {
    Duration::from_millis(u64::try_from(n).unwrap_or(0))
}

// ---- the store --------------------------------------------------------------------------------

/// A token the store handed out, with how long its session has left before its idle expiry.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The token to hand to the client.
    pub token: RefreshToken,
    /// Time left before the session's idle (or absolute) expiry, on the Redis clock.
    pub expires_in: Duration,
}

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
    /// A store over `redis` with `settings`; nothing is sent to Redis before the first call.
    pub fn new(redis: Arc<RedisStore>, settings: RefreshSettings) -> Self {
        Self { redis, settings, scripts: Arc::new(Scripts::new()) }
    }

    /// The lifetimes, caps and rate it was built with.
    pub fn settings(&self) -> &RefreshSettings {
        &self.settings
    }

    /// Parses and verifies a presented token (no Redis call: a forged one costs nothing).
    pub fn parse(&self, raw: &str) -> Result<RefreshToken, RefreshError> {
        self.settings.key.verify(raw)
    }

    async fn invoke(&self, invocation: redis::ScriptInvocation<'_>) -> Result<Reply, RefreshError> {
        let invocation = &invocation;
        // Every script here may run twice (a reply lost and resent, by us or by the cluster
        // client): issue writes the same family, rotate answers the same successor, the ends
        // delete what is already deleted.
        self.redis
            .run(Retry::Idempotent, |mut conn| async move { invocation.invoke_async::<Reply>(&mut conn).await })
            .await
            .map_err(RefreshError::from_store)
    }

    /// Starts a new session (a new family) for `user` and returns its first token.
    pub async fn issue(&self, user: &UserId) -> Result<Issued, RefreshError> {
        let token = self.settings.key.new_family(user)?;
        let mut invocation = self.scripts.issue.prepare_invoke();
        invocation
            .key(sessions_key(user))
            .arg(token.family())
            .arg(self.settings.ttl.as_millis() as u64)
            .arg(self.settings.max_lifetime.as_millis() as u64)
            .arg(self.settings.max_sessions_per_user);
        let reply = self.invoke(invocation).await?;
        match reply.0.as_str() {
            "issued" => {
                if reply.2 > 0 {
                    tracing::info!(user = %user, evicted = reply.2, "session cap reached; least recent session ended");
                }
                Ok(Issued { token, expires_in: millis(reply.1) })
            }
            _ => Err(unexpected(&reply)),
        }
    }

    /// Consumes `presented` and returns its successor in the same family.
    pub async fn rotate(&self, presented: &RefreshToken) -> Result<Issued, RefreshError> {
        let user = presented.user();
        let mut invocation = self.scripts.rotate.prepare_invoke();
        invocation
            .key(sessions_key(user))
            .key(rate_key(user))
            .arg(presented.family())
            .arg(presented.seq())
            .arg(self.settings.ttl.as_millis() as u64)
            .arg(self.settings.reuse_grace.as_millis() as u64)
            .arg(self.settings.rate_burst)
            .arg(format!("{:.9}", self.settings.refill_per_ms()))
            .arg(self.settings.bucket_ttl_ms());
        let reply = self.invoke(invocation).await?;
        let successor = |seq: i64| {
            let seq = u64::try_from(seq).map_err(|_| unexpected(&reply))?;
            Ok(Issued { token: self.settings.key.token(user, presented.family(), seq), expires_in: millis(reply.2) })
        };
        match reply.0.as_str() {
            "rotated" => successor(reply.1),
            "retried" => {
                tracing::info!(user = %user, "refresh retried inside the grace window; same successor");
                successor(reply.1)
            }
            "limited" => Err(RefreshError::RateLimited { retry_after: millis(reply.1.max(1)) }),
            "unknown" => Err(RefreshError::Rejected(Rejection::Unknown)),
            "expired" => Err(RefreshError::Rejected(Rejection::Expired)),
            "reused" => {
                tracing::warn!(user = %user, "refresh token reused after rotation; session revoked");
                Err(RefreshError::Rejected(Rejection::Reused))
            }
            _ => Err(unexpected(&reply)),
        }
    }

    /// Revokes the session `presented` belongs to. `false` when there was no such session (already
    /// revoked, expired, never issued): the end state the caller asked for holds either way.
    pub async fn revoke_family(&self, presented: &RefreshToken) -> Result<bool, RefreshError> {
        let mut invocation = self.scripts.end.prepare_invoke();
        invocation.key(sessions_key(presented.user())).arg(presented.family());
        let reply = self.invoke(invocation).await?;
        match reply.0.as_str() {
            "revoked" => Ok(true),
            "unknown" => Ok(false),
            _ => Err(unexpected(&reply)),
        }
    }

    /// Revokes every session of `user`; returns how many were live.
    pub async fn revoke_all(&self, user: &UserId) -> Result<usize, RefreshError> {
        let mut invocation = self.scripts.end_all.prepare_invoke();
        invocation.key(sessions_key(user));
        let reply = self.invoke(invocation).await?;
        match reply.0.as_str() {
            "revoked" => Ok(usize::try_from(reply.1).unwrap_or(0)),
            _ => Err(unexpected(&reply)),
        }
    }
}

// ---- sessions ---------------------------------------------------------------------------------

/// Why a session could not be started, refreshed or ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The refresh-token side: a refused token, the rate limit, or the store.
    #[error(transparent)]
    Refresh(#[from] RefreshError),
    /// The access token could not be minted: a signing-key problem, a 500.
    #[error(transparent)]
    Access(#[from] AccessTokenError),
}

/// What a client holds after signing in or refreshing.
#[derive(Clone, Debug)]
pub struct Session {
    /// The user the session belongs to.
    pub user: UserId,
    /// The session's current refresh token: the one to present next time.
    pub refresh_token: RefreshToken,
    /// A fresh access token (JWT), held as a [`Secret`] so `Debug` never prints it.
    pub access_token: Secret,
    /// Lifetime of the access token.
    pub access_expires_in: Duration,
    /// Time left before the session's idle (or absolute) expiry: the cookie's Max-Age.
    pub refresh_expires_in: Duration,
}

/// Refresh-token store plus access-token minting: the whole session lifecycle.
#[derive(Clone, Debug)]
pub struct Sessions {
    store: RefreshTokenStore,
    signer: AccessTokenSigner,
}

impl Sessions {
    /// Sessions over `store`, with access tokens minted by `signer`.
    pub fn new(store: RefreshTokenStore, signer: AccessTokenSigner) -> Self {
        Self { store, signer }
    }

    /// The refresh-token store underneath (for tools and tests that look at Redis).
    pub fn store(&self) -> &RefreshTokenStore {
        &self.store
    }

    /// The access-token signer, and through it the verifier (auth-refresh's logout-all).
    pub fn signer(&self) -> &AccessTokenSigner {
        &self.signer
    }

    fn session(&self, issued: Issued) -> Result<Session, SessionError> {
        let access_token = Secret::new(self.signer.mint(issued.token.user())?);
        Ok(Session {
            user: issued.token.user().clone(),
            refresh_token: issued.token,
            access_token,
            access_expires_in: self.signer.ttl(),
            refresh_expires_in: issued.expires_in,
        })
    }

    /// Signs `user` in: a new session. The caller has checked who the user is (a login service,
    /// or an operator through `ops session`).
    pub async fn start(&self, user: &UserId) -> Result<Session, SessionError> {
        let issued = self.store.issue(user).await?;
        self.session(issued)
    }

    /// Exchanges a refresh token for a new pair. Any failure to accept the token is
    /// `Refresh(Rejected(_))`; the reason is for logs.
    pub async fn refresh(&self, presented: &str) -> Result<Session, SessionError> {
        let presented = self.store.parse(presented)?;
        let next = self.store.rotate(&presented).await?;
        self.session(next)
    }

    /// Signs out the session of a refresh token. `Ok(false)` when the token is malformed, forged
    /// or not live: revocation succeeds for tokens that are already useless (RFC 7009 §2.2).
    pub async fn end(&self, presented: &str) -> Result<bool, SessionError> {
        match self.store.parse(presented) {
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

/// Whether `s` could be a family id (for tools that list sessions).
pub fn is_family_id(s: &str) -> bool {
    is_base64url(s, FAMILY_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(vars: &'static [(&'static str, &'static str)]) -> EnvReader<'static> {
        EnvReader::from_fn(move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
    }
    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn keys_share_the_user_hash_tag() {
        let user = UserId::parse("user_9").unwrap();
        for key in [sessions_key(&user), rate_key(&user)] {
            assert!(key.starts_with("auth:{user_9}:"), "{key}");
        }
    }

    #[test]
    fn settings_default_and_bounds() {
        let mut env = env_with(&[("REFRESH_TOKEN_SECRET", SECRET)]);
        let settings = RefreshSettings::from_env(&mut env);
        assert!(env.finish(()).is_ok());
        assert_eq!(settings, RefreshSettings::with_key(RefreshTokenKey::new(Secret::new(SECRET))));
        assert_eq!(settings.max_lifetime, Duration::from_secs(30 * 24 * 3600));

        let mut env = env_with(&[
            ("REFRESH_TOKEN_TTL_SECONDS", "0"),
            ("REFRESH_REUSE_GRACE_MS", "soon"),
            ("REFRESH_MAX_SESSIONS_PER_USER", "0"),
        ]);
        RefreshSettings::from_env(&mut env);
        let err = env.finish(()).unwrap_err();
        let names: Vec<_> = err.problems.iter().map(|p| p.variable.as_str()).collect();
        assert_eq!(
            names,
            [
                "REFRESH_TOKEN_SECRET",
                "REFRESH_TOKEN_TTL_SECONDS",
                "REFRESH_REUSE_GRACE_MS",
                "REFRESH_MAX_SESSIONS_PER_USER"
            ]
        );

        let mut env = env_with(&[
            ("REFRESH_TOKEN_SECRET", SECRET),
            ("REFRESH_TOKEN_TTL_SECONDS", "7200"),
            ("REFRESH_SESSION_MAX_SECONDS", "3600"),
        ]);
        RefreshSettings::from_env(&mut env);
        assert_eq!(env.finish(()).unwrap_err().problems[0].variable, "REFRESH_SESSION_MAX_SECONDS");
    }

    #[test]
    fn the_bucket_refills_at_the_configured_rate() {
        let mut s = RefreshSettings::with_key(RefreshTokenKey::new(Secret::new(SECRET)));
        s.rate_burst = 10;
        s.rate_per_minute = 60;
        assert!((s.refill_per_ms() - 0.001).abs() < 1e-12);
        assert_eq!(s.bucket_ttl_ms(), 10_000);
    }
}
