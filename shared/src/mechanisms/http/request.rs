//! Reading a request: path segments, query parameters (each at most once), the raw body and a
//! JSON body held to a content type and a size, each refusal a precise 400/413/415 problem.

use http::StatusCode;
use http::header;
use lambda_http::{Body, Request};

use super::Problem;

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
