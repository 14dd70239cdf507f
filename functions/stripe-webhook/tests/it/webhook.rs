//! The webhook handler against moto's DynamoDB and SQS: effects happen once per event whatever
//! the deliveries do (duplicates, failures after the claim, claims left behind by a crashed
//! invocation), and every refusal is a precise 4xx that touches nothing.

use crate::common::*;
use serde_json::json;
use shared::clock::now_ms;
use shared::idempotency::Claim;
use shared::payments::OrderStatus;
use stripe_webhook::handler::{MAX_BODY_BYTES, handle};

#[tokio::test]
async fn a_payment_marks_the_order_paid_and_queues_one_confirmation_and_a_duplicate_changes_nothing() {
    let f = fixture().await;
    f.seed_order("ord_dup", 2599).await;
    let body = payment_event("evt_dup", "ord_dup", 2599);

    let first = handle(&f.state, signed(&body)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(json_of(&first), json!({"received": true}));
    let order = f.order("ord_dup").await;
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(order.payment_intent_id.as_deref(), Some("pi_evt_dup"));
    let paid_at = order.paid_at.clone();
    assert_eq!(f.idempotency.status("evt_dup").await.unwrap().as_deref(), Some("COMPLETED"));

    // The same delivery again (Stripe retries, or sends twice): acknowledged as a duplicate.
    let again = handle(&f.state, signed(&body)).await;
    assert_eq!(again.status(), 200);
    assert_eq!(json_of(&again), json!({"received": true, "duplicate": true}));
    assert_eq!(f.order("ord_dup").await.paid_at, paid_at, "no second update");

    let jobs = f.email_jobs().await;
    assert_eq!(jobs.len(), 1, "one email job: {jobs:?}");
    assert_eq!(
        jobs[0],
        json!({
            "v": 1,
            "template": "order_confirmation",
            "to": "buyer@example.com",
            "data": {"orderId": "ord_dup", "currency": "eur", "total": 2599,
                     "items": [{"name": "Mug <b>", "quantity": 1, "unitAmount": 2599}]},
            "idempotencyKey": "order_confirmation:ord_dup"
        })
    );
}

#[tokio::test]
async fn refusals_are_precise_and_touch_nothing() {
    let f = fixture().await;
    f.seed_order("ord_refused", 100).await;
    let body = payment_event("evt_refused", "ord_refused", 100);
    let good = signature(&body);
    let v1 = good.split("v1=").nth(1).unwrap().to_owned();
    let stale = shared::payments::sign_header(SECRET, now() - 301, body.as_bytes());
    let other_secret = shared::payments::sign_header("whsec_someone_else", now(), body.as_bytes());

    let cases: Vec<(Option<String>, &str, u16)> = vec![
        (None, "/problems/missing-signature", 400),
        (Some(String::new()), "/problems/malformed-signature", 400),
        (Some(format!("v1={v1}")), "/problems/malformed-signature", 400),
        (Some("t=notanumber,v1=abc".into()), "/problems/malformed-signature", 400),
        (Some(format!("t={}", now())), "/problems/no-v1-signature", 400),
        (Some(format!("t={},v1={}", now(), v1.to_uppercase())), "/problems/invalid-signature-encoding", 400),
        (Some(other_secret), "/problems/signature-mismatch", 400),
        (Some(format!("t={},v1={v1}", now() + 1)), "/problems/signature-mismatch", 400),
        (Some(stale), "/problems/stale-timestamp", 400),
    ];
    for (header, kind, status) in cases {
        let r = handle(&f.state, request(&body, header.as_deref())).await;
        assert_eq!(r.status(), status, "{header:?}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        assert_eq!(json_of(&r)["type"], kind, "{header:?}");
    }
    // The body is verified as received: the same JSON re-serialised is another body.
    let reformatted = serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&body).unwrap()).unwrap();
    let r = handle(&f.state, request(&reformatted, Some(&good))).await;
    assert_eq!(json_of(&r)["type"], "/problems/signature-mismatch");

    let get = http::Request::builder().method("GET").uri("/").body(lambda_http::Body::Empty).unwrap();
    let r = handle(&f.state, get).await;
    assert_eq!((r.status().as_u16(), r.headers()["allow"].to_str().unwrap()), (405, "POST"));

    let huge = "x".repeat(MAX_BODY_BYTES + 1);
    let r = handle(&f.state, signed(&huge)).await;
    assert_eq!(r.status(), 413);

    let not_an_event = r#"{"hello": "world"}"#;
    let r = handle(&f.state, signed(not_an_event)).await;
    assert_eq!((r.status().as_u16(), json_of(&r)["type"].as_str()), (400, Some("/problems/invalid-event")));

    assert_eq!(f.order("ord_refused").await.status, OrderStatus::Pending);
    assert_eq!(f.idempotency.status("evt_refused").await.unwrap(), None);
    assert!(f.email_jobs().await.is_empty());

    // And the genuine delivery still goes through.
    assert_eq!(handle(&f.state, request(&body, Some(&good))).await.status(), 200);
}

/// The email queue fails after the order was updated: the claim is released and Stripe gets a
/// 500; the retry finds the order paid by this same payment, queues the email, and completes.
#[tokio::test]
async fn a_failure_after_the_claim_releases_it_and_the_retry_processes_once() {
    let f = fixture().await;
    f.seed_order("ord_retry", 4200).await;
    let body = payment_event("evt_retry", "ord_retry", 4200);
    let missing_queue = f.queue_url.rsplit_once('/').map(|(base, _)| format!("{base}/no-such-queue")).unwrap();
    let broken = f.state_with(&[("EMAIL_QUEUE_URL", &missing_queue)]).await;

    let r = handle(&broken, signed(&body)).await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(f.idempotency.status("evt_retry").await.unwrap(), None, "the claim was released");
    let order = f.order("ord_retry").await;
    assert_eq!(order.status, OrderStatus::Paid, "the first attempt got as far as the order");
    assert!(f.email_jobs().await.is_empty());

    let r = handle(&f.state, signed(&body)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(&r), json!({"received": true}));
    assert_eq!(f.order("ord_retry").await.paid_at, order.paid_at, "the order was updated once");
    assert_eq!(f.idempotency.status("evt_retry").await.unwrap().as_deref(), Some("COMPLETED"));

    assert_eq!(json_of(&handle(&f.state, signed(&body)).await)["duplicate"], true);
    let jobs = f.email_jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["idempotencyKey"], "order_confirmation:ord_retry");

    // A failure before any effect (the orders table is unreachable) is retried the same way.
    f.seed_order("ord_retry2", 10).await;
    let body = payment_event("evt_retry2", "ord_retry2", 10);
    let no_table = f.state_with(&[("ORDERS_TABLE", "no-such-table")]).await;
    assert_eq!(handle(&no_table, signed(&body)).await.status(), 500);
    assert_eq!(f.idempotency.status("evt_retry2").await.unwrap(), None);
    assert_eq!(f.order("ord_retry2").await.status, OrderStatus::Pending);
    assert_eq!(handle(&f.state, signed(&body)).await.status(), 200);
    assert_eq!(f.order("ord_retry2").await.status, OrderStatus::Paid);
    assert_eq!(f.email_jobs().await.len(), 1);
}

/// An invocation claimed the event and died (timeout, crash) without completing or releasing:
/// once its deadline has passed, the next delivery processes the event. Before that, 409.
#[tokio::test]
async fn an_expired_in_progress_claim_is_processed_again_and_a_live_one_is_409() {
    let f = fixture().await;
    f.seed_order("ord_crash", 500).await;
    let body = payment_event("evt_crash", "ord_crash", 500);

    // A live claim held by "another invocation" for the next minute.
    let Claim::Acquired(live) = f.idempotency.claim("evt_crash", now_ms() + 60_000).await.unwrap() else {
        panic!("fresh key")
    };
    let r = handle(&f.state, signed(&body)).await;
    assert_eq!(r.status(), 409);
    assert_eq!(json_of(&r)["type"], "/problems/in-progress");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(f.order("ord_crash").await.status, OrderStatus::Pending);

    // That invocation overruns its deadline: a minute later the key is free for the next claim...
    let later = now_ms() + 61_000;
    let Claim::Acquired(_) = f.idempotency.claim_at("evt_crash", later, later + 10_000).await.unwrap() else {
        panic!("a lapsed claim is free")
    };
    // ...and the overrunning holder can no longer complete or release what is not its claim.
    assert!(f.idempotency.complete(&live).await.is_err());
    assert!(f.idempotency.release(&live).await.is_err());

    // The real scenario end to end: a claim whose deadline has already passed.
    f.seed_order("ord_crash2", 700).await;
    let body = payment_event("evt_crash2", "ord_crash2", 700);
    let Claim::Acquired(_) = f.idempotency.claim("evt_crash2", now_ms() - 1).await.unwrap() else { panic!() };
    let r = handle(&f.state, signed(&body)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(&r), json!({"received": true}));
    assert_eq!(f.order("ord_crash2").await.status, OrderStatus::Paid);
    assert_eq!(f.idempotency.status("evt_crash2").await.unwrap().as_deref(), Some("COMPLETED"));
    let jobs = f.email_jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["data"]["orderId"], "ord_crash2");
}

#[tokio::test]
async fn completed_records_expire_and_the_ttl_lag_does_not_block_a_key() {
    let f = fixture().await;
    let now = now_ms();
    let Claim::Acquired(c) = f.idempotency.claim_at("k-expiring", now, now + 1000).await.unwrap() else { panic!() };
    f.idempotency.complete(&c).await.unwrap();
    assert_eq!(f.idempotency.claim_at("k-expiring", now, now + 1000).await.unwrap(), Claim::Completed);
    // Eight days later the record has expired (DynamoDB may not have deleted it yet): free again.
    let later = now + 8 * 24 * 3600 * 1000;
    assert!(matches!(f.idempotency.claim_at("k-expiring", later, later + 1000).await.unwrap(), Claim::Acquired(_)));
    // A released claim is free at once.
    let Claim::Acquired(c) = f.idempotency.claim("k-released", now + 60_000).await.unwrap() else { panic!() };
    f.idempotency.release(&c).await.unwrap();
    assert!(matches!(f.idempotency.claim("k-released", now + 60_000).await.unwrap(), Claim::Acquired(_)));
}

#[tokio::test]
async fn orders_that_cannot_be_paid_are_acknowledged_not_retried() {
    let f = fixture().await;
    // No such order: 200, a warning in the log, the event completed, nothing queued.
    let r = handle(&f.state, signed(&payment_event("evt_noorder", "ord_missing", 100))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(f.idempotency.status("evt_noorder").await.unwrap().as_deref(), Some("COMPLETED"));

    // The payment does not match the order: left pending.
    f.seed_order("ord_mismatch", 1000).await;
    assert_eq!(handle(&f.state, signed(&payment_event("evt_mismatch", "ord_mismatch", 999))).await.status(), 200);
    assert_eq!(f.order("ord_mismatch").await.status, OrderStatus::Pending);

    // Paid already by another PaymentIntent: left as it is, no second confirmation.
    f.seed_order("ord_twice", 300).await;
    assert_eq!(handle(&f.state, signed(&payment_event("evt_first", "ord_twice", 300))).await.status(), 200);
    assert_eq!(handle(&f.state, signed(&payment_event("evt_second", "ord_twice", 300))).await.status(), 200);
    assert_eq!(f.order("ord_twice").await.payment_intent_id.as_deref(), Some("pi_evt_first"));

    // No orderId in the metadata: not ours.
    let mut body: serde_json::Value = serde_json::from_str(&payment_event("evt_nometa", "x", 1)).unwrap();
    body["data"]["object"]["metadata"] = json!({});
    assert_eq!(handle(&f.state, signed(&body.to_string())).await.status(), 200);

    let jobs = f.email_jobs().await;
    assert_eq!(jobs.len(), 1, "only ord_twice's first payment: {jobs:?}");
    assert_eq!(jobs[0]["data"]["orderId"], "ord_twice");
}

#[tokio::test]
async fn a_deleted_subscription_is_canceled_and_other_types_are_acknowledged() {
    let f = fixture().await;
    f.subscriptions.put("sub_1", "active", Some("cus_1")).await.unwrap();
    let r = handle(&f.state, signed(&subscription_deleted_event("evt_sub", "sub_1"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(f.subscriptions.status("sub_1").await.unwrap().as_deref(), Some("canceled"));
    // An unknown subscription: acknowledged with a warning.
    assert_eq!(handle(&f.state, signed(&subscription_deleted_event("evt_sub2", "sub_unknown"))).await.status(), 200);
    assert_eq!(f.subscriptions.status("sub_unknown").await.unwrap(), None);

    let other = json!({"id": "evt_other", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}).to_string();
    let r = handle(&f.state, signed(&other)).await;
    assert_eq!((r.status().as_u16(), json_of(&r)), (200, json!({"received": true})));
    assert_eq!(f.idempotency.status("evt_other").await.unwrap(), None, "no claim for types we do not handle");
}

/// Several secrets (a roll): a delivery signed with either is accepted.
#[tokio::test]
async fn during_a_secret_roll_either_secret_is_accepted() {
    let f = fixture().await;
    let state = f.state_with(&[("STRIPE_WEBHOOK_SECRET", &format!("whsec_new_secret_0001,{SECRET}"))]).await;
    let body = json!({"id": "evt_roll", "type": "customer.created", "data": {"object": {}}}).to_string();
    let old = shared::payments::sign_header(SECRET, now(), body.as_bytes());
    let new = shared::payments::sign_header("whsec_new_secret_0001", now(), body.as_bytes());
    let both = format!("{new},v1={}", old.split("v1=").nth(1).unwrap());
    for header in [old, new, both] {
        assert_eq!(handle(&state, request(&body, Some(&header))).await.status(), 200, "{header}");
    }
}
