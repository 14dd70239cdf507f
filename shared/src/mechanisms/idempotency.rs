//! Exactly-once processing of at-least-once deliveries, with the semantics of Powertools for AWS
//! Lambda's idempotency utility, over one DynamoDB table.
//!
//! A record per key: `id` (the key: a Stripe event id, an email job's idempotency key, ...),
//! `status` INPROGRESS | COMPLETED, `expiration` (epoch seconds; the table's TTL attribute) and
//! `in_progress_expiration` (epoch milliseconds: the Lambda deadline of the invocation that holds
//! the claim). The flow is claim → process → [`complete`](IdempotencyStore::complete), or
//! [`release`](IdempotencyStore::release) when processing failed, so the next delivery processes again,
//! or [`hold`](IdempotencyStore::hold) when nobody can tell whether it happened (a request that
//! timed out after it left), so no delivery processes it again before a bounded window is over.
//!
//! The claim is one conditional PutItem that reads the old item when it fails:
//! `attribute_not_exists(id) OR expiration < :now OR (status = INPROGRESS AND in_progress_expiration < :now_ms)`.
//! So a key is free when it was never seen, when its record expired (DynamoDB's TTL deletes lazily,
//! up to days late), or when the invocation holding it ran past its deadline (it crashed or timed
//! out without releasing). Otherwise the old record says whether the work is done (a duplicate) or
//! still running elsewhere (retry later).
//!
//! Beyond Powertools, each claim carries a random token, and complete/release are conditional on it:
//! an invocation that overran its deadline cannot complete or delete the claim of the one that took
//! over from it. And what Powertools users ask for:
//! - payload validation: a claim may carry a [`Fingerprint`] of the payload (the caller chooses
//!   which fields: a Stripe event's `pending_webhooks` changes between deliveries, its `data` does
//!   not); the same key with another fingerprint is [`IdempotencyError::PayloadMismatch`], never a
//!   silent duplicate. Records without a fingerprint (written before it existed) are not checked.
//! - a stable key prefix (`IDEMPOTENCY_KEY_PREFIX`, empty by default, so the keys of earlier
//!   releases stay valid), never derived from a function or handler name that a refactor renames;
//! - a replay flag: [`Claim::is_replay`] (logged by the callers, counted as `IdempotencyReplays`);
//! - a bounded wait on a live INPROGRESS record ([`IdempotencyStore::claim_waiting`]) instead of
//!   failing at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use crate::clients::dynamo::{self, DynamoError};
use crate::clock::now_ms;
use crate::config::EnvReader;
use crate::metrics::names;

/// `status` of a record whose claim is held: the work is running (or its holder died).
pub const STATUS_IN_PROGRESS: &str = "INPROGRESS";
/// `status` of a record whose work is done: later deliveries are duplicates.
pub const STATUS_COMPLETED: &str = "COMPLETED";
/// How long a record keeps a key from being processed again, unless configured: Stripe retries for
/// three days, Powertools keeps records for one hour; seven days covers every retry with margin.
pub const DEFAULT_EXPIRES_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest key accepted (DynamoDB allows 2048 bytes for a partition key).
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest `IDEMPOTENCY_KEY_PREFIX`.
pub const MAX_PREFIX_BYTES: usize = 128;
/// First interval between re-claims while waiting on a live INPROGRESS record; it grows by half
/// each time up to [`WAIT_POLL_MAX`].
pub const WAIT_POLL_FIRST: Duration = Duration::from_millis(50);
/// Longest interval between re-claims while waiting.
pub const WAIT_POLL_MAX: Duration = Duration::from_millis(500);

/// The idempotency table and how long its records last.
#[derive(Clone, Debug)]
pub struct IdempotencySettings {
    /// The DynamoDB table (`IDEMPOTENCY_TABLE`), key `id`.
    pub table: String,
    /// How long a record keeps its key from being processed again (`IDEMPOTENCY_EXPIRES_AFTER_SECS`).
    pub expires_after: Duration,
    /// Put before every key (`IDEMPOTENCY_KEY_PREFIX`, default empty): a stable namespace that
    /// survives renames of the function and of the code, and lets two deployments share a table.
    pub key_prefix: String,
}

impl IdempotencySettings {
    /// `IDEMPOTENCY_TABLE` (required), `IDEMPOTENCY_EXPIRES_AFTER_SECS` (60 s to 90 days,
    /// default 7 days) and `IDEMPOTENCY_KEY_PREFIX` (up to 128 printable ASCII characters,
    /// default none).
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let key_prefix = env.optional("IDEMPOTENCY_KEY_PREFIX").unwrap_or_default();
        if key_prefix.len() > MAX_PREFIX_BYTES || !key_prefix.bytes().all(|b| b.is_ascii_graphic()) {
            env.reject(
                "IDEMPOTENCY_KEY_PREFIX",
                "up to 128 printable ASCII characters, no spaces",
                "too long or not printable ASCII",
            );
        }
        Self {
            key_prefix,
            table: env.required("IDEMPOTENCY_TABLE", "the DynamoDB idempotency table name"),
            expires_after: env.seconds(
                "IDEMPOTENCY_EXPIRES_AFTER_SECS",
                DEFAULT_EXPIRES_AFTER.as_secs(),
                60..=90 * 24 * 3600,
            ),
        }
    }
}

/// A claim this invocation holds; pass it to `complete` or `release`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimToken {
    /// The stored key (prefix included).
    key: String,
    token: String,
}

impl ClaimToken {
    /// The idempotency key claimed, as stored (prefix included).
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// A digest of the payload a key stands for (SHA-256, hex), stored with the claim: a later
/// delivery of the key with another payload is refused ([`IdempotencyError::PayloadMismatch`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of `payload`: hash only what must not change between deliveries.
    pub fn of(payload: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(payload)))
    }

    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key is held by another invocation that is still within its deadline: retry later.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key} is being processed by another invocation until {until_ms} (epoch ms)")]
pub struct InProgress {
    /// The idempotency key that is held.
    pub key: String,
    /// When that claim lapses, in epoch milliseconds (0 when the record did not say).
    pub until_ms: i64,
}

/// The outcome of a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours: process, then complete or release.
    Acquired(ClaimToken),
    /// Already processed (and not expired): a duplicate.
    Completed,
    /// Held elsewhere.
    InProgress(InProgress),
}

impl Claim {
    /// True when this delivery is a replay of one already seen (done or running elsewhere):
    /// callers log it and answer without doing the work.
    pub fn is_replay(&self) -> bool {
        !matches!(self, Claim::Acquired(_))
    }

    /// Counts the outcome (`IdempotencyClaims`, `IdempotencyReplays`, `IdempotencyInProgress`).
    fn counted(self) -> Self {
        crate::metrics::count(
            match &self {
                Claim::Acquired(_) => names::IDEMPOTENCY_CLAIMS,
                Claim::Completed => names::IDEMPOTENCY_REPLAYS,
                Claim::InProgress(_) => names::IDEMPOTENCY_IN_PROGRESS,
            },
            1,
        );
        self
    }
}

/// Why a claim, complete or release failed.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The key is empty or longer than [`MAX_KEY_BYTES`].
    #[error("idempotency key must be 1 to {MAX_KEY_BYTES} bytes")]
    InvalidKey,
    /// The DynamoDB call failed; its kind says whether to retry.
    #[error(transparent)]
    Store(#[from] DynamoError),
    /// A stored record lacks an attribute or has one of the wrong type.
    #[error("idempotency record is malformed: {0}")]
    Malformed(String),
    /// Our claim lapsed and another invocation took the key over: it is theirs to complete.
    #[error("the claim on {0} was taken over by another invocation")]
    ClaimLost(String),
    /// The key was claimed before with another payload: a replay with a changed body (an attack
    /// or a bug), refused rather than acknowledged as a duplicate.
    #[error("{key} was seen before with another payload (stored fingerprint {stored}, this one {got})")]
    PayloadMismatch {
        /// The key (without prefix).
        key: String,
        /// The fingerprint stored with the record.
        stored: String,
        /// This delivery's fingerprint.
        got: String,
    },
}

/// Claim / complete / release over the idempotency table.
#[derive(Clone, Debug)]
pub struct IdempotencyStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    expires_after: Duration,
    prefix: String,
}

impl IdempotencyStore {
    /// Records in `settings.table`, expiring after `settings.expires_after`.
    pub fn new(client: aws_sdk_dynamodb::Client, settings: &IdempotencySettings) -> Self {
        Self {
            client,
            table: settings.table.clone(),
            expires_after: settings.expires_after,
            prefix: settings.key_prefix.clone(),
        }
    }

    /// The key as stored: the prefix, then `key`.
    fn stored_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Claims `key` until `in_progress_until_ms` (the invocation's deadline, epoch ms), without
    /// payload validation.
    pub async fn claim(&self, key: &str, in_progress_until_ms: i64) -> Result<Claim, IdempotencyError> {
        self.claim_at(key, now_ms(), in_progress_until_ms).await
    }

    /// [`claim`](Self::claim) with the current time given, in epoch ms.
    pub async fn claim_at(&self, key: &str, now_ms: i64, in_progress_until_ms: i64) -> Result<Claim, IdempotencyError> {
        self.claim_inner(key, None, now_ms, in_progress_until_ms).await.map(Claim::counted)
    }

    /// Claims `key` for the payload `payload` stands for: a record of the key with another
    /// fingerprint is [`IdempotencyError::PayloadMismatch`] (logged as an error, counted).
    pub async fn claim_payload(
        &self,
        key: &str,
        payload: &Fingerprint,
        in_progress_until_ms: i64,
    ) -> Result<Claim, IdempotencyError> {
        self.claim_waiting(key, payload, in_progress_until_ms, Duration::ZERO).await
    }

    /// [`claim_payload`](Self::claim_payload), and while another invocation holds the key (a live
    /// INPROGRESS record), claims again every 50 ms (backing off to 500 ms) for up to `max_wait`
    /// (a holder past its deadline frees the key by itself): the holder completes (→
    /// [`Claim::Completed`]), releases or dies (→ [`Claim::Acquired`]), or the wait ends (→ the
    /// last [`Claim::InProgress`]). `max_wait` zero: no wait.
    pub async fn claim_waiting(
        &self,
        key: &str,
        payload: &Fingerprint,
        in_progress_until_ms: i64,
        max_wait: Duration,
    ) -> Result<Claim, IdempotencyError> {
        let give_up = Instant::now() + max_wait;
        let mut poll = WAIT_POLL_FIRST;
        let mut waited = false;
        loop {
            let claim = self.claim_inner(key, Some(payload), now_ms(), in_progress_until_ms).await;
            if let Err(IdempotencyError::PayloadMismatch { .. }) = &claim {
                crate::metrics::count(names::IDEMPOTENCY_VALIDATION_FAILURES, 1);
            }
            let now = Instant::now();
            let Ok(Claim::InProgress(_)) = &claim else {
                if waited {
                    tracing::info!(
                        key,
                        replay = claim.as_ref().is_ok_and(Claim::is_replay),
                        "waited for another invocation's claim"
                    );
                }
                return claim.map(Claim::counted);
            };
            if now >= give_up {
                return claim.map(Claim::counted);
            }
            if !waited {
                crate::metrics::count(names::IDEMPOTENCY_WAITS, 1);
                waited = true;
            }
            tokio::time::sleep(poll.min(give_up - now)).await;
            poll = (poll * 3 / 2).min(WAIT_POLL_MAX);
        }
    }

    async fn claim_inner(
        &self,
        key: &str,
        payload: Option<&Fingerprint>,
        now_ms: i64,
        in_progress_until_ms: i64,
    ) -> Result<Claim, IdempotencyError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(IdempotencyError::InvalidKey);
        }
        let stored_key = self.stored_key(key);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let now_secs = now_ms.div_euclid(1000);
        let expiration = now_secs.saturating_add(self.expires_after.as_secs() as i64);
        let mut item = HashMap::from([
            ("id".to_owned(), AttributeValue::S(stored_key.clone())),
            ("status".to_owned(), AttributeValue::S(STATUS_IN_PROGRESS.into())),
            ("expiration".to_owned(), AttributeValue::N(expiration.to_string())),
            ("in_progress_expiration".to_owned(), AttributeValue::N(in_progress_until_ms.to_string())),
            ("claim".to_owned(), AttributeValue::S(token.clone())),
        ]);
        if let Some(payload) = payload {
            item.insert("payload_hash".to_owned(), AttributeValue::S(payload.0.clone()));
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(#id) OR #expiration < :now \
                 OR (#status = :in_progress AND #in_progress_expiration < :now_ms)",
            )
            .expression_attribute_names("#id", "id")
            .expression_attribute_names("#expiration", "expiration")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#in_progress_expiration", "in_progress_expiration")
            .expression_attribute_values(":now", AttributeValue::N(now_secs.to_string()))
            .expression_attribute_values(":now_ms", AttributeValue::N(now_ms.to_string()))
            .expression_attribute_values(":in_progress", AttributeValue::S(STATUS_IN_PROGRESS.into()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Acquired(ClaimToken { key: stored_key, token })),
            Err(e) => match dynamo::split("PutItem", e)? {
                PutItemError::ConditionalCheckFailedException(failed) => Self::held(key, payload, failed.item()),
                other => Err(DynamoError::service("PutItem", other).into()),
            },
        }
    }

    /// What the record that refused a claim says.
    fn held(
        key: &str,
        payload: Option<&Fingerprint>,
        old: Option<&HashMap<String, AttributeValue>>,
    ) -> Result<Claim, IdempotencyError> {
        // The condition only fails on an existing item, so `old` is there; were it not, the safe
        // answer is "busy, retry later", never "done".
        let Some(old) = old else { return Ok(Claim::InProgress(InProgress { key: key.to_owned(), until_ms: 0 })) };
        if let (Some(got), Some(stored)) = (payload, dynamo::string(old, "payload_hash"))
            && got.0 != *stored
        {
            tracing::error!(key, stored = %stored, got = %got.0, "idempotency key replayed with another payload; refused");
            return Err(IdempotencyError::PayloadMismatch {
                key: key.to_owned(),
                stored: stored.clone(),
                got: got.0.clone(),
            });
        }
        let status = dynamo::string(old, "status").map(String::as_str);
        match status {
            Some(STATUS_COMPLETED) => Ok(Claim::Completed),
            Some(STATUS_IN_PROGRESS) => {
                let until_ms = dynamo::number::<i64>(old, "in_progress_expiration").unwrap_or(0);
                Ok(Claim::InProgress(InProgress { key: key.to_owned(), until_ms }))
            }
            other => Err(IdempotencyError::Malformed(format!("{key}: status {other:?}"))),
        }
    }

    /// Marks the claimed key COMPLETED, for `expires_after` from now.
    pub async fn complete(&self, claim: &ClaimToken) -> Result<(), IdempotencyError> {
        let expiration = (now_ms() / 1000).saturating_add(self.expires_after.as_secs() as i64);
        self.client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(claim.key.clone()))
            .update_expression("SET #status = :completed, #expiration = :expiration REMOVE #in_progress_expiration")
            .condition_expression("#claim = :token")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#expiration", "expiration")
            .expression_attribute_names("#in_progress_expiration", "in_progress_expiration")
            .expression_attribute_names("#claim", "claim")
            .expression_attribute_values(":completed", AttributeValue::S(STATUS_COMPLETED.into()))
            .expression_attribute_values(":expiration", AttributeValue::N(expiration.to_string()))
            .expression_attribute_values(":token", AttributeValue::S(claim.token.clone()))
            .send()
            .await
            .map_err(|e| match DynamoError::new("UpdateItem", e) {
                e if e.is_conflict() => IdempotencyError::ClaimLost(claim.key.clone()),
                e => e.into(),
            })?;
        Ok(())
    }

    /// Keeps the claim (still INPROGRESS, still this holder's) until `until_ms` instead of
    /// releasing it: for work whose outcome is unknown (a request that timed out after it left),
    /// so no delivery before then processes the key again. After `until_ms` the key is free like
    /// any claim whose holder ran past its deadline.
    pub async fn hold(&self, claim: &ClaimToken, until_ms: i64) -> Result<(), IdempotencyError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(claim.key.clone()))
            .update_expression("SET #in_progress_expiration = :until")
            .condition_expression("#claim = :token AND #status = :in_progress")
            .expression_attribute_names("#in_progress_expiration", "in_progress_expiration")
            .expression_attribute_names("#claim", "claim")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":until", AttributeValue::N(until_ms.to_string()))
            .expression_attribute_values(":token", AttributeValue::S(claim.token.clone()))
            .expression_attribute_values(":in_progress", AttributeValue::S(STATUS_IN_PROGRESS.into()))
            .send()
            .await
            .map_err(|e| match DynamoError::new("UpdateItem", e) {
                e if e.is_conflict() => IdempotencyError::ClaimLost(claim.key.clone()),
                e => e.into(),
            })?;
        Ok(())
    }

    /// Deletes the claim after a failure, so the next delivery processes the key again.
    pub async fn release(&self, claim: &ClaimToken) -> Result<(), IdempotencyError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(claim.key.clone()))
            .condition_expression("#claim = :token")
            .expression_attribute_names("#claim", "claim")
            .expression_attribute_values(":token", AttributeValue::S(claim.token.clone()))
            .send()
            .await
            .map_err(|e| match DynamoError::new("DeleteItem", e) {
                e if e.is_conflict() => IdempotencyError::ClaimLost(claim.key.clone()),
                e => e.into(),
            })?;
        Ok(())
    }

    /// The record's status (`INPROGRESS`/`COMPLETED`), or `None` when there is none. For tests
    /// and operators.
    pub async fn status(&self, key: &str) -> Result<Option<String>, IdempotencyError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(self.stored_key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DynamoError::new("GetItem", e))?;
        Ok(out.item.and_then(|item| dynamo::string(&item, "status").cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn a_refused_claim_reads_the_old_record() {
        let done = item(&[("status", AttributeValue::S(STATUS_COMPLETED.into()))]);
        assert_eq!(IdempotencyStore::held("k", None, Some(&done)).unwrap(), Claim::Completed);

        let busy = item(&[
            ("status", AttributeValue::S(STATUS_IN_PROGRESS.into())),
            ("in_progress_expiration", AttributeValue::N("1700000000123".into())),
        ]);
        assert_eq!(
            IdempotencyStore::held("k", None, Some(&busy)).unwrap(),
            Claim::InProgress(InProgress { key: "k".into(), until_ms: 1_700_000_000_123 })
        );
        // No old item: never reported as done.
        assert!(matches!(IdempotencyStore::held("k", None, None).unwrap(), Claim::InProgress(_)));
        let odd = item(&[("status", AttributeValue::S("DONE".into()))]);
        assert!(matches!(IdempotencyStore::held("k", None, Some(&odd)), Err(IdempotencyError::Malformed(_))));
    }

    #[test]
    fn a_fingerprint_other_than_the_stored_one_is_refused_and_a_record_without_one_is_not_checked() {
        let a = Fingerprint::of(b"a");
        let done_a = item(&[
            ("status", AttributeValue::S(STATUS_COMPLETED.into())),
            ("payload_hash", AttributeValue::S(a.as_str().to_owned())),
        ]);
        assert_eq!(IdempotencyStore::held("k", Some(&a), Some(&done_a)).unwrap(), Claim::Completed);
        let b = Fingerprint::of(b"b");
        assert!(matches!(
            IdempotencyStore::held("k", Some(&b), Some(&done_a)),
            Err(IdempotencyError::PayloadMismatch { key, .. }) if key == "k"
        ));
        let legacy = item(&[("status", AttributeValue::S(STATUS_COMPLETED.into()))]);
        assert_eq!(IdempotencyStore::held("k", Some(&b), Some(&legacy)).unwrap(), Claim::Completed);
        assert!(Claim::Completed.is_replay());
    }

    #[test]
    fn settings_default_to_seven_days() {
        let mut env = EnvReader::from_fn(|k| (k == "IDEMPOTENCY_TABLE").then(|| "t".to_owned()));
        let s = IdempotencySettings::from_env(&mut env);
        assert!(env.finish(()).is_ok());
        assert_eq!((s.table.as_str(), s.expires_after, s.key_prefix.as_str()), ("t", DEFAULT_EXPIRES_AFTER, ""));
        let mut env = EnvReader::from_pairs(&[("IDEMPOTENCY_TABLE", "t"), ("IDEMPOTENCY_KEY_PREFIX", "shop/v1:")]);
        assert_eq!(IdempotencySettings::from_env(&mut env).key_prefix, "shop/v1:");
        assert!(env.finish(()).is_ok());
        let mut env = EnvReader::from_pairs(&[("IDEMPOTENCY_TABLE", "t"), ("IDEMPOTENCY_KEY_PREFIX", "é")]);
        IdempotencySettings::from_env(&mut env);
        assert!(env.finish(()).is_err());
        let mut env = EnvReader::from_fn(|_| None);
        IdempotencySettings::from_env(&mut env);
        assert!(env.finish(()).is_err());
    }
}
