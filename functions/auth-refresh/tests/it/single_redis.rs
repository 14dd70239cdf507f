//! The token-store suite against one redis-server, plus the HTTP contract of the function (routes,
//! methods, CORS, bodies) and the `events/auth-refresh` files, which need no second Redis flavour.

use crate::common::*;
use auth_refresh::handler::handle;
use lambda_http::Body;

crate::suite::token_suite!(Kind::Single);

#[tokio::test]
async fn routes_methods_and_preflight() {
    let f = Fixture::start(Kind::Single, 5000);
    let get = http::Request::builder().method("GET").uri("/auth/refresh").body(Body::Empty).unwrap();
    let r = handle(&f.state, get).await;
    assert_eq!(r.status(), 405);
    assert_eq!(header(&r, "allow"), Some("POST, OPTIONS"));
    assert_eq!(handle(&f.state, post("/auth/nope").body(Body::Empty).unwrap()).await.status(), 404);

    let preflight = |origin: &str| {
        http::Request::builder()
            .method("OPTIONS")
            .uri("/auth/refresh")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .body(Body::Empty)
            .unwrap()
    };
    let ok = handle(&f.state, preflight(ORIGIN)).await;
    assert_eq!(ok.status(), 204);
    assert_eq!(header(&ok, "access-control-allow-methods"), Some("POST,OPTIONS"));
    assert_eq!(header(&ok, "access-control-allow-credentials"), Some("true"));
    let evil = handle(&f.state, preflight("https://evil.example.com")).await;
    assert_eq!(evil.status(), 403);
    assert!(header(&evil, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn bodies_are_checked_and_the_body_wins_over_the_cookie() {
    let f = Fixture::start(Kind::Single, 5000);
    let (token, _) = f.login("user-1").await;

    let typo = handle(&f.state, with_body("/auth/refresh", serde_json::json!({ "refresh_token": token }))).await;
    assert_eq!(typo.status(), 400, "unknown members are refused: {}", text(&typo));
    let not_json = post("/auth/refresh").header("content-type", "text/plain").body(Body::Text(token.clone())).unwrap();
    assert_eq!(handle(&f.state, not_json).await.status(), 415);
    let wrong_type = handle(&f.state, with_body("/auth/refresh", serde_json::json!({ "refreshToken": 7 }))).await;
    assert_eq!(wrong_type.status(), 400);

    // `{}` carries no token: the cookie is used.
    let empty_object = post("/auth/refresh")
        .header("content-type", "application/json")
        .header("cookie", format!("{COOKIE}={token}"))
        .body(Body::Text("{}".into()))
        .unwrap();
    let token = new_token(&handle(&f.state, empty_object).await);

    // A token in the body wins over a stale cookie, and is answered in the body.
    let both = post("/auth/refresh")
        .header("content-type", "application/json")
        .header("cookie", format!("{COOKIE}=stale"))
        .body(Body::Text(serde_json::json!({ "refreshToken": token }).to_string()))
        .unwrap();
    let r = handle(&f.state, both).await;
    assert!(header(&r, "set-cookie").is_none());
    new_token(&r);
}

/// Each file of events/auth-refresh, parsed the way lambda_http parses an API Gateway payload 2.0
/// event, against a Redis with no session in it: the statuses `make test` expects.
#[tokio::test]
async fn event_files_answer_as_the_manifest_expects() {
    let f = Fixture::start(Kind::Single, 5000);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/auth-refresh");
    let expected = [
        ("refresh-cookie.json", 401),
        ("refresh-body.json", 401),
        ("refresh-bad-token.json", 401),
        ("refresh-unknown-field.json", 400),
        ("refresh-cross-site.json", 403),
        ("refresh-two-cookies.json", 400),
        ("logout.json", 204),
        ("logout-all.json", 401),
        ("preflight.json", 204),
        // Unrendered, `{{id-token:alice}}` is no JWT: refused before any issuer is asked.
        ("session.json", 401),
        ("session-hmac-token.json", 401),
        ("session-cross-site.json", 403),
        ("session-too-large.json", 413),
    ];
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("events/auth-refresh")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut listed: Vec<String> = expected.iter().map(|(name, _)| (*name).to_owned()).collect();
    listed.sort();
    assert_eq!(files, listed, "every event file has an expectation here");
    for (name, status) in expected {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let mut req = lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The events are written for the local stack's origins; this fixture allows ORIGIN.
        if req.headers().get("origin").is_some_and(|o| o != "https://evil.example") {
            req.headers_mut().insert("origin", http::HeaderValue::from_static(ORIGIN));
        }
        let r = handle(&f.state, req).await;
        assert_eq!(r.status(), status, "{name}: {}", crate::common::text(&r));
    }
}
