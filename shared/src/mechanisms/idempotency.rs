//! Exactly-once processing of at-least-once deliveries, with the semantics of Powertools for AWS
//! Lambda's idempotency utility, over one DynamoDB table.
//!
//! A record per key: `id` (the key: a Stripe event id, an email job's idempotency key, ...),
//! `status` INPROGRESS | COMPLETED, `expiration` (epoch seconds; the table's TTL attribute) and
//! `in_progress_expiration` (epoch milliseconds: the Lambda deadline of the invocation that holds
//! the claim). The flow is claim → process → [`complete`](IdempotencyStore::complete), or
//! [`release`](IdempotencyStore::release) when processing failed, so the next delivery processes again.
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
//! over from it.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use crate::clients::dynamo::{self, DynamoError};
use crate::clock::now_ms;
use crate::config::EnvReader;

/// `status` of a record whose claim is held: the work is running (or its holder died).
pub const STATUS_IN_PROGRESS: &str = "INPROGRESS";
/// `status` of a record whose work is done: later deliveries are duplicates.
pub const STATUS_COMPLETED: &str = "COMPLETED";
/// How long a record keeps a key from being processed again, unless configured: Stripe retries for
/// three days, Powertools keeps records for one hour; seven days covers every retry with margin.
pub const DEFAULT_EXPIRES_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest key accepted (DynamoDB allows 2048 bytes for a partition key).
pub const MAX_KEY_BYTES: usize = 1024;

/// The idempotency table and how long its records last.
#[derive(Clone, Debug)]
pub struct IdempotencySettings {
    /// The DynamoDB table (`IDEMPOTENCY_TABLE`), key `id`.
    pub table: String,
    /// How long a record keeps its key from being processed again (`IDEMPOTENCY_EXPIRES_AFTER_SECS`).
    pub expires_after: Duration,
}

impl IdempotencySettings {
    /// `IDEMPOTENCY_TABLE` (required) and `IDEMPOTENCY_EXPIRES_AFTER_SECS` (60 s to 90 days,
    /// default 7 days).
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        Self {
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
    key: String,
    token: String,
}

impl ClaimToken {
    /// The idempotency key claimed.
    pub fn key(&self) -> &str {
        &self.key
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
}

/// Claim / complete / release over the idempotency table.
#[derive(Clone, Debug)]
pub struct IdempotencyStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    expires_after: Duration,
}

impl IdempotencyStore {
    /// Records in `settings.table`, expiring after `settings.expires_after`.
    pub fn new(client: aws_sdk_dynamodb::Client, settings: &IdempotencySettings) -> Self {
        Self { client, table: settings.table.clone(), expires_after: settings.expires_after }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Claims `key` until `in_progress_until_ms` (the invocation's deadline, epoch ms).
    pub async fn claim(&self, key: &str, in_progress_until_ms: i64) -> Result<Claim, IdempotencyError> {
        self.claim_at(key, now_ms(), in_progress_until_ms).await
    }

    /// [`claim`](Self::claim) with the current time given, in epoch ms.
    pub async fn claim_at(&self, key: &str, now_ms: i64, in_progress_until_ms: i64) -> Result<Claim, IdempotencyError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(IdempotencyError::InvalidKey);
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let now_secs = now_ms.div_euclid(1000);
        let expiration = now_secs.saturating_add(self.expires_after.as_secs() as i64);
        let item = HashMap::from([
            ("id".to_owned(), AttributeValue::S(key.to_owned())),
            ("status".to_owned(), AttributeValue::S(STATUS_IN_PROGRESS.into())),
            ("expiration".to_owned(), AttributeValue::N(expiration.to_string())),
            ("in_progress_expiration".to_owned(), AttributeValue::N(in_progress_until_ms.to_string())),
            ("claim".to_owned(), AttributeValue::S(token.clone())),
        ]);
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
            Ok(_) => Ok(Claim::Acquired(ClaimToken { key: key.to_owned(), token })),
            Err(e) => match dynamo::split("PutItem", e)? {
                PutItemError::ConditionalCheckFailedException(failed) => Self::held(key, failed.item()),
                other => Err(DynamoError::service("PutItem", other).into()),
            },
        }
    }

    /// What the record that refused a claim says.
    fn held(key: &str, old: Option<&HashMap<String, AttributeValue>>) -> Result<Claim, IdempotencyError> {
        // The condition only fails on an existing item, so `old` is there; were it not, the safe
        // answer is "busy, retry later", never "done".
        let Some(old) = old else { return Ok(Claim::InProgress(InProgress { key: key.to_owned(), until_ms: 0 })) };
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
            .key("id", AttributeValue::S(key.to_owned()))
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
        assert_eq!(IdempotencyStore::held("k", Some(&done)).unwrap(), Claim::Completed);

        let busy = item(&[
            ("status", AttributeValue::S(STATUS_IN_PROGRESS.into())),
            ("in_progress_expiration", AttributeValue::N("1700000000123".into())),
        ]);
        assert_eq!(
            IdempotencyStore::held("k", Some(&busy)).unwrap(),
            Claim::InProgress(InProgress { key: "k".into(), until_ms: 1_700_000_000_123 })
        );
        // No old item: never reported as done.
        assert!(matches!(IdempotencyStore::held("k", None).unwrap(), Claim::InProgress(_)));
        let odd = item(&[("status", AttributeValue::S("DONE".into()))]);
        assert!(matches!(IdempotencyStore::held("k", Some(&odd)), Err(IdempotencyError::Malformed(_))));
    }

    #[test]
    fn settings_default_to_seven_days() {
        let mut env = EnvReader::from_fn(|k| (k == "IDEMPOTENCY_TABLE").then(|| "t".to_owned()));
        let s = IdempotencySettings::from_env(&mut env);
        assert!(env.finish(()).is_ok());
        assert_eq!((s.table.as_str(), s.expires_after), ("t", DEFAULT_EXPIRES_AFTER));
        let mut env = EnvReader::from_fn(|_| None);
        IdempotencySettings::from_env(&mut env);
        assert!(env.finish(()).is_err());
    }
}
