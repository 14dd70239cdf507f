//! What every DynamoDB store needs and would otherwise copy: one typed error that keeps the SDK's
//! error as its source and says what the caller can do about it, and the attribute getters.
//!
//! The kind decides the caller's answer: `Transient` (throttling, timeouts, a dropped
//! connection, a 5xx) is worth a retry or a 503; `Conflict` is a failed condition, which every
//! conditional write reads as "someone else got there first"; `Permanent` (validation, a missing
//! table, access denied, an item we cannot read) will fail the same way again.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

/// One DynamoDB item as the SDK returns it.
pub type Item = HashMap<String, AttributeValue>;

/// Whether a failed call is worth repeating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DynamoErrorKind {
    /// Throttled, timed out, unreachable or a 5xx: the same call may succeed shortly.
    Transient,
    /// Refused for good: a bad request, a missing table, no permission, an unreadable item.
    Permanent,
    /// A `ConditionExpression` was false.
    Conflict,
}

/// A failed DynamoDB call: the operation, its kind, and the SDK's error as the source.
#[derive(Debug)]
pub struct DynamoError {
    /// The SDK operation that failed (`PutItem`, `Query`, ...).
    pub operation: &'static str,
    /// Whether a retry may help.
    pub kind: DynamoErrorKind,
    /// The service's error code (`ProvisionedThroughputExceededException`, ...), when it sent one.
    pub code: Option<String>,
    source: Box<dyn StdError + Send + Sync>,
}

/// Error codes DynamoDB documents as retryable.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    "LimitExceededException",
];

impl DynamoError {
    /// Classifies a failed SDK call.
    pub fn new<E>(operation: &'static str, error: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        match split(operation, error) {
            Ok(service) => Self::service(operation, service),
            Err(e) => e,
        }
    }

    /// Classifies a modeled service error by its code.
    pub fn service<E>(operation: &'static str, error: E) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let code = error.code().map(str::to_owned);
        let kind = match code.as_deref() {
            Some("ConditionalCheckFailedException") => DynamoErrorKind::Conflict,
            Some(c) if TRANSIENT_CODES.contains(&c) => DynamoErrorKind::Transient,
            _ => DynamoErrorKind::Permanent,
        };
        Self { operation, kind, code, source: Box::new(error) }
    }

    /// An item the call returned that cannot be read (a missing attribute, a wrong type).
    pub fn malformed(operation: &'static str, what: impl Into<String>) -> Self {
        Self { operation, kind: DynamoErrorKind::Permanent, code: None, source: what.into().into() }
    }

    /// Throttled, timed out, unreachable or a 5xx: worth a retry or a 503.
    pub fn is_transient(&self) -> bool {
        self.kind == DynamoErrorKind::Transient
    }

    /// A `ConditionExpression` was false: someone else got there first.
    pub fn is_conflict(&self) -> bool {
        self.kind == DynamoErrorKind::Conflict
    }
}

/// The modeled service error of a failed call, for callers that read its fields (a failed
/// condition's item), or a [`DynamoError`] for everything that is not one: a timeout, a dispatch
/// failure or an unreadable response (transient), a request that could not be built (permanent).
pub fn split<E>(
    operation: &'static str,
    error: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> Result<E, DynamoError>
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let kind = match error {
        SdkError::ServiceError(service) => return Ok(service.into_err()),
        SdkError::ConstructionFailure(_) => DynamoErrorKind::Permanent,
        _ => DynamoErrorKind::Transient,
    };
    Err(DynamoError { operation, kind, code: None, source: Box::new(error) })
}

impl fmt::Display for DynamoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DynamoErrorKind::Transient => "transient",
            DynamoErrorKind::Permanent => "permanent",
            DynamoErrorKind::Conflict => "condition failed",
        };
        // The SDK's own Display says little ("service error"); the context walks its chain.
        write!(
            f,
            "DynamoDB {} failed ({kind}): {}",
            self.operation,
            aws_sdk_dynamodb::error::DisplayErrorContext(&*self.source)
        )
    }
}

impl StdError for DynamoError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

/// The string attribute `name`, if the item has one.
pub fn string<'a>(item: &'a Item, name: &str) -> Option<&'a String> {
    item.get(name).and_then(|v| v.as_s().ok())
}

/// The number attribute `name` parsed as `T`, if the item has one that parses.
pub fn number<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
}

/// The boolean attribute `name`, if the item has one.
pub fn boolean(item: &Item, name: &str) -> Option<bool> {
    item.get(name).and_then(|v| v.as_bool().ok()).copied()
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_sdk_dynamodb::types::error::{ConditionalCheckFailedException, ProvisionedThroughputExceededException};

    use super::*;

    #[test]
    fn codes_decide_the_kind_and_the_source_is_kept() {
        // As the SDK builds them from a response: the code comes from the error's metadata.
        let meta = |code: &str| ErrorMetadata::builder().code(code).message("from the service").build();
        let conflict = PutItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder().meta(meta("ConditionalCheckFailedException")).build(),
        );
        let e = DynamoError::service("PutItem", conflict);
        assert!(e.is_conflict());
        assert!(e.source().is_some());

        let throttled = PutItemError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .meta(meta("ProvisionedThroughputExceededException"))
                .build(),
        );
        let e = DynamoError::service("PutItem", throttled);
        assert!(e.is_transient(), "{e}");
        assert!(e.to_string().contains("PutItem"), "{e}");

        let e = DynamoError::malformed("GetItem", "missing string attribute id");
        assert_eq!(e.kind, DynamoErrorKind::Permanent);
        assert!(e.to_string().contains("missing string attribute id"), "{e}");
    }

    #[test]
    fn getters_read_only_the_right_type() {
        let item = Item::from([
            ("s".to_owned(), AttributeValue::S("text".into())),
            ("n".to_owned(), AttributeValue::N("42".into())),
            ("b".to_owned(), AttributeValue::Bool(true)),
        ]);
        assert_eq!(string(&item, "s").map(String::as_str), Some("text"));
        assert_eq!(string(&item, "n"), None);
        assert_eq!(number::<u64>(&item, "n"), Some(42));
        assert_eq!(number::<u64>(&item, "s"), None);
        assert_eq!(boolean(&item, "b"), Some(true));
        assert_eq!(boolean(&item, "missing"), None);
    }
}
