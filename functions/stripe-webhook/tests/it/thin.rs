//! Thin events (`v2.core.event` notifications) against a local Stripe API (wiremock) and moto:
//! fetched once by the delivery that holds the claim, with the key and `Stripe-Version`, retried
//! on Stripe's rate-limit answer, and processed once however many deliveries race. Also payload
//! validation: an event id replayed with another body is refused, never acknowledged.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use shared::payments::OrderStatus;
use stripe_webhook::handler::handle;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const API_KEY: &str = "sk_test_local_only";

fn notification(event_id: &str, intent_id: &str) -> String {
    json!({
        "id": event_id,
        "object": "v2.core.event",
        "type": "v1.payment_intent.succeeded",
        "livemode": false,
        "created": "2026-11-30T12:00:00.000Z",
        "related_object": {"id": intent_id, "type": "payment_intent", "url": format!("/v1/payment_intents/{intent_id}")}
    })
    .to_string()
}

fn payment_intent(intent_id: &str, order_id: &str, amount: i64) -> Value {
    json!({"id": intent_id, "object": "payment_intent", "amount": amount, "amount_received": amount,
           "currency": "eur", "status": "succeeded", "metadata": {"orderId": order_id}})
}

/// The Stripe API for one event: the event (answered after `delay`, so that deliveries overlap)
/// and its PaymentIntent, both only with the API key and a `Stripe-Version`.
async fn stripe_api(event_id: &str, intent_id: &str, order_id: &str, delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    let event: Value = serde_json::from_str(&notification(event_id, intent_id)).unwrap();
    Mock::given(method("GET"))
        .and(path(format!("/v2/core/events/{event_id}")))
        .and(header("authorization", format!("Bearer {API_KEY}").as_str()))
        .and(header("stripe-version", shared::payments::DEFAULT_API_VERSION))
        .respond_with(ResponseTemplate::new(200).set_body_json(event).set_delay(delay))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/payment_intents/{intent_id}")))
        .and(header("authorization", format!("Bearer {API_KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(payment_intent(intent_id, order_id, 1999)))
        .mount(&server)
        .await;
    server
}

/// Requests the server received for `path`, counted by the server itself.
async fn hits(server: &MockServer, path: &str) -> usize {
    server.received_requests().await.unwrap_or_default().iter().filter(|r| r.url.path() == path).count()
}

#[tokio::test]
async fn a_thin_event_is_fetched_once_and_processed_once_under_twenty_concurrent_deliveries() {
    // Conditional writes must be atomic for the race to mean anything (testkit::SerialMoto).
    let moto = testkit::SerialMoto::start();
    let f = serial_fixture(&moto).await;
    f.seed_order("ord_thin", 1999).await;
    let api = stripe_api("evt_thin_burst", "pi_thin", "ord_thin", Duration::from_millis(300)).await;
    let state = f.state_with(&[("STRIPE_API_KEY", API_KEY), ("STRIPE_API_BASE_URL", &api.uri())]).await;

    let body = notification("evt_thin_burst", "pi_thin");
    let answers = futures::future::join_all((0..20).map(|_| handle(&state, signed(&body)))).await;
    let (mut processed, mut duplicates, mut busy) = (0, 0, 0);
    for answer in &answers {
        match (answer.status().as_u16(), json_of(answer)) {
            (200, b) if b == json!({"received": true}) => processed += 1,
            (200, b) if b == json!({"received": true, "duplicate": true}) => duplicates += 1,
            (409, b) if b["type"] == "/problems/in-progress" => busy += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    eprintln!("20 thin deliveries: {processed} processed, {duplicates} duplicate, {busy} in progress");
    assert_eq!(processed, 1);
    assert_eq!(hits(&api, "/v2/core/events/evt_thin_burst").await, 1, "the event is fetched once");
    assert_eq!(hits(&api, "/v1/payment_intents/pi_thin").await, 1, "its object is fetched once");

    let order = f.order("ord_thin").await;
    assert_eq!((order.status, order.payment_intent_id.as_deref()), (OrderStatus::Paid, Some("pi_thin")));
    let jobs = f.email_jobs().await;
    assert_eq!(jobs.len(), 1, "one confirmation: {jobs:?}");

    // Stripe's later retry of a 409 is a duplicate, and fetches nothing.
    let again = handle(&state, signed(&body)).await;
    assert_eq!(json_of(&again), json!({"received": true, "duplicate": true}));
    assert_eq!(hits(&api, "/v2/core/events/evt_thin_burst").await, 1);
}

#[tokio::test]
async fn a_rate_limited_fetch_is_retried_after_stripes_retry_after() {
    let f = fixture().await;
    f.seed_order("ord_thin_429", 1999).await;
    let api = MockServer::start().await;
    // Stripe's first answer is its rate limit; the retry gets the event.
    Mock::given(method("GET"))
        .and(path("/v2/core/events/evt_thin_429"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1").set_body_string("rate limited"))
        .up_to_n_times(1)
        .mount(&api)
        .await;
    let event: Value = serde_json::from_str(&notification("evt_thin_429", "pi_thin_429")).unwrap();
    Mock::given(method("GET"))
        .and(path("/v2/core/events/evt_thin_429"))
        .respond_with(ResponseTemplate::new(200).set_body_json(event))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_thin_429"))
        .respond_with(ResponseTemplate::new(200).set_body_json(payment_intent("pi_thin_429", "ord_thin_429", 1999)))
        .mount(&api)
        .await;
    let state = f.state_with(&[("STRIPE_API_KEY", API_KEY), ("STRIPE_API_BASE_URL", &api.uri())]).await;

    let answer = handle(&state, signed(&notification("evt_thin_429", "pi_thin_429"))).await;
    assert_eq!((answer.status().as_u16(), json_of(&answer)), (200, json!({"received": true})));
    assert_eq!(hits(&api, "/v2/core/events/evt_thin_429").await, 2);
    assert_eq!(f.order("ord_thin_429").await.status, OrderStatus::Paid);
}

#[tokio::test]
async fn a_thin_event_the_api_will_not_give_releases_the_claim_for_stripes_retry() {
    let f = fixture().await;
    f.seed_order("ord_thin_down", 1999).await;
    let api = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(500)).mount(&api).await;
    let state = f.state_with(&[("STRIPE_API_KEY", API_KEY), ("STRIPE_API_BASE_URL", &api.uri())]).await;

    let answer = handle(&state, signed(&notification("evt_thin_down", "pi_thin_down"))).await;
    assert_eq!(answer.status(), 502);
    assert_eq!(f.idempotency.status("evt_thin_down").await.unwrap(), None, "claim released");
    assert_eq!(f.order("ord_thin_down").await.status, OrderStatus::Pending);

    // Without a key, thin events are refused with 503 (retried), and nothing is claimed.
    let unconfigured = f.state_with(&[("STRIPE_API_BASE_URL", &api.uri())]).await;
    let answer = handle(&unconfigured, signed(&notification("evt_thin_down", "pi_thin_down"))).await;
    assert_eq!(answer.status(), 503);
    assert_eq!(f.idempotency.status("evt_thin_down").await.unwrap(), None);
}

#[tokio::test]
async fn a_replayed_event_id_with_another_body_is_refused_and_changes_nothing() {
    let f = fixture().await;
    f.seed_order("ord_replay", 2599).await;
    f.seed_order("ord_other", 100).await;
    let body = payment_event("evt_replay", "ord_replay", 2599);
    assert_eq!(handle(&f.state, signed(&body)).await.status(), 200);

    // Same id, validly signed (a holder of the secret, or a bug), other order and amount.
    let forged = payment_event("evt_replay", "ord_other", 100);
    let answer = handle(&f.state, signed(&forged)).await;
    assert_eq!(answer.status(), 409);
    let problem = json_of(&answer);
    assert_eq!(problem["type"], "/problems/event-payload-mismatch");
    assert_eq!(problem["key"], "evt_replay");
    assert_eq!(f.order("ord_other").await.status, OrderStatus::Pending, "the forged body had no effect");
    assert_eq!(f.email_jobs().await.len(), 1);

    // The genuine body is still a duplicate (its pending_webhooks may differ: not fingerprinted).
    let mut again: Value = serde_json::from_str(&body).unwrap();
    again["pending_webhooks"] = json!(3);
    let again = again.to_string();
    assert_eq!(json_of(&handle(&f.state, signed(&again)).await), json!({"received": true, "duplicate": true}));
}
