//! The caller of an API request: `Authorization: Bearer <access token>` checked against the
//! access-token keys, or a 401 problem with the RFC 6750 challenge.

use http::StatusCode;
use http::header::{self, HeaderValue};
use lambda_http::Request;

use super::{AccessClaims, AccessTokenError, AccessTokens, UserId};
use crate::http::Problem;

/// 401 with the `WWW-Authenticate` challenge of RFC 6750.
pub fn unauthorized(error: &'static str, detail: &'static str) -> Problem {
    let challenge = format!(r#"Bearer realm="api", error="{error}""#);
    Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
    )
}

/// The claims of a valid `Authorization: Bearer <access token>`, or a 401 problem.
pub fn authenticate(tokens: &AccessTokens, req: &Request) -> Result<AccessClaims, Problem> {
    let raw = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("invalid_request", "an Authorization: Bearer access token is required"))?;
    let token = raw
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("invalid_request", "the Authorization header must be 'Bearer <token>'"))?;
    tokens.verify(token).map_err(|e| match e {
        AccessTokenError::Expired => unauthorized("invalid_token", "the access token has expired"),
        _ => unauthorized("invalid_token", "the access token is invalid"),
    })
}

/// The user a valid bearer token names, or a 401 problem: what every function that acts for a
/// caller needs. (`authenticate` accepts only tokens whose subject is a valid user id; the check
/// here is what turns the claims into the typed id.)
pub fn bearer_user(tokens: &AccessTokens, req: &Request) -> Result<UserId, Problem> {
    let claims = authenticate(tokens, req)?;
    claims.user_id().map_err(|_| unauthorized("invalid_token", "the access token is invalid"))
}
