//! How the token layer's errors reach HTTP.
//!
//! Every refusal of a refresh token (missing, malformed, unknown, expired, revoked, rotated, reused)
//! is the same 401 with the same body, byte for byte, so the answer is no oracle for which tokens
//! exist or what happened to them; the reason goes to the log. A user over the refresh rate limit
//! gets 429 with `Retry-After`. A store that cannot answer is a 503: no token is ever accepted
//! without the store (fail closed).

use http::StatusCode;
use http::header::{self, HeaderValue};

use crate::auth::oidc::IdTokenError;
use crate::auth::refresh::{RefreshError, Rejection, SessionError};
use crate::http::Problem;

/// The one 401 for a refresh token that cannot be used. No `WWW-Authenticate`: the refresh token
/// travels in a cookie or a JSON body, not in `Authorization`, and a Bearer challenge here would tell
/// clients their *access* token is bad.
fn refresh_refused() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid-refresh-token",
        "Unauthorized",
        "the refresh token is missing, invalid, expired or revoked; sign in again",
    )
}

impl From<RefreshError> for Problem {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Rejected(reason) => {
                match reason {
                    // Reuse and forgery are what theft and probing look like: worth an operator's attention.
                    Rejection::Reused | Rejection::Forged => tracing::warn!(?reason, "refresh token refused"),
                    _ => tracing::info!(?reason, "refresh token refused"),
                }
                refresh_refused()
            }
            RefreshError::RateLimited { retry_after } => {
                let secs = retry_after.as_millis().div_ceil(1000).max(1);
                tracing::warn!(retry_after_secs = secs as u64, "refresh rate limit reached");
                Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too-many-refreshes",
                    "Too many requests",
                    "this account refreshed its session too often; retry after the delay in Retry-After",
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from(secs as u64))
            }
            RefreshError::Unavailable(e) => {
                tracing::error!(error = %e, "session store unavailable");
                Problem::unavailable("the session store did not answer; retry shortly")
            }
            e @ (RefreshError::Store(_) | RefreshError::Reply(_) | RefreshError::Random) => {
                tracing::error!(error = %e, "session store failed");
                Problem::internal()
            }
        }
    }
}

impl From<SessionError> for Problem {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Refresh(e) => e.into(),
            SessionError::Access(e) => {
                tracing::error!(error = %e, "access token could not be minted");
                Problem::internal()
            }
        }
    }
}

/// The one 401 of `POST /auth/session` for every ID token that cannot be used (forged, tampered,
/// expired, another audience or issuer, a refused algorithm, an unknown key, no subject): the
/// reason goes to the log, never to the caller.
pub fn id_token_refused() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid-id-token",
        "Unauthorized",
        "the ID token is not valid for this application; sign in with the identity provider again",
    )
}

/// How long a client waits before it retries a sign-in the issuer's keys were unavailable for.
pub const ISSUER_RETRY_AFTER_SECS: u64 = 5;

impl From<IdTokenError> for Problem {
    fn from(e: IdTokenError) -> Self {
        match e {
            IdTokenError::Rejected(reason) => {
                tracing::info!(?reason, "ID token refused");
                id_token_refused()
            }
            e @ (IdTokenError::Unavailable(_) | IdTokenError::Unusable { .. }) => {
                tracing::error!(error = %e, "the issuer's keys are unavailable");
                Problem::unavailable("the identity provider's keys could not be fetched; retry shortly")
                    .with_header(header::RETRY_AFTER, HeaderValue::from(ISSUER_RETRY_AFTER_SECS))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::RedisStoreError;
    use lambda_http::Body;

    fn body(p: Problem) -> (u16, String) {
        let r = p.to_response();
        let Body::Text(text) = r.body() else { panic!("text body") };
        (r.status().as_u16(), text.clone())
    }

    #[test]
    fn every_rejection_is_the_same_401() {
        let reasons = [
            Rejection::Missing,
            Rejection::Malformed,
            Rejection::Forged,
            Rejection::Unknown,
            Rejection::Expired,
            Rejection::Reused,
        ];
        let bodies: Vec<_> = reasons.iter().map(|r| body(RefreshError::Rejected(*r).into())).collect();
        assert_eq!(bodies[0].0, 401);
        assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    }

    #[test]
    fn every_id_token_rejection_is_the_same_401_and_an_issuer_outage_503() {
        use crate::auth::oidc::IdRejection::*;
        let reasons = [Malformed, Algorithm, UnknownKey, Signature, Issuer, Audience, Expired, Time, Subject];
        let bodies: Vec<_> = reasons.iter().map(|r| body(IdTokenError::Rejected(*r).into())).collect();
        assert_eq!(bodies[0].0, 401);
        assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
        let outage = IdTokenError::Unusable { what: "key set", reason: "not JSON".into() };
        let r = Problem::from(outage).to_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
    }

    #[test]
    fn over_the_rate_limit_is_429_with_retry_after_rounded_up() {
        let limited = RefreshError::RateLimited { retry_after: std::time::Duration::from_millis(4200) };
        let r = Problem::from(limited).to_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        assert_eq!(r.headers()[header::CONTENT_TYPE], crate::http::PROBLEM_JSON);
    }

    #[test]
    fn an_unreachable_store_is_503_and_a_broken_one_500() {
        let down = RefreshError::Unavailable(RedisStoreError::Unavailable { reason: "refused", source: None });
        let p: Problem = SessionError::Refresh(down).into();
        assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE);
        let p: Problem = RefreshError::Reply("what".into()).into();
        assert_eq!(p.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
