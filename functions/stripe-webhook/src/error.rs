//! This function's retry policy, in one place: Stripe retries every non-2xx answer for days, so
//! the status of each failure decides whether Stripe comes back.
//!
//! - a delivery we refuse (signature, body, method) is a precise 4xx: retrying will not help;
//! - an event another delivery is processing is 409 with `Retry-After`: come back when it is done;
//! - an event id already seen with another payload is 409 `event-payload-mismatch` without
//!   `Retry-After`, and an error in the log: a replay with a changed body is never acknowledged;
//! - a store that did not answer is 503, a thin event the Stripe API would not give is 502/504
//!   (503 without `STRIPE_API_KEY`), anything else that failed after the claim is 500: the
//!   claim was released, and the retry does the work again.
//!
//! Acknowledged-but-not-retried outcomes (an order that does not exist, a payment that does not
//! match) are not errors at all: the handler answers 200 and logs them.

use lambda_http::http::StatusCode;
use lambda_http::http::header::{self, HeaderValue};
use shared::email::EmailQueueError;
use shared::http::Problem;
use shared::idempotency::{IdempotencyError, InProgress};
use shared::payments::{InvalidEvent, OrdersError, SignatureError, StripeApiError};

/// Why a delivery was not answered 200.
#[derive(Debug)]
pub enum WebhookError {
    /// The delivery itself is refused (4xx); the problem says why.
    Refused(Problem),
    /// Another delivery holds the event's claim.
    InProgress(InProgress),
    /// The idempotency table failed or refused the key.
    Idempotency(IdempotencyError),
    /// The orders or subscriptions table failed after the claim.
    Orders(OrdersError),
    /// The confirmation email could not be queued after the order was paid.
    EmailQueue(Box<EmailQueueError>),
    /// A thin event could not be fetched from the Stripe API (after the claim: released).
    StripeApi(StripeApiError),
    /// Something of ours failed after the claim (logged where it happened).
    Internal,
}

impl From<StripeApiError> for WebhookError {
    fn from(e: StripeApiError) -> Self {
        Self::StripeApi(e)
    }
}

impl From<Problem> for WebhookError {
    fn from(p: Problem) -> Self {
        Self::Refused(p)
    }
}

impl From<SignatureError> for WebhookError {
    fn from(e: SignatureError) -> Self {
        Self::Refused(e.into())
    }
}

impl From<InvalidEvent> for WebhookError {
    fn from(e: InvalidEvent) -> Self {
        Self::Refused(e.into())
    }
}

impl From<InProgress> for WebhookError {
    fn from(e: InProgress) -> Self {
        Self::InProgress(e)
    }
}

impl From<IdempotencyError> for WebhookError {
    fn from(e: IdempotencyError) -> Self {
        Self::Idempotency(e)
    }
}

impl From<OrdersError> for WebhookError {
    fn from(e: OrdersError) -> Self {
        Self::Orders(e)
    }
}

impl From<EmailQueueError> for WebhookError {
    fn from(e: EmailQueueError) -> Self {
        Self::EmailQueue(Box::new(e))
    }
}

impl From<WebhookError> for Problem {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Refused(problem) => problem,
            WebhookError::InProgress(held) => Problem::new(
                StatusCode::CONFLICT,
                "in-progress",
                "Event in progress",
                "this event is being processed by another delivery; retry later",
            )
            .with_extra(serde_json::json!({ "key": held.key }))
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("5")),
            WebhookError::Idempotency(IdempotencyError::PayloadMismatch { key, .. }) => {
                // Logged as an error where it was found (shared::idempotency); never acknowledged.
                Problem::new(
                    StatusCode::CONFLICT,
                    "event-payload-mismatch",
                    "Event replayed with another payload",
                    "this event id was processed with a different payload; the delivery is refused",
                )
                .with_extra(serde_json::json!({ "key": key }))
            }
            WebhookError::Idempotency(e) => {
                tracing::error!(error = %e, "idempotency store failed");
                match e {
                    IdempotencyError::Store(_) => {
                        Problem::unavailable("the idempotency store did not answer; retry shortly")
                    }
                    IdempotencyError::InvalidKey => {
                        Problem::bad_request("invalid-key", "Invalid idempotency key", e.to_string())
                    }
                    IdempotencyError::Malformed(_)
                    | IdempotencyError::ClaimLost(_)
                    | IdempotencyError::PayloadMismatch { .. } => Problem::internal(),
                }
            }
            WebhookError::Orders(e) => {
                tracing::error!(error = %e, "orders store failed");
                Problem::internal()
            }
            WebhookError::EmailQueue(e) => {
                tracing::error!(error = %e, "email queue failed");
                Problem::internal()
            }
            WebhookError::StripeApi(e) => {
                tracing::error!(error = %e, "could not fetch the thin event from the Stripe API");
                match e {
                    // 502/504 with the upstream status: Stripe delivers again later.
                    StripeApiError::Outbound(e) => e.into(),
                    StripeApiError::NotConfigured => {
                        Problem::unavailable("thin events need STRIPE_API_KEY; this delivery is retried")
                    }
                    StripeApiError::Unexpected(_) => Problem::new(
                        StatusCode::BAD_GATEWAY,
                        "upstream-unexpected",
                        "Unexpected upstream answer",
                        "the Stripe API answered something other than the event or object asked for",
                    ),
                }
            }
            WebhookError::Internal => Problem::internal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_progress_is_409_with_retry_after() {
        let p = Problem::from(WebhookError::from(InProgress { key: "evt_1".into(), until_ms: 1 }));
        assert_eq!(p.status, StatusCode::CONFLICT);
        assert!(p.headers.iter().any(|(n, _)| n == header::RETRY_AFTER));
    }

    #[test]
    fn failures_after_the_claim_are_5xx_so_stripe_retries() {
        let store = shared::clients::DynamoError::malformed("GetItem", "x");
        assert_eq!(Problem::from(WebhookError::from(IdempotencyError::Store(store))).status, 503);
        assert_eq!(Problem::from(WebhookError::from(OrdersError::Malformed("x".into()))).status, 500);
        assert_eq!(Problem::from(WebhookError::Internal).status, 500);
        let refused = Problem::from(WebhookError::from(SignatureError::NoMatch));
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    }
}
