//! email-sender against moto's SQS, DynamoDB and SES: partial batch failures, redelivery without
//! a second send, a failing transport cycling through the queue into the dead-letter queue and
//! back with the DLQ replay, FIFO ordering, the concurrency bound, and HTML escaping end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageAttributeValue;
use email_sender::handler::{State, handle};
use futures::future::BoxFuture;
use shared::clock::now_ms;
use shared::deadline::Deadline;
use shared::email::transport::{SendOptions, Sent, Transport, TransportError};
use shared::email::{EmailMessage, FailureKind};
use shared::idempotency::{Claim, Fingerprint};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(30))
}

#[tokio::test]
async fn a_batch_of_five_with_one_bad_message_sends_four_and_reports_one() {
    let f = fixture(true).await;
    let state = f.state(&[]);
    for i in 0..4 {
        let job = order_job(&format!("ord_{i}"), &format!("buyer{i}@example.com"), vec![item("Mug", 2, 1250)]);
        f.enqueue(&job).await;
    }
    let bad = f.enqueue_raw(r#"{"v":1,"template":"newsletter","to":"x@example.com","data":{}}"#).await;

    let (event, messages) = f.receive(&f.queue_url, 5, Duration::from_secs(5)).await;
    assert_eq!(event.records.len(), 5);
    let response = handle(&state, event.clone(), deadline()).await;
    assert_eq!(failed_ids(&response), std::slice::from_ref(&bad));
    f.delete_succeeded(&f.queue_url, &messages, &failed_ids(&response)).await;

    let sent = f.sent().await;
    assert_eq!(sent.len(), 4, "{sent:#?}");
    let mut to: Vec<String> =
        sent.iter().map(|m| m["destinations"]["ToAddresses"][0].as_str().unwrap().into()).collect();
    to.sort();
    assert_eq!(to, ["buyer0@example.com", "buyer1@example.com", "buyer2@example.com", "buyer3@example.com"]);
    assert!(sent.iter().all(|m| m["subject"].as_str().unwrap().starts_with("Order ord_")));

    // The same batch again (a redelivery, as after a lost response): nothing is sent twice, and
    // the bad message fails again.
    let response = handle(&state, event, deadline()).await;
    assert_eq!(failed_ids(&response), [bad]);
    assert_eq!(f.sent().await.len(), 4);
    for key in ["order_confirmation:ord_0", "order_confirmation:ord_3"] {
        assert_eq!(state.idempotency.status(&format!("email:{key}")).await.unwrap().as_deref(), Some("COMPLETED"));
    }
}

#[tokio::test]
async fn the_same_key_in_two_messages_is_sent_once() {
    let f = fixture(true).await;
    let state = f.state(&[]);
    let job = order_job("ord_twice", "buyer@example.com", vec![item("Mug", 1, 500)]);
    // A producer that retried after a timeout: two messages, one key.
    f.enqueue(&job).await;
    f.enqueue(&job).await;
    let (event, _) = f.receive(&f.queue_url, 2, Duration::from_secs(5)).await;
    assert_eq!(event.records.len(), 2);
    // One at a time, so the second sees the first's completed claim (not its in-progress one).
    let mut first = event.clone();
    let second = first.records.split_off(1);
    assert!(failed_ids(&handle(&state, first, deadline()).await).is_empty());
    let mut rest = SqsEvent::default();
    rest.records = second;
    assert!(failed_ids(&handle(&state, rest, deadline()).await).is_empty());
    assert_eq!(f.sent().await.len(), 1);
}

#[tokio::test]
async fn a_message_without_a_key_is_deduplicated_by_its_message_id() {
    let f = fixture(true).await;
    let state = f.state(&[]);
    let id = f
        .enqueue_raw(r#"{"v":1,"template":"password_reset","to":"user@example.com","data":{"token":"t0k","expiresInMinutes":30}}"#)
        .await;
    let (event, _) = f.receive(&f.queue_url, 1, Duration::from_secs(5)).await;
    assert!(failed_ids(&handle(&state, event.clone(), deadline()).await).is_empty());
    assert!(failed_ids(&handle(&state, event, deadline()).await).is_empty());
    let sent = f.sent().await;
    assert_eq!(sent.len(), 1);
    assert!(sent[0]["body"].as_str().unwrap().contains("reset-password?token=t0k"), "{}", sent[0]["body"]);
    assert_eq!(state.idempotency.status(&format!("email:sqs:{id}")).await.unwrap().as_deref(), Some("COMPLETED"));
}

#[tokio::test]
async fn order_items_are_html_escaped_in_the_sent_email() {
    let f = fixture(true).await;
    let state = f.state(&[]);
    let job = order_job("ord_xss", "buyer@example.com", vec![item("<script>alert('x')</script>", 1, 100)]);
    f.enqueue(&job).await;
    let (event, _) = f.receive(&f.queue_url, 1, Duration::from_secs(5)).await;
    assert!(failed_ids(&handle(&state, event, deadline()).await).is_empty());
    let sent = f.sent().await;
    // moto keeps the HTML part when there is one.
    let html = sent[0]["body"].as_str().unwrap();
    assert!(html.contains("<table"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2f;script&gt;"), "{html}");
}

#[tokio::test]
async fn an_unverified_sender_is_a_permanent_failure_and_nothing_is_sent() {
    let f = fixture(false).await;
    let state = f.state(&[]);
    f.enqueue(&order_job("ord_unverified", "buyer@example.com", vec![])).await;
    let (event, messages) = f.receive(&f.queue_url, 1, Duration::from_secs(5)).await;
    let record = &event.records[0];
    let failure = email_sender::handler::process(&state, record, deadline()).await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Permanent, "{failure:?}");
    assert!(failure.reason.contains("MessageRejected"), "{}", failure.reason);
    let response = handle(&state, event, deadline()).await;
    assert_eq!(failed_ids(&response), [messages[0].message_id.clone().unwrap()]);
    assert!(f.sent().await.is_empty());
    // The claim was released: a later delivery (with a verified sender) will send it.
    assert_eq!(state.idempotency.status("email:order_confirmation:ord_unverified").await.unwrap(), None);
}

/// The event source mapping's loop, by hand: receive, invoke, delete what succeeded.
async fn cycle(f: &Fixture, state: &State) -> Option<Vec<String>> {
    let (event, messages) = f.receive(&f.queue_url, 10, Duration::from_secs(3)).await;
    if messages.is_empty() {
        return None;
    }
    let failed = failed_ids(&handle(state, event, deadline()).await);
    f.delete_succeeded(&f.queue_url, &messages, &failed).await;
    Some(failed)
}

#[tokio::test]
async fn a_failing_provider_sends_the_job_to_the_dlq_and_the_replay_brings_it_back() {
    let f = fixture(true).await;
    let provider = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500).set_body_string("down")).mount(&provider).await;
    let url = format!("{}/emails", provider.uri());
    let http = [
        ("EMAIL_TRANSPORT", "http"),
        ("EMAIL_HTTP_URL", url.as_str()),
        ("EMAIL_HTTP_API_KEY", "test-key"),
        ("OUTBOUND_MAX_ATTEMPTS", "2"),
    ];
    let state = f.state(&http);
    f.set_visibility_timeout(1).await;

    let job = order_job("ord_dlq", "buyer@example.com", vec![item("Mug", 1, 500)]);
    let attribute = MessageAttributeValue::builder().data_type("String").string_value("checkout").build().unwrap();
    let id = f
        .aws
        .sqs()
        .send_message()
        .queue_url(&f.queue_url)
        .message_body(job.to_json())
        .message_attributes("source", attribute)
        .send()
        .await
        .unwrap()
        .message_id
        .unwrap();

    // maxReceiveCount is 5: five deliveries fail (each retried once by the outbound client)...
    for receive in 1..=5 {
        let failed = cycle(&f, &state).await.unwrap_or_else(|| panic!("delivery {receive} never came"));
        assert_eq!(failed, std::slice::from_ref(&id), "delivery {receive}");
        // Reported, not deleted: invisible until the visibility timeout, then back.
        if receive == 1 {
            assert_eq!(f.visible_messages(&f.queue_url).await, 0);
            assert_eq!(state.idempotency.status("email:order_confirmation:ord_dlq").await.unwrap(), None);
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(provider.received_requests().await.unwrap().len(), 10);
    // ...and the next receive moves it to the dead-letter queue.
    assert!(cycle(&f, &state).await.is_none());
    assert_eq!(f.visible_messages(&f.dlq_url).await, 1);

    // The provider is fixed; the operator replays the DLQ.
    provider.reset().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header("authorization", "Bearer test-key"))
        .and(header("idempotency-key", "order_confirmation:ord_dlq"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": "prov_1"})))
        .expect(1)
        .mount(&provider)
        .await;
    let report = shared::email::dlq::replay(f.aws.sqs(), &f.dlq_url, &f.queue_url, None).await.unwrap();
    assert_eq!(report.moved, 1);
    assert_eq!(f.visible_messages(&f.dlq_url).await, 0);

    let (event, messages) = f.receive(&f.queue_url, 1, Duration::from_secs(5)).await;
    assert_eq!(messages[0].body.as_deref(), Some(job.to_json().as_str()));
    let attributes = messages[0].message_attributes.clone().unwrap_or_default();
    assert_eq!(attributes["source"].string_value.as_deref(), Some("checkout"));
    assert!(failed_ids(&handle(&state, event, deadline()).await).is_empty());
    f.delete_succeeded(&f.queue_url, &messages, &[]).await;
    provider.verify().await;
    let sent = provider.received_requests().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["to"], serde_json::json!(["buyer@example.com"]));
    assert_eq!(body["from"], f.from.as_str());
    assert!(body["html"].as_str().unwrap().contains("EUR 5.00"));
}

/// A transport that records what it is asked to send, fails for chosen recipients, and measures
/// how many sends overlap.
#[derive(Default)]
struct Recorder {
    sent: std::sync::Mutex<Vec<String>>,
    fail_for: Vec<String>,
    delay: Duration,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Transport for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn send<'a>(
        &'a self,
        message: &'a EmailMessage,
        _: &'a SendOptions,
    ) -> BoxFuture<'a, Result<Sent, TransportError>> {
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let to = message.to.as_str().to_owned();
            if self.fail_for.contains(&to) {
                return Err(TransportError {
                    transport: "recorder",
                    kind: FailureKind::Transient,
                    message: "503".into(),
                    maybe_sent: false,
                });
            }
            self.sent.lock().unwrap().push(to);
            Ok(Sent::default())
        })
    }
}

fn record(id: &str, job_json: String, arn: &str) -> SqsMessage {
    let mut r = SqsMessage::default();
    r.message_id = Some(id.to_owned());
    r.body = Some(job_json);
    r.event_source_arn = Some(arn.to_owned());
    r
}

fn batch(n: usize, arn: &str) -> SqsEvent {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut event = SqsEvent::default();
    for i in 0..n {
        let job = order_job(&format!("ord_{tag}_{i}"), &format!("b{i}@example.com"), vec![item("Mug", 1, 100)]);
        event.records.push(record(&format!("m{i}"), job.to_json(), arn));
    }
    event
}

#[tokio::test]
async fn fifo_batches_stop_at_the_first_failure_and_report_everything_after_it() {
    let f = fixture(true).await;
    let recorder = Arc::new(Recorder { fail_for: vec!["b1@example.com".into()], ..Recorder::default() });
    let state = State::with_transport(&f.settings(&[]), &f.aws, recorder.clone()).unwrap();
    let event = batch(4, "arn:aws:sqs:us-east-1:123456789012:jobs.fifo");
    let response = handle(&state, event, deadline()).await;
    assert_eq!(failed_ids(&response), ["m1", "m2", "m3"]);
    // m2 and m3 were never attempted: they must not overtake m1.
    assert_eq!(*recorder.sent.lock().unwrap(), ["b0@example.com"]);
    assert_eq!(recorder.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn standard_batches_run_concurrently_within_the_bound_and_report_only_failures() {
    let f = fixture(true).await;
    let recorder = Arc::new(Recorder {
        fail_for: vec!["b4@example.com".into()],
        delay: Duration::from_millis(150),
        ..Recorder::default()
    });
    let state = State::with_transport(&f.settings(&[("EMAIL_CONCURRENCY", "3")]), &f.aws, recorder.clone()).unwrap();
    let event = batch(9, &f.queue_arn);
    let response = handle(&state, event, deadline()).await;
    assert_eq!(failed_ids(&response), ["m4"]);
    assert_eq!(recorder.sent.lock().unwrap().len(), 8);
    let max = recorder.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "max in flight {max}");
}

#[tokio::test]
async fn a_key_held_by_a_live_invocation_is_retried_later_not_sent() {
    let f = fixture(true).await;
    let recorder = Arc::new(Recorder::default());
    let state = State::with_transport(&f.settings(&[]), &f.aws, recorder.clone()).unwrap();
    let event = batch(1, &f.queue_arn);
    let job = shared::email::EmailJob::from_json(event.records[0].body.as_deref().unwrap()).unwrap();
    let key = format!("email:{}", job.idempotency_key);
    // Another invocation holds the key for the next minute.
    assert!(matches!(state.idempotency.claim(&key, now_ms() + 60_000).await.unwrap(), Claim::Acquired(_)));

    let response = handle(&state, event, deadline()).await;
    assert_eq!(failed_ids(&response), ["m0"]);
    assert!(recorder.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn records_are_not_started_when_the_deadline_is_near() {
    let f = fixture(true).await;
    let recorder = Arc::new(Recorder::default());
    let state = State::with_transport(&f.settings(&[]), &f.aws, recorder.clone()).unwrap();
    let response = handle(&state, batch(2, &f.queue_arn), Deadline::after(Duration::from_millis(500))).await;
    assert_eq!(failed_ids(&response), ["m0", "m1"]);
    assert!(recorder.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_same_message_id_twice_in_one_batch_sends_one_email_and_reports_nothing() {
    let f = fixture(true).await;
    // Slow sends and room for both copies at once: without the batch's own dedup the second copy
    // would find the first's live claim and be reported failed (and redelivered) although sent.
    let recorder = Arc::new(Recorder { delay: Duration::from_millis(200), ..Recorder::default() });
    let state = State::with_transport(&f.settings(&[]), &f.aws, recorder.clone()).unwrap();
    let mut event = batch(2, &f.queue_arn);
    let copy = event.records[0].clone();
    event.records.insert(1, copy);
    assert_eq!(event.records.iter().filter(|r| r.message_id.as_deref() == Some("m0")).count(), 2);
    let response = handle(&state, event, deadline()).await;
    assert!(failed_ids(&response).is_empty(), "{:?}", failed_ids(&response));
    let mut sent = recorder.sent.lock().unwrap().clone();
    sent.sort();
    assert_eq!(sent, ["b0@example.com", "b1@example.com"]);
}

#[tokio::test]
async fn a_key_in_progress_elsewhere_is_waited_for_and_then_answered_as_a_duplicate() {
    let f = fixture(true).await;
    let recorder = Arc::new(Recorder::default());
    let settings = f.settings(&[("EMAIL_INPROGRESS_WAIT_MS", "8000")]);
    let state = State::with_transport(&settings, &f.aws, recorder.clone()).unwrap();
    let event = batch(1, &f.queue_arn);
    let job = shared::email::EmailJob::from_json(event.records[0].body.as_deref().unwrap()).unwrap();
    let key = format!("email:{}", job.idempotency_key);
    let payload = Fingerprint::of(job.to_json().as_bytes());
    // Another delivery holds the key for the next minute, and completes it a little later.
    let Claim::Acquired(held) = state.idempotency.claim_payload(&key, &payload, now_ms() + 60_000).await.unwrap()
    else {
        panic!("the other delivery's claim")
    };
    let other = state.idempotency.clone();
    let finisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        other.complete(&held).await.unwrap();
    });
    let done = email_sender::handler::process(&state, &event.records[0], deadline()).await;
    finisher.await.unwrap();
    assert_eq!(done, Ok(email_sender::handler::Done::Duplicate { template: job.content.template() }));
    assert!(recorder.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_job_replayed_with_another_payload_under_the_same_key_is_refused_not_sent() {
    let f = fixture(true).await;
    let recorder = Arc::new(Recorder::default());
    let state = State::with_transport(&f.settings(&[]), &f.aws, recorder.clone()).unwrap();
    let first = order_job("ord_replayed", "buyer@example.com", vec![item("Mug", 1, 500)]);
    let mut altered = order_job("ord_replayed", "attacker@example.com", vec![item("Mug", 1, 500)]);
    altered.idempotency_key = first.idempotency_key.clone();
    let event = |id: &str, job: &shared::email::EmailJob| {
        let mut e = SqsEvent::default();
        e.records.push(record(id, job.to_json(), &f.queue_arn));
        e
    };
    assert!(failed_ids(&handle(&state, event("m0", &first), deadline()).await).is_empty());
    let failure =
        email_sender::handler::process(&state, &event("m1", &altered).records[0], deadline()).await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Permanent, "{failure:?}");
    assert!(failure.reason.contains("another payload"), "{}", failure.reason);
    assert_eq!(*recorder.sent.lock().unwrap(), ["buyer@example.com"]);
}

#[tokio::test]
async fn a_batch_near_its_deadline_reports_the_records_it_did_not_start() {
    let f = fixture(true).await;
    // One at a time, each send taking 1 s, 2.2 s left: the first starts with more than the
    // 1.5 s reserve, the next ones would start with about 1.2 s left and are not started.
    let recorder = Arc::new(Recorder { delay: Duration::from_secs(1), ..Recorder::default() });
    let state = State::with_transport(&f.settings(&[("EMAIL_CONCURRENCY", "1")]), &f.aws, recorder.clone()).unwrap();
    let response = handle(&state, batch(3, &f.queue_arn), Deadline::after(Duration::from_millis(2200))).await;
    assert_eq!(failed_ids(&response), ["m1", "m2"]);
    assert_eq!(*recorder.sent.lock().unwrap(), ["b0@example.com"]);
}

#[tokio::test]
async fn a_send_still_running_at_the_deadline_is_reported_and_the_batch_still_answers() {
    let f = fixture(true).await;
    // A provider that hangs past the invocation: the batch must answer before Lambda's timeout
    // would drop its whole partial response.
    let recorder = Arc::new(Recorder { delay: Duration::from_secs(120), ..Recorder::default() });
    let state = State::with_transport(&f.settings(&[]), &f.aws, recorder.clone()).unwrap();
    let response = handle(&state, batch(2, &f.queue_arn), Deadline::after(Duration::from_millis(2500))).await;
    assert_eq!(failed_ids(&response), ["m0", "m1"]);
    assert!(recorder.sent.lock().unwrap().is_empty());
}

/// At most once where SES cannot tell. SES (moto) behind a proxy that passes the request on at
/// once and holds SES's answer back past the send's deadline: SES sent the email, the client
/// timed out. The claim is held, not released, so the redelivery right after sends nothing; once
/// the hold is over a delivery sends again (the possible duplicate the metric counts).
#[tokio::test]
async fn a_send_that_timed_out_after_it_left_is_held_not_resent_at_once() {
    const HOLD_SECS: u64 = 4;
    let f = fixture(true).await;
    let late = testkit::LateProxy::start(&f.endpoint, Duration::from_secs(10)).await;
    let ses = testkit::aws_clients_at(&late.endpoint).await.sesv2().clone();
    let settings = f.settings(&[("EMAIL_UNKNOWN_OUTCOME_HOLD_SECONDS", &HOLD_SECS.to_string())]);
    let transport = Arc::new(shared::email::transport::SesTransport::new(ses, None));
    let state = State::with_transport(&settings, &f.aws, transport).unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let job = order_job(&format!("ord_late_{tag}"), "late@example.com", vec![item("Mug", 1, 100)]);
    let key = format!("email:order_confirmation:ord_late_{tag}");
    let event = || {
        let mut event = SqsEvent::default();
        event.records.push(record("m-late", job.to_json(), &f.queue_arn));
        event
    };

    // The send leaves, SES sends, the answer comes after the send's deadline.
    let response = handle(&state, event(), Deadline::after(Duration::from_secs(4))).await;
    assert_eq!(failed_ids(&response), ["m-late"]);
    assert_eq!(late.forwarded(), 1, "the request reached SES");
    assert_eq!(f.sent().await.len(), 1, "SES sent it although the client timed out");
    assert_eq!(state.idempotency.status(&key).await.unwrap().as_deref(), Some("INPROGRESS"), "held, not released");

    // SES answers at once from now on; the redelivery within the hold sends nothing.
    late.set_delay(Duration::ZERO);
    let held_since = std::time::Instant::now();
    let response = handle(&state, event(), deadline()).await;
    assert_eq!(failed_ids(&response), ["m-late"], "held: reported for a later delivery");
    assert_eq!(late.forwarded(), 1, "no second SendEmail within the hold");
    assert_eq!(f.sent().await.len(), 1);

    // After the hold, a delivery sends again: bounded, and the duplicate it may be was counted.
    tokio::time::sleep(Duration::from_secs(HOLD_SECS + 1).saturating_sub(held_since.elapsed())).await;
    let response = handle(&state, event(), deadline()).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(f.sent().await.len(), 2);
    assert_eq!(state.idempotency.status(&key).await.unwrap().as_deref(), Some("COMPLETED"));
}
