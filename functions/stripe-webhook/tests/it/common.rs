//! Shared by the integration tests: a provisioned stack on moto, signed Stripe events, and
//! readers for the effects (orders, subscriptions, idempotency records, email jobs on SQS).

#![allow(dead_code)] // each test file uses its own subset

use shared::config::FromEnv;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use lambda_http::{Body, Request};
use serde_json::{Value, json};
use shared::clients::AwsClients;
use shared::clock::timestamp_now;
use shared::idempotency::IdempotencyStore;
use shared::payments::{Order, OrderId, OrderItem, OrderStatus, OrdersRepo, SubscriptionsRepo};
use stripe_webhook::handler::State;
use stripe_webhook::settings::Settings;
use testkit::Provisioned;

pub const SECRET: &str = "whsec_test_only_0123456789abcdefghijklmnop";

pub struct Fixture {
    pub state: State,
    pub env: HashMap<String, String>,
    pub aws: AwsClients,
    pub orders: OrdersRepo,
    pub subscriptions: SubscriptionsRepo,
    pub idempotency: IdempotencyStore,
    pub queue_url: String,
    pub provisioned: Provisioned,
    /// The AWS endpoint the stack lives on.
    pub endpoint: String,
}

/// A fresh stack on the test run's moto (testkit).
pub async fn fixture() -> Fixture {
    let provisioned = testkit::provision(&[("STRIPE_WEBHOOK_SECRET", SECRET)]);
    fixture_from(provisioned, testkit::aws_clients().await, testkit::aws_endpoint())
}

/// A fresh stack on a moto that serves one request at a time (see `testkit::SerialMoto`).
pub async fn serial_fixture(moto: &testkit::SerialMoto) -> Fixture {
    let provisioned = moto.provision(&[("STRIPE_WEBHOOK_SECRET", SECRET)]);
    fixture_from(provisioned, moto.clients().await, moto.endpoint.clone())
}

fn fixture_from(provisioned: Provisioned, aws: AwsClients, endpoint: String) -> Fixture {
    let env = provisioned.env("stripe-webhook");
    let settings = Settings::from_env(testkit::env_reader(env.clone())).expect("settings from the template");
    let state = State::new(&settings, &aws);
    Fixture {
        orders: state.orders.clone(),
        subscriptions: state.subscriptions.clone(),
        idempotency: state.idempotency.clone(),
        queue_url: settings.email_queue_url.clone(),
        state,
        env,
        aws,
        provisioned,
        endpoint,
    }
}

impl Fixture {
    /// Another instance's state, built from this stack's environment with `changes` applied.
    pub async fn state_with(&self, changes: &[(&str, &str)]) -> State {
        let mut env = self.env.clone();
        for (k, v) in changes {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        State::new(&Settings::from_env(testkit::env_reader(env)).unwrap(), &self.aws)
    }

    pub async fn seed_order(&self, id: &str, total: i64) -> Order {
        let order = Order {
            id: OrderId::parse(id).unwrap(),
            status: OrderStatus::Pending,
            email: "buyer@example.com".into(),
            currency: "eur".into(),
            total,
            items: vec![OrderItem { name: "Mug <b>".into(), quantity: 1, unit_amount: total }],
            created_at: timestamp_now(),
            paid_at: None,
            payment_intent_id: None,
        };
        self.orders.put(&order).await.unwrap();
        order
    }

    pub async fn order(&self, id: &str) -> Order {
        self.orders.get(&OrderId::parse(id).unwrap()).await.unwrap().expect("order exists")
    }

    /// Every message on the email queue, received once (and hidden for a minute).
    pub async fn email_jobs(&self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let r = self
                .aws
                .sqs()
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap();
            let messages = r.messages.unwrap_or_default();
            if messages.is_empty() {
                return out;
            }
            out.extend(messages.iter().map(|m| serde_json::from_str(m.body().unwrap()).unwrap()));
        }
    }
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

pub fn payment_event(event_id: &str, order_id: &str, amount: i64) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": now(),
        "livemode": false,
        "type": "payment_intent.succeeded",
        "data": {"object": {
            "id": format!("pi_{event_id}"),
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount,
            "currency": "eur",
            "status": "succeeded",
            "metadata": {"orderId": order_id}
        }}
    })
    .to_string()
}

pub fn subscription_deleted_event(event_id: &str, subscription_id: &str) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "created": now(),
        "type": "customer.subscription.deleted",
        "data": {"object": {"id": subscription_id, "object": "subscription", "customer": "cus_1",
                            "status": "canceled", "canceled_at": now()}}
    })
    .to_string()
}

pub fn signature(body: &str) -> String {
    shared::payments::sign_header(SECRET, now(), body.as_bytes())
}

/// A POST as lambda_http hands it to the handler.
pub fn request(body: &str, signature: Option<&str>) -> Request {
    let mut b = http::Request::builder().method("POST").uri("/").header("content-type", "application/json");
    if let Some(sig) = signature {
        b = b.header("stripe-signature", sig);
    }
    b.body(Body::Text(body.to_owned())).unwrap()
}

pub fn signed(body: &str) -> Request {
    request(body, Some(&signature(body)))
}

/// The body as JSON (testkit's reader, under the name these tests use).
pub use testkit::http::json as json_of;

/// A Lambda Function URL event (payload format 2.0), as Lambda delivers it to the binary.
pub fn function_url_event(method: &str, body: &str, signature: Option<&str>, base64: bool) -> Value {
    use base64::Engine;
    let mut headers = json!({
        "content-type": "application/json; charset=utf-8",
        "host": "abcdefghijklmnop.lambda-url.us-east-1.on.aws",
        "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "x-forwarded-proto": "https"
    });
    if let Some(sig) = signature {
        headers["stripe-signature"] = json!(sig);
    }
    let body = if base64 { base64::engine::general_purpose::STANDARD.encode(body) } else { body.to_owned() };
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefghijklmnop",
            "domainName": "abcdefghijklmnop.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefghijklmnop",
            "http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "3.18.12.63",
                     "userAgent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
            "requestId": uuid_like(),
            "routeKey": "$default",
            "stage": "$default",
            "time": "26/Nov/2026:12:00:00 +0000",
            "timeEpoch": now() * 1000
        },
        "body": body,
        "isBase64Encoded": base64
    })
}

fn uuid_like() -> String {
    format!("{:032x}", SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos())
}

/// The environment a deployed function would see, pointed at this stack.
pub fn process_env(f: &Fixture) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = f.env.clone().into_iter().collect();
    env.extend(
        [
            ("AWS_ENDPOINT_URL", f.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v)),
    );
    env
}
