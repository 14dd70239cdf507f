//! shared::outbound against a real HTTP server on loopback (wiremock): retries on 5xx and connect
//! errors for idempotent requests only, 429 with Retry-After, per-attempt timeouts, the caller's
//! deadline, and the error mapping to 502/504.

use std::time::{Duration, Instant};

use http::StatusCode;
use shared::http::Problem;
use shared::outbound::{MAX_ERROR_BODY_CHARS, Outbound, OutboundErrorKind, OutboundSettings};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn outbound(request_timeout_ms: u64) -> Outbound {
    Outbound::new(OutboundSettings {
        request_timeout: Duration::from_millis(request_timeout_ms),
        connect_timeout: Duration::from_millis(500),
        max_attempts: 3,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
    })
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

#[tokio::test]
async fn retries_5xx_for_idempotent_requests_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/thing"))
        .respond_with(ResponseTemplate::new(503).set_body_string("busy"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/thing"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"ok": true})))
        .mount(&server)
        .await;

    let out = outbound(2000);
    let response = out.execute(out.client().unwrap().get(format!("{}/thing", server.uri())), None).await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.attempts, 3);
    assert_eq!(response.json::<serde_json::Value>("t").unwrap()["ok"], true);
    assert_eq!(requests(&server).await, 3);
}

#[tokio::test]
async fn a_post_is_sent_once_unless_it_carries_an_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500).set_body_string("boom")).mount(&server).await;
    let out = outbound(2000);
    let url = format!("{}/emails", server.uri());

    let e = out.execute(out.client().unwrap().post(&url).body("{}"), None).await.unwrap_err();
    assert_eq!((e.attempts, e.status()), (1, Some(StatusCode::INTERNAL_SERVER_ERROR)));
    assert_eq!(requests(&server).await, 1);

    let e = out
        .execute(out.client().unwrap().post(&url).header("Idempotency-Key", "k1").body("{}"), None)
        .await
        .unwrap_err();
    assert_eq!(e.attempts, 3);
    assert_eq!(requests(&server).await, 4);
    assert!(e.is_transient());
    let p = Problem::from(e);
    assert_eq!(p.status, StatusCode::BAD_GATEWAY);
    assert!(p.detail.ends_with("500: boom"), "{}", p.detail);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_their_body_is_cut_to_200_chars() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(422).set_body_string("é".repeat(500)))
        .mount(&server)
        .await;
    let out = outbound(2000);
    let e = out.execute(out.client().unwrap().get(server.uri()), None).await.unwrap_err();
    assert_eq!(e.attempts, 1);
    assert!(!e.is_transient());
    let OutboundErrorKind::Status { status, body, .. } = &e.kind else { panic!("{e:?}") };
    assert_eq!(*status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body.chars().count(), MAX_ERROR_BODY_CHARS);
    let p = Problem::from(e);
    assert_eq!(p.status, StatusCode::BAD_GATEWAY);
    assert_eq!(p.extra.unwrap()["upstreamStatus"], 422);
}

#[tokio::test]
async fn too_many_requests_waits_as_long_as_retry_after_says() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_string("ok")).mount(&server).await;

    let out = outbound(2000);
    let started = Instant::now();
    let response =
        out.execute(out.client().unwrap().get(server.uri()), Some(started + Duration::from_secs(5))).await.unwrap();
    let waited = started.elapsed();
    assert_eq!((response.attempts, response.text().as_str()), (2, "ok"));
    // The backoff alone would be ~20 ms; Retry-After asked for a second.
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_is_not_waited_for() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3").set_body_string("slow down"))
        .mount(&server)
        .await;
    let out = outbound(2000);
    let started = Instant::now();
    let e =
        out.execute(out.client().unwrap().get(server.uri()), Some(started + Duration::from_secs(1))).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    assert_eq!(e.attempts, 1);
    assert!(matches!(
        e.kind,
        OutboundErrorKind::Status { status: StatusCode::TOO_MANY_REQUESTS, retry_after: Some(d), .. } if d == Duration::from_secs(3)
    ));
    let p = Problem::from(e);
    assert_eq!((p.status, p.to_response().headers()["retry-after"].to_str().unwrap()), (StatusCode::BAD_GATEWAY, "3"));
}

#[tokio::test]
async fn a_slow_upstream_times_out_as_504() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let out = outbound(300);
    let started = Instant::now();
    let e = out.execute(out.client().unwrap().get(server.uri()), None).await.unwrap_err();
    let took = started.elapsed();
    assert!(e.is_timeout(), "{e:?}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(1500), "{took:?}");
    // Timeouts are not retried: the request may have been processed.
    assert_eq!((e.attempts, requests(&server).await), (1, 1));
    assert_eq!(Problem::from(e).status, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn the_deadline_cuts_an_attempt_short_and_none_starts_after_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    // The request timeout (5 s) is longer than what is left before the deadline (400 ms).
    let out = outbound(5000);
    let started = Instant::now();
    let e = out
        .execute(out.client().unwrap().get(server.uri()), Some(started + Duration::from_millis(400)))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(e.is_timeout(), "{e:?}");
    assert!(took < Duration::from_millis(1200), "{took:?}");

    let e = out.execute(out.client().unwrap().get(server.uri()), Some(Instant::now())).await.unwrap_err();
    assert!(e.is_timeout());
    assert_eq!(e.attempts, 0);
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn retries_stop_before_the_deadline() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    let out = Outbound::new(OutboundSettings {
        max_attempts: 10,
        base_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
        ..OutboundSettings::default()
    });
    let started = Instant::now();
    let deadline = started + Duration::from_millis(700);
    let e = out.execute(out.client().unwrap().get(server.uri()), Some(deadline)).await.unwrap_err();
    assert!(Instant::now() < deadline + Duration::from_millis(100), "{:?}", started.elapsed());
    assert_eq!(e.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(e.attempts >= 2 && e.attempts < 10, "{}", e.attempts);
}

#[tokio::test]
async fn connect_errors_are_retried_and_map_to_502() {
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = outbound(1000);
    let e = out
        .execute(out.client().unwrap().get(format!("http://127.0.0.1:{port}/x?token=secret")), None)
        .await
        .unwrap_err();
    assert!(matches!(e.kind, OutboundErrorKind::Connect(_)), "{e:?}");
    assert_eq!(e.attempts, 3);
    assert!(e.is_transient());
    assert!(!e.to_string().contains("secret"), "{e}");
    assert_eq!(Problem::from(e).status, StatusCode::BAD_GATEWAY);
}
