//! CORS for the configured origins only: preflight answers and the headers of actual responses.

use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

use super::{Problem, empty};
use crate::config::EnvReader;

/// Every method of the HTTP API, answered in every preflight: like API Gateway's CORS, the
/// preflight speaks for the path, whichever function serves the actual method.
pub const API_METHODS: &str = "GET,POST,PUT,PATCH,DELETE,OPTIONS";

/// CORS for the configured origins only. Origins are compared exactly (scheme, host and port);
/// `*` is never sent, because the API uses credentials (the refresh-token cookie).
#[derive(Clone, Debug, Default)]
pub struct Cors {
    /// Exact origins (`https://app.example.com`) that may call the API (`ALLOWED_ORIGINS`).
    pub allowed_origins: Vec<String>,
    /// `Access-Control-Allow-Methods` of preflights, such as [`API_METHODS`].
    pub allowed_methods: &'static str,
    /// `Access-Control-Allow-Headers` of preflights.
    pub allowed_headers: &'static str,
    /// How long a browser may cache a preflight, in seconds (`Access-Control-Max-Age`).
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
