//! How a failed outbound call reaches HTTP: 504 when the upstream took too long, 502 for every
//! other upstream failure, with the upstream's status and the start of its body (at most 200
//! characters, already cut by `outbound`) so the caller can see what the other side said.
//! The upstream's URL stays in the log: it may name an internal host.

use http::StatusCode;
use http::header::{self, HeaderValue};

use crate::http::Problem;
use crate::outbound::{OutboundError, OutboundErrorKind};

impl From<OutboundError> for Problem {
    fn from(e: OutboundError) -> Self {
        tracing::warn!(error = %e, "outbound call failed");
        match e.kind {
            OutboundErrorKind::Timeout => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream-timeout",
                "Upstream timeout",
                "an upstream service did not answer in time; it is safe to retry",
            ),
            OutboundErrorKind::Status { status, body, retry_after } => {
                let detail = if body.is_empty() {
                    format!("an upstream service answered {}", status.as_u16())
                } else {
                    format!("an upstream service answered {}: {body}", status.as_u16())
                };
                let problem = Problem::new(StatusCode::BAD_GATEWAY, "upstream-error", "Upstream error", detail)
                    .with_extra(serde_json::json!({ "upstreamStatus": status.as_u16() }));
                match retry_after.map(|d| HeaderValue::from(d.as_secs().max(1))) {
                    Some(value) => problem.with_header(header::RETRY_AFTER, value),
                    None => problem,
                }
            }
            OutboundErrorKind::Connect(_) | OutboundErrorKind::Transport(_) => Problem::new(
                StatusCode::BAD_GATEWAY,
                "upstream-unreachable",
                "Upstream error",
                "an upstream service could not be reached or sent an unreadable answer",
            ),
            OutboundErrorKind::InvalidRequest(_) => Problem::internal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn error(kind: OutboundErrorKind) -> OutboundError {
        OutboundError { target: "https://api.example.com/emails".into(), attempts: 3, kind }
    }

    #[test]
    fn timeouts_are_504_and_upstream_answers_are_502_with_status_and_body() {
        assert_eq!(Problem::from(error(OutboundErrorKind::Timeout)).status, StatusCode::GATEWAY_TIMEOUT);

        let p = Problem::from(error(OutboundErrorKind::Status {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: "x".repeat(200),
            retry_after: None,
        }));
        assert_eq!(p.status, StatusCode::BAD_GATEWAY);
        assert!(p.detail.contains("422"), "{}", p.detail);
        assert!(p.detail.ends_with(&"x".repeat(200)), "{}", p.detail);
        assert_eq!(p.extra.unwrap()["upstreamStatus"], 422);
        assert!(!p.detail.contains("api.example.com"));

        let p = Problem::from(error(OutboundErrorKind::Status {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: String::new(),
            retry_after: Some(Duration::from_secs(7)),
        }));
        assert_eq!(p.status, StatusCode::BAD_GATEWAY);
        assert_eq!(p.to_response().headers()[header::RETRY_AFTER], "7");

        let p = Problem::from(error(OutboundErrorKind::Connect("refused".into())));
        assert_eq!(p.status, StatusCode::BAD_GATEWAY);
        assert_eq!(Problem::from(error(OutboundErrorKind::InvalidRequest("bad".into()))).status, 500);
    }
}
