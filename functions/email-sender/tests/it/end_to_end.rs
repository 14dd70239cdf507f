//! The whole path on moto, in process: a signed `payment_intent.succeeded` to stripe-webhook marks
//! the order paid and queues its confirmation; email-sender takes the batch from EmailQueue and
//! the confirmation shows up in moto's SES store, once, with the order's items escaped.

use shared::config::FromEnv;
use std::time::Duration;

use crate::common::*;
use email_sender::handler::handle;
use lambda_http::Body;
use serde_json::json;
use shared::clock::timestamp_now;
use shared::deadline::Deadline;
use shared::payments::{Order, OrderId, OrderItem, OrderStatus};

const STRIPE_SECRET: &str = "whsec_test_only_email_sender_e2e_0123456789";

#[tokio::test]
async fn a_paid_order_gets_one_confirmation_email() {
    let f = fixture(true).await;
    let mut webhook_env = f.provisioned.env("stripe-webhook");
    webhook_env.insert("STRIPE_WEBHOOK_SECRET".into(), STRIPE_SECRET.into());
    let webhook_settings = stripe_webhook::settings::Settings::from_env(testkit::env_reader(webhook_env)).unwrap();
    let webhook = stripe_webhook::handler::State::new(&webhook_settings, &f.aws);
    assert_eq!(webhook_settings.email_queue_url, f.queue_url, "both functions use the template's EmailQueue");

    let order = Order {
        id: OrderId::parse("ord_e2e").unwrap(),
        status: OrderStatus::Pending,
        email: "buyer@example.com".into(),
        currency: "jpy".into(),
        total: 3000,
        items: vec![OrderItem { name: "Tea <script>".into(), quantity: 2, unit_amount: 1500 }],
        created_at: timestamp_now(),
        paid_at: None,
        payment_intent_id: None,
    };
    webhook.orders.put(&order).await.unwrap();

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let body = json!({
        "id": "evt_e2e", "object": "event", "created": now, "livemode": false,
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_e2e", "object": "payment_intent", "amount": 3000, "amount_received": 3000,
                            "currency": "jpy", "status": "succeeded", "metadata": {"orderId": "ord_e2e"}}}
    })
    .to_string();
    let request = http::Request::builder()
        .method("POST")
        .uri("/")
        .header("content-type", "application/json")
        .header("stripe-signature", shared::payments::sign_header(STRIPE_SECRET, now, body.as_bytes()))
        .body(Body::Text(body))
        .unwrap();
    let response = stripe_webhook::handler::handle(&webhook, request).await;
    assert_eq!(response.status(), 200, "{:?}", response.body());

    let sender = f.state(&[]);
    let (event, messages) = f.receive(&f.queue_url, 10, Duration::from_secs(5)).await;
    assert_eq!(event.records.len(), 1);
    let response = handle(&sender, event.clone(), Deadline::after(Duration::from_secs(30))).await;
    assert!(failed_ids(&response).is_empty());
    f.delete_succeeded(&f.queue_url, &messages, &[]).await;
    // Delivered again (the event source mapping may): still one email.
    assert!(failed_ids(&handle(&sender, event, Deadline::after(Duration::from_secs(30))).await).is_empty());

    let sent = f.sent().await;
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["subject"], "Order ord_e2e confirmed");
    assert_eq!(sent[0]["destinations"]["ToAddresses"], json!(["buyer@example.com"]));
    let html = sent[0]["body"].as_str().unwrap();
    assert!(html.contains("Tea &lt;script&gt;") && !html.contains("<script>"), "{html}");
    assert!(html.contains("JPY 1,500") && html.contains("JPY 3,000"), "{html}");
}
