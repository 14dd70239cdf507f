//! The real `email-sender` binary under a local Lambda Runtime API, fed the sample events of
//! `events/email-sender/`: the answer is Lambda's partial-batch response, the log transport prints
//! each email, and every failure is logged with its kind.

use std::time::Duration;

use crate::common::*;
use lambda_harness::{Function, SpawnOptions};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_email-sender");

fn sample(name: &str) -> Value {
    let path = testkit::workspace_root().join("events/email-sender").join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

async fn start(f: &Fixture, extra: &[(&str, &str)]) -> Function {
    let mut env: Vec<(String, String)> = f.env.clone().into_iter().collect();
    env.extend(
        [
            ("AWS_ENDPOINT_URL", f.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let function = Function::start(BINARY, &SpawnOptions { env, ..SpawnOptions::default() }).await.expect("spawn");
    if let Err(e) = function.wait_ready(Duration::from_secs(60)).await {
        panic!("init failed: {e}\n{}", function.logs());
    }
    function
}

#[tokio::test]
async fn sample_batches_through_the_binary_report_only_the_bad_records() {
    let f = fixture(true).await;
    let function = start(&f, &[("EMAIL_TRANSPORT", "log")]).await;

    let answer = function.invoke(&sample("good-batch.json"), Duration::from_secs(30)).await.unwrap();
    assert_eq!(answer.json().unwrap(), json!({"batchItemFailures": []}), "{}", function.logs());
    let logs = function.logs();
    assert_eq!(logs.matches(r#""emailTransport":"log""#).count(), 2, "{logs}");
    assert!(logs.contains(r#""subject":"Order ord_sample_1 confirmed""#), "{logs}");
    assert!(logs.contains("https://app.example.com/reset-password?token=sample-reset-token"), "{logs}");

    let answer = function.invoke(&sample("batch-with-bad-messages.json"), Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        answer.json().unwrap(),
        json!({"batchItemFailures": [
            {"itemIdentifier": "0d6ad4b1-3a4c-4c55-9d1f-000000000012"},
            {"itemIdentifier": "0d6ad4b1-3a4c-4c55-9d1f-000000000013"},
            {"itemIdentifier": "0d6ad4b1-3a4c-4c55-9d1f-000000000014"},
        ]}),
        "{}",
        function.logs()
    );
    let logs = function.logs();
    assert_eq!(logs.matches(r#""failure":"permanent""#).count(), 3, "{logs}");
    assert!(logs.contains("unknown variant `newsletter`"), "{logs}");
    assert!(logs.contains("not a valid email address"), "{logs}");

    // The good batch again: both are duplicates, nothing printed.
    let answer = function.invoke(&sample("good-batch.json"), Duration::from_secs(30)).await.unwrap();
    assert_eq!(answer.json().unwrap(), json!({"batchItemFailures": []}));
    assert_eq!(function.logs().matches(r#""emailTransport":"log""#).count(), 3);
    assert!(!function.logs().contains("panicked"));
    function.stop().await;
}

#[tokio::test]
async fn a_misconfigured_function_fails_its_init_naming_the_variables() {
    let function = Function::start(
        BINARY,
        &SpawnOptions { env: vec![("EMAIL_TRANSPORT".into(), "smtp".into())], ..Default::default() },
    )
    .await
    .expect("spawn");
    assert!(function.wait_ready(Duration::from_secs(30)).await.is_err());
    let report = function.stop().await;
    for name in ["EMAIL_TRANSPORT", "EMAIL_FROM", "APP_URL", "IDEMPOTENCY_TABLE"] {
        assert!(report.logs.contains(name), "{name}: {}", report.logs);
    }
}
