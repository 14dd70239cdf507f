//! What every handler test reads from a response or sends as a request, so no test binary
//! carries its own copy: the body as text or JSON, a header, a request, a CORS preflight.

use lambda_http::{Body, Request, Response};

/// The body as text (binary bodies decoded lossily; none is empty).
pub fn text(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

/// The body as JSON; `Null` for an empty body. A body that is not JSON fails the test.
pub fn json(response: &Response<Body>) -> serde_json::Value {
    let text = text(response);
    if text.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("the body is not JSON ({e}): {text}"))
}

/// A response header as text, if present and printable.
pub fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A request builder for `method` and `uri`.
pub fn request(method: &str, uri: &str) -> lambda_http::http::request::Builder {
    lambda_http::http::Request::builder().method(method).uri(uri)
}

/// A request with a JSON body (`content-type: application/json`).
pub fn json_request(method: &str, uri: &str, body: &serde_json::Value) -> Request {
    request(method, uri).header("content-type", "application/json").body(Body::Text(body.to_string())).unwrap()
}

/// The CORS preflight a browser at `origin` sends before `method uri`.
pub fn preflight(uri: &str, origin: &str, method: &str) -> Request {
    request("OPTIONS", uri)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .body(Body::Empty)
        .unwrap()
}

/// The `x-cache` header (`hit` / `miss`), or `<none>` when the response has none.
pub fn x_cache(response: &Response<Body>) -> &str {
    header(response, "x-cache").unwrap_or("<none>")
}

/// The `id` of every item of a page (`{"items": [{"id": …}, …]}`), in order.
pub fn ids(page: &serde_json::Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|p| p["id"].as_str().expect("id").to_owned()).collect()
}
