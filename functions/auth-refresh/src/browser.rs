//! What a request must show before its refresh-token cookie is used.
//!
//! A cookie is ambient: the browser attaches it to any request to our host, including one a page
//! on another site makes. A cross-site *simple* request (a form post, `fetch` with `text/plain`)
//! skips the CORS preflight, so the server must refuse it itself:
//! - `Origin` must be one of `ALLOWED_ORIGINS`; without an `Origin`, `Sec-Fetch-Site` must say
//!   `same-origin` or `same-site` (browsers send one or the other on every POST);
//! - the content type must be `application/json`, which no simple request can carry: a page on
//!   another origin that sets it triggers a preflight, which the CORS layer refuses.
//!
//! And exactly one cookie of our name: a second one means someone else planted it (a sibling
//! subdomain can set cookies for the parent domain); picking either would let them choose whose
//! session the browser is in.

use lambda_http::Request;
use lambda_http::http::{StatusCode, header};
use shared::http::{Cors, Problem, cookie_values};

/// `__Host-`: the browser only accepts this cookie from our own host over HTTPS, with `Path=/`
/// and no `Domain`, so no sibling subdomain can set or shadow it (docs/design/sessions.md).
pub const COOKIE: &str = "__Host-refresh_token";
/// `__Host-` cookies must have `Path=/`.
pub const COOKIE_PATH: &str = "/";

/// The refresh-token cookie: `None` without one, 400 with more than one.
pub fn refresh_cookie(req: &Request) -> Result<Option<&str>, Problem> {
    match cookie_values(req, COOKIE).as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one).filter(|v| !v.is_empty())),
        _ => Err(Problem::bad_request(
            "duplicate-cookie",
            "Duplicate cookie",
            format!("the request carries more than one {COOKIE} cookie; clear this site's cookies and sign in again"),
        )),
    }
}

fn header_str(req: &Request, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Refuses a request that may not use the cookie: from another site, or a simple request.
pub fn check_cookie_request(cors: &Cors, req: &Request) -> Result<(), Problem> {
    let cross_site = || {
        Problem::new(
            StatusCode::FORBIDDEN,
            "cross-site-request",
            "Cross-site request refused",
            "a request that uses the session cookie must come from an allowed origin",
        )
    };
    match header_str(req, header::ORIGIN) {
        Some(origin) => {
            if !cors.allowed_origins.iter().any(|a| a == origin) {
                return Err(cross_site());
            }
        }
        None => {
            let site = req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok());
            if !matches!(site, Some("same-origin" | "same-site")) {
                return Err(cross_site());
            }
        }
    }
    let content_type = header_str(req, header::CONTENT_TYPE).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "a request that uses the session cookie must be sent as application/json",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::Body;

    fn cors() -> Cors {
        Cors { allowed_origins: vec!["https://app.example.com".into()], ..Cors::default() }
    }

    fn req(headers: &[(&str, &str)]) -> Request {
        let mut b = lambda_http::http::Request::builder().method("POST").uri("/auth/refresh");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::Empty).unwrap()
    }

    #[test]
    fn one_cookie_is_used_two_are_refused() {
        let one = req(&[("cookie", "theme=dark; __Host-refresh_token=abc")]);
        assert_eq!(refresh_cookie(&one).unwrap(), Some("abc"));
        let two = req(&[("cookie", "__Host-refresh_token=abc; __Host-refresh_token=def")]);
        assert_eq!(refresh_cookie(&two).unwrap_err().status, 400);
        let split = req(&[("cookie", "__Host-refresh_token=abc"), ("cookie", "__Host-refresh_token=abc")]);
        assert_eq!(refresh_cookie(&split).unwrap_err().status, 400, "even with the same value twice");
        // The unprefixed name is someone else's cookie (or an old one): never used.
        assert_eq!(refresh_cookie(&req(&[("cookie", "refresh_token=abc")])).unwrap(), None);
        assert_eq!(refresh_cookie(&req(&[("cookie", "garbage; ;=;__Host-refresh_token")])).unwrap(), None);
    }

    #[test]
    fn cookie_requests_need_an_allowed_origin_or_same_site_and_json() {
        let json = ("content-type", "application/json");
        let ok = |h: &[(&str, &str)]| check_cookie_request(&cors(), &req(h)).map_err(|p| p.status.as_u16());
        assert_eq!(ok(&[("origin", "https://app.example.com"), json]), Ok(()));
        assert_eq!(
            ok(&[("origin", "https://app.example.com"), ("content-type", "application/json; charset=utf-8")]),
            Ok(())
        );
        assert_eq!(ok(&[("sec-fetch-site", "same-origin"), json]), Ok(()));
        assert_eq!(ok(&[("sec-fetch-site", "same-site"), json]), Ok(()));
        assert_eq!(ok(&[("origin", "https://evil.example"), json]), Err(403));
        assert_eq!(ok(&[("origin", "null"), json]), Err(403));
        assert_eq!(ok(&[("origin", "https://evil.example"), ("sec-fetch-site", "same-site"), json]), Err(403));
        assert_eq!(ok(&[("sec-fetch-site", "cross-site"), json]), Err(403));
        assert_eq!(ok(&[json]), Err(403), "neither header: not a browser we can check");
        assert_eq!(ok(&[("origin", "https://app.example.com"), ("content-type", "text/plain")]), Err(415));
        assert_eq!(ok(&[("origin", "https://app.example.com")]), Err(415));
    }
}
