//! Request in, refresh token out of the cookie or the body, session service, response out.
//!
//! Contract (API Gateway HTTP API, payload 2.0):
//! - `POST /auth/session` with `{"idToken": "<OIDC ID token>"}` (browsers signing in) → 200
//!   `{accessToken, tokenType, expiresIn}` and the `__Host-refresh_token` cookie; the refresh token
//!   is never in the body. The request must pass the cookie routes' checks ([`crate::browser`]:
//!   403 cross-site, 415 not JSON); a body that is not `{"idToken": string}` → 400; a token over
//!   16 KiB → 413. The token is verified against `OIDC_ISSUER` ([`shared::auth::oidc`]): every
//!   failure is the one 401 of `invalid-id-token`, and no session starts. The issuer's keys
//!   unreachable or slow → 503 with `Retry-After`, before the invocation's deadline. The user is
//!   found, or created on the first sign-in, by `(iss, sub)` ([`shared::auth::identities`]).
//! - `POST /auth/refresh`:
//!   - by body `{"refreshToken": "..."}` (native apps) → 200
//!     `{accessToken, tokenType, expiresIn, refreshToken, refreshExpiresIn}`, no cookie;
//!   - by the `__Host-refresh_token` cookie (browsers) → 200 `{accessToken, tokenType, expiresIn}`
//!     and the rotated cookie: the refresh token never reaches page JavaScript. The request must
//!     come from an allowed origin and be `application/json` ([`crate::browser`]): 403 / 415
//!     otherwise, and the session is not touched.
//!   - any token that cannot be used → the one 401 of `shared::http`; two cookies → 400; the
//!     user's refresh bucket empty → 429 with `Retry-After`.
//! - `POST /auth/logout`: revokes the token's session → 204 and a cleared cookie, also when the
//!   token was already useless (RFC 7009 §2.2: there is nothing a client could do with an error).
//!   No token at all → 401. The cookie rules above apply.
//! - `POST /auth/logout-all` with `Authorization: Bearer <access token>` → 204, every session of the
//!   user revoked, cookie cleared.
//! - Redis unavailable → 503 on all three: nothing is accepted or reported revoked without the store.

use std::sync::Arc;

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use shared::auth::access::AccessTokenSigner;
use shared::auth::identities::{Identities, SignedIn};
use shared::auth::oidc::{IdTokenVerifier, MAX_ID_TOKEN_BYTES};
use shared::auth::{self, RefreshError, RefreshTokenStore, Rejection, Session, Sessions};
use shared::clients::{AwsClients, RedisStore, RedisStoreError};
use shared::deadline::Deadline;
use shared::http::{self, Cors, Problem, Route, Routes};
use shared::outbound::Outbound;

use crate::browser::{self, COOKIE, COOKIE_PATH};
use crate::settings::Settings;

/// A token body is ~200 bytes; anything far larger is not one.
pub const MAX_BODY_BYTES: usize = 4096;

/// `{"idToken": ...}` with a token of at most 16 KiB, and room for the JSON around it.
pub const MAX_SIGN_IN_BODY_BYTES: usize = MAX_ID_TOKEN_BYTES + 64;

/// The deadline of a request that carries no Lambda context (a test calling `handle`): the
/// template's function Timeout.
pub const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// What a sign-in needs after the issuer's keys are in: a DynamoDB read and maybe a write, one
/// Redis script. Fetching the keys stops this long before the invocation's deadline.
pub const AFTER_VERIFY_RESERVE: std::time::Duration = std::time::Duration::from_millis(1500);

/// Built once per execution environment.
#[derive(Clone, Debug)]
pub struct State {
    pub sessions: Sessions,
    pub cors: Cors,
    /// The issuer's key cache lives here: one per execution environment.
    pub verifier: Arc<IdTokenVerifier>,
    pub identities: Identities,
}

impl State {
    pub fn new(settings: &Settings, aws: &AwsClients) -> Result<Self, RedisStoreError> {
        let redis = Arc::new(RedisStore::new(settings.redis.clone())?);
        let store = RefreshTokenStore::new(redis, settings.refresh.clone());
        let signer = AccessTokenSigner::new(&settings.access);
        let outbound = Outbound::new(settings.outbound.clone());
        Ok(Self {
            sessions: Sessions::new(store, signer),
            cors: settings.cors.clone(),
            verifier: Arc::new(IdTokenVerifier::new(settings.oidc.clone(), outbound)),
            identities: Identities::new(aws.dynamodb().clone(), settings.users_table.clone()),
        })
    }
}

impl shared::runtime::Function for State {
    type Settings = Settings;

    async fn init(settings: &Settings) -> Result<Self, lambda_http::Error> {
        Ok(Self::new(settings, &AwsClients::load(false).await)?)
    }
}

pub async fn handle(state: &State, req: Request) -> Response<Body> {
    http::respond(&state.cors, req, |req| route(state, req)).await
}

/// What auth-refresh serves (`template.yaml` declares the same routes; `tools/e2e` checks it).
#[derive(Clone, Copy, Debug)]
pub enum Op {
    SignIn,
    Refresh,
    Logout,
    LogoutAll,
}

pub const ROUTES: Routes<Op> = Routes(&[
    Route { method: Method::POST, path: "/auth/session", op: Op::SignIn },
    Route { method: Method::POST, path: "/auth/refresh", op: Op::Refresh },
    Route { method: Method::POST, path: "/auth/logout", op: Op::Logout },
    Route { method: Method::POST, path: "/auth/logout-all", op: Op::LogoutAll },
]);

async fn route(state: &State, req: Request) -> Result<Response<Body>, Problem> {
    match ROUTES.find(&req)?.op {
        Op::SignIn => sign_in(state, &req).await,
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
    /// Only for a refresh authenticated by the body: a browser's stays in its HttpOnly cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_expires_in: Option<u64>,
}

/// Where the presented refresh token came from: it decides where its successor goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Body,
    Cookie,
}

/// The refresh token of the request: the body's when it has one (API clients), else the cookie's
/// (browsers), which only a same-site JSON request may use. An empty body is no body.
fn presented_token(state: &State, req: &Request) -> Result<Option<(String, Source)>, Problem> {
    let cookie = browser::refresh_cookie(req)?;
    if !http::body_bytes(req).iter().all(u8::is_ascii_whitespace) {
        let body: TokenBody = http::json_body(req, MAX_BODY_BYTES)?;
        if let Some(token) = body.refresh_token.filter(|t| !t.is_empty()) {
            return Ok(Some((token, Source::Body)));
        }
    }
    match cookie {
        Some(token) => {
            browser::check_cookie_request(&state.cors, req)?;
            Ok(Some((token.to_owned(), Source::Cookie)))
        }
        None => Ok(None),
    }
}

/// `{"idToken": "..."}`; anything else in it is refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SignInBody {
    id_token: String,
}

fn deadline(req: &Request) -> Deadline {
    match req.lambda_context_ref() {
        Some(context) => Deadline::from_epoch_ms(context.deadline),
        None => Deadline::after(DEFAULT_DEADLINE),
    }
}

/// Signs a browser in: the ID token verified, its user found or created, a new session whose
/// refresh token goes into the cookie only.
async fn sign_in(state: &State, req: &Request) -> Result<Response<Body>, Problem> {
    // The same checks as every cookie route: the answer sets the cookie, so a page on another
    // site must not be able to sign the browser into an account of its choosing (login CSRF).
    browser::check_cookie_request(&state.cors, req)?;
    let body: SignInBody = http::json_body(req, MAX_SIGN_IN_BODY_BYTES)?;
    if body.id_token.len() > MAX_ID_TOKEN_BYTES {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "id-token-too-large",
            "ID token too large",
            format!("an ID token is at most {MAX_ID_TOKEN_BYTES} bytes"),
        ));
    }
    let fetch_by = deadline(req).at.checked_sub(AFTER_VERIFY_RESERVE).unwrap_or_else(std::time::Instant::now);
    let identity = state.verifier.verify(&body.id_token, fetch_by).await?;
    let (user, how) = state.identities.sign_in(&identity).await.map_err(|e| {
        tracing::error!(error = %e, "users table unavailable at sign-in");
        if e.is_transient() {
            Problem::unavailable("the users table did not answer; retry shortly")
        } else {
            Problem::internal()
        }
    })?;
    tracing::info!(user = %user, created = (how == SignedIn::Created), "signed in");
    let session = state.sessions.start(&user).await?;
    Ok(session_response(&session, Source::Cookie))
}

fn missing() -> Problem {
    RefreshError::Rejected(Rejection::Missing).into()
}

fn no_store(response: &mut Response<Body>) {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn refresh(state: &State, req: &Request) -> Result<Response<Body>, Problem> {
    let (presented, source) = presented_token(state, req)?.ok_or_else(missing)?;
    // A refused token does not clear the cookie: the browser's cookie may already hold a newer
    // token of the same session, and clearing it would sign the user out.
    let session = state.sessions.refresh(&presented).await?;
    Ok(session_response(&session, source))
}

fn session_response(session: &Session, source: Source) -> Response<Body> {
    let by_body = source == Source::Body;
    let body = TokenResponse {
        access_token: session.access_token.expose(),
        token_type: "Bearer",
        expires_in: session.access_expires_in.as_secs(),
        refresh_token: by_body.then(|| session.refresh_token.expose()),
        refresh_expires_in: by_body.then_some(session.refresh_expires_in.as_secs()),
    };
    let mut response = http::json(StatusCode::OK, &body);
    no_store(&mut response);
    if !by_body {
        http::set_cookie(
            &mut response,
            COOKIE,
            session.refresh_token.expose(),
            COOKIE_PATH,
            session.refresh_expires_in.as_secs(),
        );
    }
    response
}

fn signed_out() -> Response<Body> {
    let mut response = http::empty(StatusCode::NO_CONTENT);
    no_store(&mut response);
    http::set_cookie(&mut response, COOKIE, "", COOKIE_PATH, 0);
    response
}

async fn logout(state: &State, req: &Request) -> Result<Response<Body>, Problem> {
    let (presented, _) = presented_token(state, req)?.ok_or_else(missing)?;
    let revoked = state.sessions.end(&presented).await?;
    tracing::info!(revoked, "logout");
    Ok(signed_out())
}

async fn logout_all(state: &State, req: &Request) -> Result<Response<Body>, Problem> {
    let user = auth::bearer_user(state.sessions.signer().verifier(), req)?;
    let revoked = state.sessions.end_all(&user).await?;
    tracing::info!(user = %user, revoked, "logout from every session");
    Ok(signed_out())
}
