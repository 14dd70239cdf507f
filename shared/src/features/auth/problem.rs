//! How the token layer's errors reach HTTP.
//!
//! Every refusal of a refresh token (missing, malformed, unknown, expired, revoked, rotated, reused)
//! is the same 401 with the same body, byte for byte, so the answer is no oracle for which tokens
//! exist or what happened to them; the reason goes to the log. A store that cannot answer is a 503:
//! no token is ever accepted without the store (fail closed).

use http::StatusCode;

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
                    // Reuse is what a stolen token looks like: worth an operator's attention.
                    Rejection::Reused => tracing::warn!(?reason, "refresh token refused"),
                    _ => tracing::info!(?reason, "refresh token refused"),
                }
                refresh_refused()
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
            Rejection::Unknown,
            Rejection::RotatedWithinGrace,
            Rejection::Reused,
        ];
        let bodies: Vec<_> = reasons.iter().map(|r| body(RefreshError::Rejected(*r).into())).collect();
        assert_eq!(bodies[0].0, 401);
        assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
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
