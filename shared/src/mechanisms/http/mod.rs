//! The only place HTTP shapes are made: problem+json errors, JSON responses, CORS, cookies.
//!
//! Handlers return `Result<Response<Body>, Problem>`; [`respond`] turns that into the final
//! response, answers CORS preflights and adds the CORS headers, so no handler repeats it.
//! Errors of the lower layers are mapped to problems here, in `From` impls, and nowhere else.

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

use crate::config::EnvReader;

mod upstream;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every method of the HTTP API, answered in every preflight: like API Gateway's CORS, the
/// preflight speaks for the path, whichever function serves the actual method.
pub const API_METHODS: &str = "GET,POST,PUT,PATCH,DELETE,OPTIONS";

/// An RFC 9457 problem. `kind` becomes the `type` member as `/problems/{kind}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Extra members (for example the list of invalid fields).
    pub extra: Option<serde_json::Value>,
    /// Extra response headers (for example `Retry-After`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self { status, kind, title, detail: detail.into(), extra: None, headers: Vec::new() }
    }

    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(extra);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn bad_request(kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, title, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn method_not_allowed(allowed: &'static str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            format!("allowed: {allowed}"),
        )
        .with_header(header::ALLOW, HeaderValue::from_static(allowed))
    }

    /// A failure on our side. The detail stays generic; the cause goes to the log.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request could not be completed; it is safe to retry",
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", detail)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    }

    pub fn to_response(&self) -> Response<Body> {
        let mut body = serde_json::to_value(ProblemBody {
            kind: format!("/problems/{}", self.kind),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
        })
        .unwrap_or_default();
        if let (Some(serde_json::Value::Object(extra)), serde_json::Value::Object(map)) = (&self.extra, &mut body) {
            for (k, v) in extra {
                map.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let mut response = Response::new(Body::Text(body.to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        response
    }
}

/// A JSON response with the given status.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(text) => {
            let mut response = Response::new(Body::Text(text));
            *response.status_mut() = status;
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "response serialisation failed");
            Problem::internal().to_response()
        }
    }
}

/// A response with no body (204, or 201 without a representation).
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = status;
    response
}

/// CORS for the configured origins only. Origins are compared exactly (scheme, host and port);
/// `*` is never sent, because the API uses credentials (the refresh-token cookie).
#[derive(Clone, Debug, Default)]
pub struct Cors {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: &'static str,
    pub allowed_headers: &'static str,
    pub max_age_secs: u32,
}

impl Cors {
    /// `ALLOWED_ORIGINS`: comma-separated exact origins, for example `https://app.example.com`.
    pub fn from_env(env: &mut EnvReader<'_>, allowed_methods: &'static str) -> Self {
        let origins = env.list("ALLOWED_ORIGINS");
        for origin in &origins {
            if origin == "*"
                || !(origin.starts_with("https://") || origin.starts_with("http://"))
                || origin.ends_with('/')
            {
                env.reject(
                    "ALLOWED_ORIGINS",
                    "comma-separated origins like https://app.example.com (no *, no path)",
                    "not an origin",
                );
            }
        }
        Self {
            allowed_origins: origins,
            allowed_methods,
            allowed_headers: "authorization,content-type,if-match",
            max_age_secs: 600,
        }
    }

    fn allowed<'a>(&self, origin: Option<&'a str>) -> Option<&'a str> {
        origin.filter(|o| self.allowed_origins.iter().any(|a| a == o))
    }

    /// Answers a preflight (`OPTIONS` with `Access-Control-Request-Method`), or `None` when the
    /// request is not one. A preflight from an origin that is not allowed gets 403 and no
    /// `Access-Control-Allow-Origin`, so the browser blocks the real request.
    pub fn preflight(&self, req: &Request) -> Option<Response<Body>> {
        if req.method() != Method::OPTIONS || !req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            return None;
        }
        let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let mut response = match self.allowed(origin) {
            Some(origin) => {
                let mut r = empty(StatusCode::NO_CONTENT);
                let h = r.headers_mut();
                if let Ok(v) = HeaderValue::from_str(origin) {
                    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
                }
                h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(self.allowed_methods));
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(self.allowed_headers));
                h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
                h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.max_age_secs));
                r
            }
            None => Problem::new(
                StatusCode::FORBIDDEN,
                "cors-origin",
                "Origin not allowed",
                "this origin may not call the API",
            )
            .to_response(),
        };
        response.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
        Some(response)
    }

    /// Adds the CORS headers of an actual (non-preflight) response.
    pub fn decorate(&self, origin: Option<&str>, response: &mut Response<Body>) {
        let h = response.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = self.allowed(origin)
            && let Ok(v) = HeaderValue::from_str(origin)
        {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("location,etag,x-cache"));
        }
    }
}

/// Runs a handler and makes its final response: preflight, problem mapping, CORS headers.
pub async fn respond<F, Fut>(cors: &Cors, req: Request, handler: F) -> Response<Body>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Response<Body>, Problem>>,
{
    if let Some(preflight) = cors.preflight(&req) {
        return preflight;
    }
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut response = handler(req).await.unwrap_or_else(|p| p.to_response());
    cors.decorate(origin.as_deref(), &mut response);
    response
}

/// The request path without a trailing slash, split into segments (`/posts/1` → `["posts","1"]`).
/// Percent-escapes are left as they are: an id containing `%` is simply invalid.
pub fn path_segments(req: &Request) -> Vec<&str> {
    req.uri().path().split('/').filter(|s| !s.is_empty()).collect()
}

/// Query parameters of a request, decoded from the URI (API Gateway puts the raw query string
/// there). A parameter given twice is an error rather than a silent pick.
pub fn query_param<'a>(req: &'a Request, name: &'static str) -> Result<Option<&'a str>, Problem> {
    let mut found = None;
    for pair in req.uri().query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            if found.is_some() {
                return Err(Problem::bad_request(
                    "invalid-parameter",
                    "Invalid query parameter",
                    format!("{name} is given more than once"),
                ));
            }
            found = Some(v);
        }
    }
    Ok(found)
}

/// An integer query parameter within `range`, or `default` when absent.
pub fn int_param(
    req: &Request,
    name: &'static str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, Problem> {
    let invalid = || {
        Problem::bad_request(
            "invalid-parameter",
            "Invalid query parameter",
            format!("{name} must be an integer from {} to {}", range.start(), range.end()),
        )
        .with_extra(serde_json::json!({ "parameter": name }))
    };
    match query_param(req, name)? {
        None => Ok(default),
        Some(raw) => {
            let v: u32 = raw.parse().map_err(|_| invalid())?;
            if range.contains(&v) { Ok(v) } else { Err(invalid()) }
        }
    }
}

// ---- authentication ---------------------------------------------------------------------------

/// 401 with the `WWW-Authenticate` challenge of RFC 6750.
pub fn unauthorized(error: &'static str, detail: &'static str) -> Problem {
    let challenge = format!(r#"Bearer realm="api", error="{error}""#);
    Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
    )
}

/// The claims of a valid `Authorization: Bearer <access token>`, or a 401 problem.
pub fn authenticate(tokens: &crate::auth::AccessTokens, req: &Request) -> Result<crate::auth::AccessClaims, Problem> {
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
        crate::auth::AccessTokenError::Expired => unauthorized("invalid_token", "the access token has expired"),
        _ => unauthorized("invalid_token", "the access token is invalid"),
    })
}

// ---- cookies ----------------------------------------------------------------------------------

/// The value of cookie `name` from the `Cookie` header(s). API Gateway payload 2.0 moves cookies
/// to a `cookies` array, which lambda_http joins back into a `Cookie` header.
pub fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` for an HttpOnly, Secure, SameSite=Strict cookie scoped to `path`.
/// `max_age_secs = 0` clears it. `value` must be cookie-safe (base64url and dots are).
pub fn set_cookie(response: &mut Response<Body>, name: &str, value: &str, path: &str, max_age_secs: u64) {
    let text = format!("{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&text) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

// ---- JSON request bodies ----------------------------------------------------------------------

/// The raw body bytes, decoded from base64 by lambda_http when `isBase64Encoded` is set.
pub fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b.as_slice(),
        _ => &[],
    }
}

/// Parses a JSON body into `T`: 415 when the content type is not JSON, 413 over `max_bytes`,
/// 400 for malformed JSON or a shape `T` refuses (unknown fields, wrong types), with the reason.
pub fn json_body<T: serde::de::DeserializeOwned>(req: &Request, max_bytes: usize) -> Result<T, Problem> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime != "application/json" {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the body as application/json",
        ));
    }
    let bytes = body_bytes(req);
    if bytes.len() > max_bytes {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            format!("the body is {} bytes; the limit is {max_bytes}", bytes.len()),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Problem::bad_request("invalid-body", "Invalid request body", format!("the body is not valid: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> Cors {
        Cors {
            allowed_origins: vec!["https://app.example.com".into()],
            allowed_methods: "GET,OPTIONS",
            allowed_headers: "content-type",
            max_age_secs: 60,
        }
    }

    fn preflight_from(origin: &str) -> Request {
        http::Request::builder()
            .method("OPTIONS")
            .uri("/posts")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .body(Body::Empty)
            .unwrap()
    }

    #[test]
    fn problem_body_has_the_rfc_members() {
        let r = Problem::bad_request("invalid-id", "Invalid post id", "id must be ...").to_response();
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let Body::Text(text) = r.body() else { panic!("text body") };
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["type"], "/problems/invalid-id");
        assert_eq!(v["title"], "Invalid post id");
        assert_eq!(v["status"], 400);
        assert_eq!(v["detail"], "id must be ...");
    }

    #[test]
    fn preflight_allows_only_exact_origins() {
        let ok = cors().preflight(&preflight_from("https://app.example.com")).unwrap();
        assert_eq!(ok.status(), 204);
        assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(ok.headers()[header::VARY], "Origin");

        for other in ["https://evil.example.com", "https://app.example.com.evil.net", "null"] {
            let no = cors().preflight(&preflight_from(other)).unwrap();
            assert_eq!(no.status(), 403, "{other}");
            assert!(!no.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN), "{other}");
        }
    }

    #[test]
    fn decorate_never_sends_a_wildcard() {
        let mut r = empty(StatusCode::OK);
        cors().decorate(Some("https://other.example"), &mut r);
        assert!(!r.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        assert_eq!(r.headers()[header::VARY], "Origin");
    }
}
