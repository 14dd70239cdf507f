//! The real `stripe-webhook` binary under a local Lambda Runtime API, as separate processes the
//! way Lambda scales out: twenty execution environments receive the same event at the same
//! moment, and exactly one order update and one email job come out of it.

use std::time::Duration;

use crate::common::*;
use lambda_harness::{Function, Invocation, SpawnOptions};
use serde_json::{Value, json};
use shared::payments::OrderStatus;

const BINARY: &str = env!("CARGO_BIN_EXE_stripe-webhook");
const INSTANCES: usize = 20;

fn response_body(invocation: &Invocation) -> Value {
    let payload = invocation.json().expect("a JSON response");
    serde_json::from_str(payload["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

async fn start(f: &Fixture, n: usize) -> Vec<Function> {
    let options = SpawnOptions { env: process_env(f), ..SpawnOptions::default() };
    let mut functions = Vec::with_capacity(n);
    for _ in 0..n {
        functions.push(Function::start(BINARY, &options).await.expect("spawn stripe-webhook"));
    }
    for function in &functions {
        if let Err(e) = function.wait_ready(Duration::from_secs(60)).await {
            panic!("init failed: {e}\n{}", function.logs());
        }
    }
    functions
}

fn count(functions: &[Function], message: &str) -> usize {
    let needle = format!("\"message\":\"{message}\"");
    functions.iter().map(|f| f.logs().matches(&needle).count()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_deliveries_in_separate_processes_have_one_effect() {
    // DynamoDB's per-item atomicity, which threaded moto lacks (see testkit::SerialMoto).
    let moto = testkit::SerialMoto::start();
    let f = serial_fixture(&moto).await;
    f.seed_order("ord_burst", 1999).await;
    let functions = start(&f, INSTANCES).await;

    let body = payment_event("evt_burst", "ord_burst", 1999);
    let event = function_url_event("POST", &body, Some(&signature(&body)), false);
    let answers =
        futures::future::join_all(functions.iter().map(|function| function.invoke(&event, Duration::from_secs(30))))
            .await;

    let (mut processed, mut duplicates) = (0, 0);
    let mut busy = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        let answer = answer.as_ref().unwrap_or_else(|e| panic!("instance {i}: {e}\n{}", functions[i].logs()));
        match (answer.status_code(), response_body(answer)) {
            (Some(200), b) if b == json!({"received": true}) => processed += 1,
            (Some(200), b) if b == json!({"received": true, "duplicate": true}) => duplicates += 1,
            (Some(409), _) => busy.push(i),
            other => panic!("instance {i}: unexpected answer {other:?}\n{}", functions[i].logs()),
        }
    }
    eprintln!(
        "{INSTANCES} deliveries: {processed} processed, {duplicates} duplicate, {} in progress (409)",
        busy.len()
    );
    assert_eq!(processed, 1, "exactly one delivery processed the event");
    assert_eq!(count(&functions, "order marked paid"), 1);
    assert_eq!(count(&functions, "order confirmation queued"), 1);

    // Stripe retries the 409s later: each is now a duplicate.
    for i in busy {
        let answer = functions[i].invoke(&event, Duration::from_secs(30)).await.unwrap();
        assert_eq!((answer.status_code(), response_body(&answer)["duplicate"].clone()), (Some(200), json!(true)));
    }

    let order = f.order("ord_burst").await;
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(order.payment_intent_id.as_deref(), Some("pi_evt_burst"));
    let jobs = f.email_jobs().await;
    assert_eq!(jobs.len(), 1, "exactly one email job: {jobs:?}");
    assert_eq!(jobs[0]["idempotencyKey"], "order_confirmation:ord_burst");
    for function in functions {
        let report = function.stop().await;
        assert!(!report.logs.contains("panicked"), "{}", report.logs);
    }
}

/// The Function URL payload through lambda_http: a base64 body is verified as its decoded bytes;
/// other methods get 405; refusals are problem JSON.
#[tokio::test]
async fn function_url_events_through_the_real_binary() {
    let f = fixture().await;
    f.seed_order("ord_b64", 250).await;
    let functions = start(&f, 1).await;
    let function = &functions[0];

    let body = payment_event("evt_b64", "ord_b64", 250);
    let answer = function
        .invoke(&function_url_event("POST", &body, Some(&signature(&body)), true), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(answer.status_code(), Some(200), "{}", function.logs());
    assert_eq!(response_body(&answer), json!({"received": true}));
    assert_eq!(f.order("ord_b64").await.status, OrderStatus::Paid);

    // The base64 text itself is not what was signed.
    let wrong = function_url_event("POST", &body, Some(&signature(&body)), false);
    let mut as_text = wrong.clone();
    as_text["body"] = json!(base64_of(&body));
    let answer = function.invoke(&as_text, Duration::from_secs(30)).await.unwrap();
    assert_eq!(answer.status_code(), Some(400));

    let answer = function.invoke(&function_url_event("GET", "", None, false), Duration::from_secs(30)).await.unwrap();
    assert_eq!(answer.status_code(), Some(405));

    let answer =
        function.invoke(&function_url_event("POST", &body, None, false), Duration::from_secs(30)).await.unwrap();
    assert_eq!(answer.status_code(), Some(400));
    assert_eq!(response_body(&answer)["type"], "/problems/missing-signature");
    assert_eq!(f.email_jobs().await.len(), 1);
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
