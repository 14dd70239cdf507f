//! The refusals every caller of the payments feature agrees on: each refusal of a delivery's
//! signature, and an event that is not one, is a 400 with a title precise enough to fix the
//! sender. Which failures on our side Stripe should retry is the webhook's own policy
//! (`functions/stripe-webhook/src/error.rs`).

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

#[cfg(test)]
mod tests {
    use http::StatusCode;

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
}
