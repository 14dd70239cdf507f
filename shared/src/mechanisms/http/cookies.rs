//! Cookies: reading every value of one from the `Cookie` header(s), and setting an HttpOnly one.

use http::header::{self, HeaderValue};
use lambda_http::{Body, Request, Response};

/// Every value of cookie `name` in the `Cookie` header(s), in order: a caller that must refuse a
/// second cookie of the same name (one planted by a sibling subdomain) can see it. API Gateway
/// payload 2.0 moves cookies to a `cookies` array, which lambda_http joins back into a `Cookie`
/// header.
pub fn cookie_values<'a>(req: &'a Request, name: &str) -> Vec<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .collect()
}

/// A `Set-Cookie` for an HttpOnly, Secure, SameSite=Strict cookie scoped to `path`.
/// `max_age_secs = 0` clears it. `value` must be cookie-safe (base64url and dots are).
pub fn set_cookie(response: &mut Response<Body>, name: &str, value: &str, path: &str, max_age_secs: u64) {
    let text = format!("{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&text) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}
