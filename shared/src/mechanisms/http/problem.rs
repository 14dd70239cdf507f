//! RFC 9457 problems: the one error shape every HTTP answer of the bundle uses
//! (`application/problem+json` with `type`, `title`, `status`, `detail`).

use http::StatusCode;
use http::header::{self, HeaderName, HeaderValue};
use lambda_http::{Body, Response};
use serde::Serialize;

/// The `Content-Type` of every problem response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem. `kind` becomes the `type` member as `/problems/{kind}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The response status, also the body's `status`.
    pub status: StatusCode,
    /// The slug after `/problems/` in `type` (`invalid-fields`, `not-found`, ...).
    pub kind: &'static str,
    /// A short, fixed summary of the kind (`title`).
    pub title: &'static str,
    /// What went wrong with this request, for the client (`detail`).
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
    /// A problem without extra members or headers.
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self { status, kind, title, detail: detail.into(), extra: None, headers: Vec::new() }
    }

    /// Adds members to the body (existing members win).
    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(extra);
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A 400 of the given kind.
    pub fn bad_request(kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, title, detail)
    }

    /// A 404 (`not-found`).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// A 405 with the `Allow` header set to `allowed` (a comma-separated method list).
    pub fn method_not_allowed(allowed: &str) -> Self {
        let problem = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            format!("allowed: {allowed}"),
        );
        match HeaderValue::from_str(allowed) {
            Ok(value) => problem.with_header(header::ALLOW, value),
            Err(_) => problem,
        }
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

    /// A 503 with `Retry-After: 1`: a dependency is down or slow, and a retry may succeed.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", detail)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    }

    /// The response: problem+json body, `Cache-Control: no-store` and the extra headers.
    pub fn to_response(&self) -> Response<Body> {
        // Every problem answered, by type: the refusals and failures callers see.
        crate::metrics::count_by(crate::metrics::names::PROBLEMS_ANSWERED, &[("problem", self.kind)], 1);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
