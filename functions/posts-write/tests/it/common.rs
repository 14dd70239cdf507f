//! The requests both suites send: posts-write requests as API Gateway delivers them, and reads
//! through posts-read's handler.

use lambda_http::{Body, Request, Response};
use serde_json::Value;
use shared::auth::{AccessTokenSigner, UserId};

/// `Authorization` for `user`, minted by the test key.
pub fn bearer(tokens: &AccessTokenSigner, user: &str) -> String {
    format!("Bearer {}", tokens.mint(&UserId::parse(user).unwrap()).unwrap())
}

/// `method uri`, with `authorization` when given and `body` as JSON when given.
pub fn request(method: &str, uri: &str, authorization: Option<&str>, body: Option<Value>) -> Request {
    let mut b = http::Request::builder().method(method).uri(uri);
    if let Some(value) = authorization {
        b = b.header("authorization", value);
    }
    match body {
        Some(v) => b.header("content-type", "application/json").body(Body::Text(v.to_string())).unwrap(),
        None => b.body(Body::Empty).unwrap(),
    }
}

/// `GET uri` through posts-read.
pub async fn read(state: &posts_read::handler::State, uri: &str) -> Response<Body> {
    posts_read::handler::handle(state, http::Request::builder().uri(uri).body(Body::Empty).unwrap()).await
}
