//! Responses: JSON and empty bodies, and [`respond`], which answers CORS preflights, turns a
//! handler's `Err(Problem)` into its response and adds the CORS headers, so no handler repeats it.

use std::future::Future;

use http::StatusCode;
use http::header::{self, HeaderValue};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

use super::{Cors, Problem};

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
