//! Request in, refresh token out of the cookie or the body, session service, response out.
//!
//! Contract (API Gateway HTTP API, payload 2.0):
//! - `POST /auth/refresh`: token from the body `{"refreshToken": "..."}` if it has one, else from
//!   the `refresh_token` cookie → 200 `{accessToken, tokenType, expiresIn, refreshToken}` and the
//!   rotated cookie. Any token that cannot be used → the one 401 of `shared::http`.
//! - `POST /auth/logout`: revokes the token's session → 204 and a cleared cookie, also when the
//!   token was already useless (RFC 7009 §2.2: there is nothing a client could do with an error).
//!   No token at all → 401.
//! - `POST /auth/logout-all` with `Authorization: Bearer <access token>` → 204, every session of the
//!   user revoked, cookie cleared.
//! - Redis unavailable → 503 on all three: nothing is accepted or reported revoked without the store.

use std::sync::Arc;

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use shared::auth::access::AccessTokens;
use shared::auth::{self, RefreshError, RefreshTokenStore, Rejection, Session, Sessions};
use shared::clients::{RedisStore, RedisStoreError};
use shared::http::{self, Cors, Problem, Route, Routes};

use crate::settings::Settings;

pub const COOKIE: &str = "refresh_token";
/// The cookie is sent to the auth routes only, never to the rest of the API.
pub const COOKIE_PATH: &str = "/auth";
/// A token body is ~150 bytes; anything far larger is not one.
pub const MAX_BODY_BYTES: usize = 4096;

/// Built once per execution environment.
#[derive(Clone, Debug)]
pub struct State {
    pub sessions: Sessions,
    pub cors: Cors,
}

impl State {
    pub fn new(settings: &Settings) -> Result<Self, RedisStoreError> {
        let redis = Arc::new(RedisStore::new(settings.redis.clone())?);
        let store = RefreshTokenStore::new(redis, settings.refresh.clone());
        Ok(Self { sessions: Sessions::new(store, AccessTokens::new(&settings.access)), cors: settings.cors.clone() })
    }
}

impl shared::runtime::Function for State {
    type Settings = Settings;

    async fn init(settings: &Settings) -> Result<Self, lambda_http::Error> {
        Ok(Self::new(settings)?)
    }
}

pub async fn handle(state: &State, req: Request) -> Response<Body> {
    http::respond(&state.cors, req, |req| route(state, req)).await
}

/// What auth-refresh serves (`template.yaml` declares the same routes; `tools/e2e` checks it).
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Refresh,
    Logout,
    LogoutAll,
}

pub const ROUTES: Routes<Op> = Routes(&[
    Route { method: Method::POST, path: "/auth/refresh", op: Op::Refresh },
    Route { method: Method::POST, path: "/auth/logout", op: Op::Logout },
    Route { method: Method::POST, path: "/auth/logout-all", op: Op::LogoutAll },
]);

async fn route(state: &State, req: Request) -> Result<Response<Body>, Problem> {
    match ROUTES.find(&req)?.op {
        Op::Refresh => refresh(state, &req).await,
        Op::Logout => logout(state, &req).await,
        Op::LogoutAll => logout_all(state, &req).await,
    }
}

/// The optional JSON body. Unknown members are refused so that a typo (`refresh_token`) is a 400
/// instead of a silent fall-back to the cookie.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TokenBody {
    refresh_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: &'a str,
}

/// The refresh token of the request: the body's when it has one (API clients), else the cookie's
/// (browsers). An empty body is no body, whatever its content type says.
fn presented_token(req: &Request) -> Result<Option<String>, Problem> {
    if !http::body_bytes(req).iter().all(u8::is_ascii_whitespace) {
        let body: TokenBody = http::json_body(req, MAX_BODY_BYTES)?;
        if let Some(token) = body.refresh_token.filter(|t| !t.is_empty()) {
            return Ok(Some(token));
        }
    }
    Ok(http::cookie(req, COOKIE).filter(|t| !t.is_empty()).map(str::to_owned))
}

fn missing() -> Problem {
    RefreshError::Rejected(Rejection::Missing).into()
}

fn no_store(response: &mut Response<Body>) {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn refresh(state: &State, req: &Request) -> Result<Response<Body>, Problem> {
    let presented = presented_token(req)?.ok_or_else(missing)?;
    // A refused token does not clear the cookie: in the two-tabs race the browser's cookie already
    // holds the winner's new token, and clearing it would sign the user out.
    let session = state.sessions.refresh(&presented).await?;
    Ok(session_response(&session))
}

fn session_response(session: &Session) -> Response<Body> {
    let body = TokenResponse {
        access_token: session.access_token.expose(),
        token_type: "Bearer",
        expires_in: session.access_expires_in.as_secs(),
        refresh_token: session.refresh_token.expose(),
    };
    let mut response = http::json(StatusCode::OK, &body);
    no_store(&mut response);
    http::set_cookie(
        &mut response,
        COOKIE,
        session.refresh_token.expose(),
        COOKIE_PATH,
        session.refresh_expires_in.as_secs(),
    );
    response
}

fn signed_out() -> Response<Body> {
    let mut response = http::empty(StatusCode::NO_CONTENT);
    no_store(&mut response);
    http::set_cookie(&mut response, COOKIE, "", COOKIE_PATH, 0);
    response
}

async fn logout(state: &State, req: &Request) -> Result<Response<Body>, Problem> {
    let presented = presented_token(req)?.ok_or_else(missing)?;
    let revoked = state.sessions.end(&presented).await?;
    tracing::info!(revoked, "logout");
    Ok(signed_out())
}

async fn logout_all(state: &State, req: &Request) -> Result<Response<Body>, Problem> {
    let user = auth::bearer_user(state.sessions.access_tokens(), req)?;
    let revoked = state.sessions.end_all(&user).await?;
    tracing::info!(user = %user, revoked, "logout from every session");
    Ok(signed_out())
}
