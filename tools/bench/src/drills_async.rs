//! Drills for the asynchronous paths: a webhook instance killed between claim and completion,
//! and SES failing for a while under the email queue.
//!
//! Both break the dependency from outside the function, with no fault-injection code in it: the
//! webhook's SQS endpoint is pointed at a loopback socket that accepts and never answers (so the
//! process is mid-work when it is SIGKILLed), and email-sender's SESv2 endpoint at a small proxy
//! that answers 503 during the outage and forwards to moto afterwards.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_harness::{Function, SpawnOptions};
use serde_json::{Value, json};
use shared::clients::AwsClients;
use shared::email::{EmailAddress, EmailContent, EmailJob, EmailQueue, PasswordReset};
use shared::payments::{Order, OrderId, OrderItem, OrderStatus, OrdersRepo};

use crate::drills::DrillResult;
use testkit::stack_env::{get, with};

/// Accepts TCP connections and never answers: a dependency that hangs.
async fn black_hole() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

async fn queue_messages(aws: &AwsClients, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let out =
            aws.sqs().receive_message().queue_url(url).max_number_of_messages(10).visibility_timeout(60).send().await;
        let messages = out.map(|o| o.messages.unwrap_or_default()).unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        bodies.extend(messages.into_iter().filter_map(|m| m.body));
    }
    bodies
}

/// A webhook process SIGKILLed after its claim and its order update, before the email job and
/// the completion; Stripe then retries. Goal: the retry inside the claim's lifetime gets 409, the
/// one after it processes, and in the end the order was updated once and one email job exists.
pub async fn webhook_killed_mid_event(bin_dir: &Path, env: &[(String, String)], base: &Value) -> DrillResult {
    let aws = AwsClients::new(&shared::clients::load_sdk_config().await, true);
    let order_id = format!("ord_drill_{}", uuid::Uuid::new_v4().simple());
    let orders = OrdersRepo::new(aws.dynamodb().clone(), get(env, "ORDERS_TABLE"));
    orders
        .put(&Order {
            id: OrderId::parse(&order_id).expect("order id"),
            status: OrderStatus::Pending,
            email: "drill@example.com".into(),
            currency: "eur".into(),
            total: 2599,
            items: vec![OrderItem { name: "Drill".into(), quantity: 1, unit_amount: 2599 }],
            created_at: shared::clock::timestamp_now(),
            paid_at: None,
            payment_intent_id: None,
        })
        .await
        .expect("seed order");

    let event_id = format!("evt_drill_{}", uuid::Uuid::new_v4().simple());
    let body = json!({
        "id": event_id, "object": "event", "type": "payment_intent.succeeded", "created": 1_800_000_000,
        "livemode": false, "api_version": "2024-06-20",
        "data": {"object": {"id": "pi_drill", "object": "payment_intent", "amount": 2599, "amount_received": 2599,
                 "currency": "eur", "status": "succeeded", "metadata": {"orderId": order_id}}}
    })
    .to_string();
    let signature = shared::payments::sign_header(
        get(env, "STRIPE_WEBHOOK_SECRET").split(',').next().unwrap_or(""),
        now_s(),
        body.as_bytes(),
    );
    let mut event = base.clone();
    event["body"] = json!(body);
    event["isBase64Encoded"] = json!(false);
    event["headers"]["stripe-signature"] = json!(signature);

    // 1. A process whose SQS calls hang: it claims, marks the order paid, then blocks.
    let (hole, hole_task) = black_hole().await;
    let hanging_env = with(env, &[("AWS_ENDPOINT_URL_SQS", format!("http://127.0.0.1:{hole}"))]);
    let a = Function::start(bin_dir.join("stripe-webhook"), &SpawnOptions { env: hanging_env, ..Default::default() })
        .await
        .expect("spawn");
    a.wait_ready(Duration::from_secs(10)).await.expect("init");
    let claim_life = Duration::from_secs(3);
    let killed_at;
    {
        let first = a.invoke(&event, claim_life);
        tokio::pin!(first);
        let id = OrderId::parse(&order_id).expect("order id");
        loop {
            tokio::select! {
                _ = &mut first => panic!("the hanging delivery finished; the drill needs it mid-work"),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if orders.get(&id).await.ok().flatten().is_some_and(|o| o.status == OrderStatus::Paid) {
                break;
            }
        }
        killed_at = Instant::now();
    }
    let _ = a.stop().await; // SIGKILL mid-event
    hole_task.abort();

    // 2. Stripe retries at once, then after the claim's lifetime, then once more.
    let b = Function::start(bin_dir.join("stripe-webhook"), &SpawnOptions { env: env.to_vec(), ..Default::default() })
        .await
        .expect("spawn");
    b.wait_ready(Duration::from_secs(10)).await.expect("init");
    let during = b.invoke(&event, Duration::from_secs(10)).await.expect("retry").status_code();
    tokio::time::sleep((killed_at + claim_life + Duration::from_millis(500)).saturating_duration_since(Instant::now()))
        .await;
    let after = b.invoke(&event, Duration::from_secs(10)).await.expect("retry").status_code();
    let again = b.invoke(&event, Duration::from_secs(10)).await.expect("retry");
    let duplicate = again.json().ok().and_then(|v| v["body"].as_str().map(str::to_owned)).unwrap_or_default();
    let logs = b.stop().await.logs;

    let jobs = queue_messages(&aws, get(env, "EMAIL_QUEUE_URL")).await;
    let jobs_for_order = jobs.iter().filter(|b| b.contains(&order_id)).count();
    let order = orders.get(&OrderId::parse(&order_id).expect("id")).await.expect("order").expect("exists");
    let passed = during == Some(409)
        && after == Some(200)
        && again.status_code() == Some(200)
        && duplicate.contains("\"duplicate\":true")
        && jobs_for_order == 1
        && order.status == OrderStatus::Paid
        && !logs.contains("panicked");
    let markdown = format!(
        "### A webhook instance killed between claim and completion\n\n\
         The release stripe-webhook receives a signed `payment_intent.succeeded`; its SQS endpoint is a socket \
         that never answers, so it claims the event, marks the order paid and hangs on the email job. It is \
         SIGKILLed there (claim INPROGRESS until its 3 s deadline). Stripe's retries then go to a fresh process. \
         Goal: 409 while the dead claim is live, processed after it expires, duplicate afterwards; one order \
         update, one email job.\n\n\
         | step | answer |\n| --- | --- |\n| retry while the claim is live | {} |\n\
         | retry after the claim expired | {} |\n| one more delivery | {} `{}` |\n\
         | email jobs queued for the order | {jobs_for_order} |\n| order status | {:?} (paid by {}) |\n\n\
         Result: **{}**.\n\n",
        during.map_or("none".into(), |s| s.to_string()),
        after.map_or("none".into(), |s| s.to_string()),
        again.status_code().map_or("none".into(), |s| s.to_string()),
        duplicate,
        order.status,
        order.payment_intent_id.as_deref().unwrap_or("-"),
        if passed { "pass" } else { "FAIL" },
    );
    let summary = format!(
        "live claim {}, expired claim {}, again {}; email jobs {jobs_for_order}; order {:?}",
        during.map_or("none".into(), |s| s.to_string()),
        after.map_or("none".into(), |s| s.to_string()),
        again.status_code().map_or("none".into(), |s| s.to_string()),
        order.status,
    );
    DrillResult { markdown, summary, passed }
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// An HTTP proxy in front of moto that answers 503 while `failing` is set.
async fn flaky_proxy(upstream: String, failing: Arc<AtomicBool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let client = reqwest::Client::new();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (client, upstream, failing) = (client.clone(), upstream.clone(), failing.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (client, upstream, failing) = (client.clone(), upstream.clone(), failing.clone());
                    async move {
                        if failing.load(Ordering::SeqCst) {
                            let mut r = hyper::Response::new(Full::new(Bytes::from_static(
                                br#"{"__type":"ServiceUnavailable","message":"drill outage"}"#,
                            )));
                            *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                            return Ok::<_, Infallible>(r);
                        }
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                        let mut forward = client.request(parts.method.clone(), format!("{upstream}{path}")).body(body);
                        for (name, value) in &parts.headers {
                            if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH {
                                forward = forward.header(name, value);
                            }
                        }
                        let answer = match forward.send().await {
                            Ok(resp) => {
                                let status = resp.status();
                                let headers = resp.headers().clone();
                                let bytes = resp.bytes().await.unwrap_or_default();
                                let mut r = hyper::Response::new(Full::new(bytes));
                                *r.status_mut() = status;
                                for (name, value) in &headers {
                                    if name != hyper::header::CONTENT_LENGTH && name != hyper::header::TRANSFER_ENCODING
                                    {
                                        r.headers_mut().insert(name, value.clone());
                                    }
                                }
                                r
                            }
                            Err(_) => {
                                let mut r = hyper::Response::new(Full::new(Bytes::new()));
                                *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                                r
                            }
                        };
                        Ok(answer)
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(socket), service).await;
            });
        }
    });
    port
}

/// The event Lambda's SQS event source mapping makes of received messages.
fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: HashMap<String, String> =
                m.attributes.clone().unwrap_or_default().into_iter().map(|(k, v)| (k.as_str().to_owned(), v)).collect();
            json!({
                "messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body,
                "md5OfBody": m.md5_of_body, "attributes": attributes, "messageAttributes": {},
                "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// SESv2 answers 503 for 6 s under a queue of 20 emails, then recovers; an event source mapping
/// (emulated here: 1 s visibility, DLQ after 5 receives) keeps feeding email-sender.
/// Goal: every email sent exactly once after recovery, or in the DLQ; none lost, none twice.
pub async fn ses_outage(bin_dir: &Path, env: &[(String, String)]) -> DrillResult {
    let aws = AwsClients::new(&shared::clients::load_sdk_config().await, true);
    let endpoint = get(env, "AWS_ENDPOINT_URL").to_owned();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    // A sender of this run only: moto's store keeps every earlier run's messages, and a repeated
    // drill must count its own.
    let from = format!("drill-sender-{tag}@example.com");
    let from = from.as_str();
    aws.sesv2().create_email_identity().email_identity(from).send().await.expect("verify sender in moto");

    let dlq_url = aws
        .sqs()
        .create_queue()
        .queue_name(format!("drill-dlq-{tag}"))
        .send()
        .await
        .expect("dlq")
        .queue_url
        .expect("url");
    let dlq_arn = queue_arn(&aws, &dlq_url).await;
    let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}).to_string();
    let queue_url = aws
        .sqs()
        .create_queue()
        .queue_name(format!("drill-queue-{tag}"))
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    let arn = queue_arn(&aws, &queue_url).await;
    let producer = EmailQueue::new(aws.sqs().clone(), &queue_url);
    let n = 20;
    for i in 0..n {
        let to = EmailAddress::parse(&format!("user{i}@example.com")).expect("address");
        let content = EmailContent::PasswordReset(PasswordReset { token: format!("tok{i}"), expires_in_minutes: 30 });
        let job = EmailJob::new(to, content, format!("drill-{tag}-{i}")).expect("job");
        producer.send(&job).await.expect("enqueue");
    }

    let failing = Arc::new(AtomicBool::new(true));
    let proxy = flaky_proxy(endpoint.clone(), failing.clone()).await;
    let fenv = with(
        env,
        &[
            ("AWS_ENDPOINT_URL_SESV2", format!("http://127.0.0.1:{proxy}")),
            ("EMAIL_TRANSPORT", "ses".into()),
            ("EMAIL_FROM", from.into()),
        ],
    );
    let f = Function::start(bin_dir.join("email-sender"), &SpawnOptions { env: fenv, ..Default::default() })
        .await
        .expect("spawn");
    f.wait_ready(Duration::from_secs(10)).await.expect("init");

    let start = Instant::now();
    let (mut invocations, mut reported_failed) = (0usize, 0usize);
    while start.elapsed() < Duration::from_secs(20) {
        if start.elapsed() >= Duration::from_secs(6) {
            failing.store(false, Ordering::SeqCst);
        }
        let out = aws
            .sqs()
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        invocations += 1;
        let inv = f.invoke(&sqs_event(&messages, &arn), Duration::from_secs(30)).await.expect("invoke");
        let failed: HashSet<String> = if inv.is_error {
            messages.iter().filter_map(|m| m.message_id.clone()).collect()
        } else {
            inv.json()
                .ok()
                .and_then(|v| v["batchItemFailures"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                .collect()
        };
        reported_failed += failed.len();
        for m in &messages {
            if !m.message_id.as_ref().is_some_and(|id| failed.contains(id)) {
                let _ = aws
                    .sqs()
                    .delete_message()
                    .queue_url(&queue_url)
                    .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                    .send()
                    .await;
            }
        }
    }
    let logs = f.stop().await.logs;

    let data: Value = testkit::moto_data(&endpoint).await;
    let sent: Vec<String> = data["ses"]["Message"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["source"] == from)
        .filter_map(|m| m["destinations"]["ToAddresses"][0].as_str().map(str::to_owned))
        .collect();
    let distinct: HashSet<&String> = sent.iter().collect();
    let in_dlq = queue_messages(&aws, &dlq_url).await.len();
    let left = queue_messages(&aws, &queue_url).await.len();
    let passed = distinct.len() == sent.len() && sent.len() + in_dlq == n && left == 0 && !logs.contains("panicked");
    let markdown = format!(
        "### SES failing for a while under the email queue\n\n\
         {n} email jobs on a queue (visibility 1 s, DLQ after 5 receives) fed to the release email-sender the way \
         the SQS event source mapping does (batches of up to 10, delete only what the function did not report). \
         SESv2 answers 503 for the first 6 s (a proxy in front of moto), then recovers. Goal: every email sent \
         exactly once or in the DLQ; none lost, none sent twice.\n\n\
         | outcome | count |\n| --- | --- |\n| batches invoked | {invocations} |\n| records reported failed (retried) | {reported_failed} |\n\
         | emails sent | {} |\n| emails sent twice | {} |\n| in the DLQ | {in_dlq} |\n| still on the queue | {left} |\n\n\
         Result: **{}**.\n\n",
        sent.len(),
        sent.len() - distinct.len(),
        if passed { "pass" } else { "FAIL" },
    );
    let summary = format!(
        "sent {} of {n} ({} twice), DLQ {in_dlq}, left {left}, retried {reported_failed}",
        sent.len(),
        sent.len() - distinct.len()
    );
    DrillResult { markdown, summary, passed }
}

async fn queue_arn(aws: &AwsClients, url: &str) -> String {
    aws.sqs()
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("arn")
}
