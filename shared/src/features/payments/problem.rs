//! How the webhook layers' errors reach HTTP.
//!
//! Every refusal of a delivery's signature is a 400 with a title precise enough to fix the sender;
//! failures on our side are 5xx (Stripe retries every non-2xx answer, for days).

use http::StatusCode;
use http::header::{self, HeaderValue};

use crate::http::Problem;
use crate::payments::SignatureError;

impl From<SignatureError> for Problem {
    fn from(e: SignatureError) -> Self {
        let detail = e.to_string();
        let (kind, title) = match e {
            SignatureError::MissingHeader => ("missing-signature", "Missing Stripe-Signature header"),
            SignatureError::Malformed(_) => ("malformed-signature", "Malformed Stripe-Signature header"),
            SignatureError::NoV1Signature => ("no-v1-signature", "No v1 signature in Stripe-Signature"),
            SignatureError::BadHex => ("invalid-signature-encoding", "Signature is not lowercase hex"),
            SignatureError::NoMatch => ("signature-mismatch", "Signature does not match"),
            SignatureError::Stale { .. } => ("stale-timestamp", "Timestamp outside the tolerance"),
        };
        Problem::bad_request(kind, title, detail)
    }
}

impl From<crate::payments::InvalidEvent> for Problem {
    fn from(e: crate::payments::InvalidEvent) -> Self {
        Problem::bad_request("invalid-event", "Invalid event", e.0)
    }
}

/// Another invocation holds the event: 409, so Stripe retries after it has finished (or lapsed).
impl From<crate::idempotency::InProgress> for Problem {
    fn from(e: crate::idempotency::InProgress) -> Self {
        Problem::new(
            StatusCode::CONFLICT,
            "in-progress",
            "Event in progress",
            "this event is being processed by another delivery; retry later",
        )
        .with_extra(serde_json::json!({ "key": e.key }))
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
    }
}

impl From<crate::idempotency::IdempotencyError> for Problem {
    fn from(e: crate::idempotency::IdempotencyError) -> Self {
        use crate::idempotency::IdempotencyError as E;
        tracing::error!(error = %e, "idempotency store failed");
        match e {
            E::Store(_) => Problem::unavailable("the idempotency store did not answer; retry shortly"),
            E::InvalidKey => Problem::bad_request("invalid-key", "Invalid idempotency key", e.to_string()),
            E::Malformed(_) | E::ClaimLost(_) => Problem::internal(),
        }
    }
}

/// Processing failed after the claim: the claim is released and Stripe retries on the 500.
impl From<crate::payments::OrdersError> for Problem {
    fn from(e: crate::payments::OrdersError) -> Self {
        tracing::error!(error = %e, "orders store failed");
        Problem::internal()
    }
}

impl From<crate::email::EmailQueueError> for Problem {
    fn from(e: crate::email::EmailQueueError) -> Self {
        tracing::error!(error = %e, "email queue failed");
        Problem::internal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_refusals_are_precise_400s() {
        let kinds: Vec<_> = [
            SignatureError::MissingHeader,
            SignatureError::Malformed("x"),
            SignatureError::NoV1Signature,
            SignatureError::BadHex,
            SignatureError::NoMatch,
            SignatureError::Stale { age_secs: 400, tolerance_secs: 300 },
        ]
        .into_iter()
        .map(|e| {
            let p = Problem::from(e);
            assert_eq!(p.status, StatusCode::BAD_REQUEST);
            p.kind
        })
        .collect();
        let mut unique = kinds.clone();
        unique.dedup();
        assert_eq!(unique.len(), kinds.len(), "each refusal has its own type");
        let p = Problem::from(SignatureError::Stale { age_secs: 400, tolerance_secs: 300 });
        assert!(p.detail.contains("400 s ago"), "{}", p.detail);
    }

    #[test]
    fn in_progress_is_409_with_retry_after() {
        let p = Problem::from(crate::idempotency::InProgress { key: "evt_1".into(), until_ms: 1 });
        assert_eq!(p.status, StatusCode::CONFLICT);
        assert!(p.headers.iter().any(|(n, _)| n == header::RETRY_AFTER));
    }
}
