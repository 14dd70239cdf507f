//! The `ops` binary against moto's SQS: `dlq-replay` moves dead letters back with their body and
//! attributes, and `poll-queue` feeds a queue to an invoke URL like an event source mapping,
//! deleting only what the function did not report as failed.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use serde_json::{Value, json};
use testkit::Provisioned;
use tokio::process::Command;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const OPS: &str = env!("CARGO_BIN_EXE_ops");

struct Queues {
    sqs: aws_sdk_sqs::Client,
    queue: String,
    queue_arn: String,
    dlq: String,
    _provisioned: Provisioned,
}

async fn queues() -> Queues {
    let provisioned = testkit::provision(&[]);
    let url = |logical: &str| provisioned.resources[logical]["url"].clone();
    Queues {
        sqs: testkit::aws_clients().await.sqs().clone(),
        queue: url("EmailQueue"),
        queue_arn: provisioned.resources["EmailQueue"]["arn"].clone(),
        dlq: url("EmailDeadLetterQueue"),
        _provisioned: provisioned,
    }
}

fn ops(args: &[&str]) -> Command {
    let mut cmd = Command::new(OPS);
    cmd.args(args)
        .env("AWS_ENDPOINT_URL", testkit::aws_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .kill_on_drop(true);
    cmd
}

async fn run(args: &[&str]) -> (bool, Value, String) {
    let out = ops(args).output().await.expect("run ops");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), serde_json::from_str(stdout.trim()).unwrap_or(Value::Null), stderr)
}

impl Queues {
    async fn send(&self, queue: &str, body: &str, tag: Option<&str>) {
        let mut send = self.sqs.send_message().queue_url(queue).message_body(body);
        if let Some(tag) = tag {
            send = send.message_attributes(
                "tag",
                MessageAttributeValue::builder().data_type("String").string_value(tag).build().unwrap(),
            );
        }
        send.send().await.unwrap();
    }

    /// Bodies and `tag` attributes of everything on `queue` (received, then made visible again).
    async fn drain(&self, queue: &str) -> HashMap<String, Option<String>> {
        let mut found = HashMap::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .visibility_timeout(30)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return found;
            }
            for m in messages {
                let tag = m.message_attributes.unwrap_or_default().get("tag").and_then(|a| a.string_value.clone());
                found.insert(m.body.unwrap_or_default(), tag);
            }
        }
    }

    async fn count(&self, queue: &str) -> (u64, u64) {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let a = out.attributes.unwrap_or_default();
        let n = |k: &QueueAttributeName| a.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            n(&QueueAttributeName::ApproximateNumberOfMessages),
            n(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

#[tokio::test]
async fn dlq_replay_moves_messages_back_with_their_attributes() {
    let q = queues().await;
    for i in 0..3 {
        q.send(&q.dlq, &format!(r#"{{"job":{i}}}"#), Some(&format!("t{i}"))).await;
    }
    q.send(&q.dlq, r#"{"job":"untagged"}"#, None).await;

    let (ok, out, err) = run(&["dlq-replay", "--from", &q.dlq, "--to", &q.queue, "--max", "2"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, json!({"moved": 2}));
    assert_eq!(q.count(&q.dlq).await, (2, 0));

    let (ok, out, err) = run(&["dlq-replay", "--from", &q.dlq, "--to", &q.queue]).await;
    assert!(ok, "{err}");
    assert_eq!(out, json!({"moved": 2}));
    assert_eq!(q.count(&q.dlq).await, (0, 0));

    let moved = q.drain(&q.queue).await;
    let expected: HashMap<String, Option<String>> = [
        (r#"{"job":0}"#, Some("t0")),
        (r#"{"job":1}"#, Some("t1")),
        (r#"{"job":2}"#, Some("t2")),
        (r#"{"job":"untagged"}"#, None),
    ]
    .into_iter()
    .map(|(b, t)| (b.to_owned(), t.map(str::to_owned)))
    .collect();
    assert_eq!(moved, expected);

    // Replaying a queue onto itself would never end.
    let (ok, _, err) = run(&["dlq-replay", "--from", &q.queue, "--to", &q.queue]).await;
    assert!(!ok);
    assert!(err.contains("same queue"), "{err}");
}

/// A function stand-in: fails the records whose body mentions "bad", keeps every event it got.
struct FailBad;

impl Respond for FailBad {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let event: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let failures: Vec<Value> = event["Records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["body"].as_str().unwrap_or("").contains("bad"))
            .map(|r| json!({"itemIdentifier": r["messageId"]}))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({ "batchItemFailures": failures }))
    }
}

#[tokio::test]
async fn poll_queue_invokes_with_sqs_events_and_deletes_only_what_succeeded() {
    let q = queues().await;
    let function = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2015-03-31/functions/email-sender/invocations"))
        .respond_with(FailBad)
        .mount(&function)
        .await;
    // Failed records come back quickly, as they would after a short visibility timeout.
    q.sqs
        .set_queue_attributes()
        .queue_url(&q.queue)
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .unwrap();
    q.send(&q.queue, r#"{"n":"good-1"}"#, Some("a")).await;
    q.send(&q.queue, r#"{"n":"bad"}"#, None).await;
    q.send(&q.queue, r#"{"n":"good-2"}"#, None).await;

    let invoke_url = format!("{}/2015-03-31/functions/email-sender/invocations", function.uri());
    let mut poller = ops(&["poll-queue", "--queue-url", &q.queue, "--invoke-url", &invoke_url, "--wait", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the poller");

    // Until both good messages are deleted and the bad one is still there (in flight).
    let started = Instant::now();
    loop {
        let (visible, in_flight) = q.count(&q.queue).await;
        if visible + in_flight == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "queue still holds {visible}+{in_flight}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    poller.kill().await.expect("stop the poller");

    let requests = function.received_requests().await.unwrap();
    assert!(!requests.is_empty());
    let event: Value = serde_json::from_slice(&requests[0].body).unwrap();
    let record = &event["Records"][0];
    assert_eq!(record["eventSource"], "aws:sqs");
    assert_eq!(record["eventSourceARN"], q.queue_arn.as_str());
    assert_eq!(record["awsRegion"], "us-east-1");
    assert!(record["receiptHandle"].is_string() && record["messageId"].is_string());
    assert_eq!(record["attributes"]["ApproximateReceiveCount"], "1");
    let tagged = requests
        .iter()
        .flat_map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["Records"].as_array().unwrap().clone())
        .find(|r| r["body"] == r#"{"n":"good-1"}"#)
        .expect("good-1 was delivered");
    assert_eq!(tagged["messageAttributes"]["tag"]["stringValue"], "a");

    // What is left is the failed record, back on the queue after its visibility timeout.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let left: Vec<String> = q.drain(&q.queue).await.into_keys().collect();
    assert_eq!(left, [r#"{"n":"bad"}"#]);
}

/// The DeadLetterQueueNotEmptyAlarm (template.yaml) reads the dead-letter queue's
/// ApproximateNumberOfMessagesVisible, which CloudWatch takes from the queue attribute
/// ApproximateNumberOfMessages. A job that fails every receive (the email queue's redrive policy,
/// maxReceiveCount 5) lands there and moves that number from 0 to 1, reaching the alarm's default
/// threshold (1); `ops dlq-replay`, the alarm's runbook, brings it back to 0.
#[tokio::test]
async fn a_job_that_fails_every_receive_moves_the_number_the_dlq_alarm_reads() {
    let q = queues().await;
    assert_eq!(q.count(&q.dlq).await, (0, 0));
    q.send(&q.queue, r#"{"job":"always-fails"}"#, None).await;
    // Each receive without a delete is one failed attempt (visibility 0: back at once).
    let start = Instant::now();
    while q.count(&q.dlq).await.0 == 0 {
        let _ = q.sqs.receive_message().queue_url(&q.queue).visibility_timeout(0).send().await.unwrap();
        assert!(start.elapsed() < Duration::from_secs(20), "the job never reached the dead-letter queue");
    }
    assert_eq!(q.count(&q.dlq).await, (1, 0), "the dead-letter queue's depth, as the alarm reads it");
    assert_eq!(q.count(&q.queue).await, (0, 0));

    let (ok, out, err) = run(&["dlq-replay", "--from", &q.dlq, "--to", &q.queue]).await;
    assert!(ok, "{err}");
    assert_eq!(out, json!({"moved": 1}));
    assert_eq!(q.count(&q.dlq).await, (0, 0));
}
