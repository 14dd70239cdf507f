//! The custom resource against a real local Secrets Manager (moto) and a local HTTP server in
//! place of CloudFormation's presigned response URL.

use aws_lambda_events::cloudformation::CloudFormationCustomResourceRequest as Request;
use serde_json::{Value, json};
use shared::auth::access::public_key_of;
use signing_key::{KeyProperties, State};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn secrets() -> aws_sdk_secretsmanager::Client {
    // The shared SdkConfig pointed at the test stack's moto, as every other test client.
    testkit::aws_clients().await.secretsmanager().clone()
}

/// A secret as the template makes it (a generated placeholder the resource replaces).
async fn secret(sm: &aws_sdk_secretsmanager::Client) -> String {
    let name = format!("signing-key-{}", uuid::Uuid::new_v4());
    sm.create_secret().name(name).secret_string("placeholder").send().await.expect("secret").arn.expect("arn")
}

async fn stored(sm: &aws_sdk_secretsmanager::Client, arn: &str) -> String {
    sm.get_secret_value().secret_id(arn).send().await.expect("read").secret_string.expect("text")
}

fn request(kind: &str, url: &str, props: Value, old: Option<Value>) -> Request<KeyProperties, KeyProperties> {
    let mut r = json!({
        "RequestType": kind, "ResponseURL": url, "StackId": "arn:aws:cloudformation:eu-west-1:1:stack/s/1",
        "RequestId": "req-1", "ResourceType": "Custom::SigningKey", "LogicalResourceId": "SigningKey",
        "ResourceProperties": props,
    });
    if kind != "Create" {
        r["PhysicalResourceId"] = json!("earlier");
    }
    if let Some(old) = old {
        r["OldResourceProperties"] = old;
    }
    serde_json::from_value(r).expect("a CloudFormation request")
}

/// Runs one request and returns what was PUT to the response URL.
async fn answer(state: &State, make: impl FnOnce(&str) -> Request<KeyProperties, KeyProperties>) -> Value {
    let cfn = MockServer::start().await;
    Mock::given(method("PUT")).respond_with(ResponseTemplate::new(200)).mount(&cfn).await;
    signing_key::answer(state, make(&format!("{}/response", cfn.uri()))).await.expect("answered");
    let got = cfn.received_requests().await.expect("recorded");
    assert_eq!(got.len(), 1, "one answer");
    assert!(!got[0].headers.contains_key("content-type"), "the presigned URL signs no Content-Type");
    serde_json::from_slice(&got[0].body).expect("json answer")
}

#[tokio::test]
async fn create_stores_the_private_half_and_answers_only_the_public_half() {
    let sm = secrets().await;
    let arn = secret(&sm).await;
    let state = State::new(testkit::aws_clients().await);
    let props = json!({"ServiceToken": "arn:fn", "SecretId": arn, "KeyId": "staging-1"});
    let got = answer(&state, |url| request("Create", url, props, None)).await;

    assert_eq!(got["Status"], "SUCCESS", "{got}");
    let private = stored(&sm, &arn).await;
    let public = public_key_of("staging-1", &private).expect("an Ed25519 key in the secret").to_entry();
    assert_eq!(got["Data"]["PublicKeys"], public);
    assert_eq!(got["Data"]["KeyId"], "staging-1");
    assert!(!got.to_string().contains(&private), "the private half never leaves the secret");
}

#[tokio::test]
async fn a_new_generation_rolls_the_key_and_keeps_the_old_public_half_listed() {
    let sm = secrets().await;
    let arn = secret(&sm).await;
    let state = State::new(testkit::aws_clients().await);
    let v1 = json!({"SecretId": arn, "KeyId": "prod-1", "Generation": "1"});
    answer(&state, |url| request("Create", url, v1.clone(), None)).await;
    let first = public_key_of("prod-1", &stored(&sm, &arn).await).unwrap().to_entry();

    // Same properties: the same key.
    let same = answer(&state, |url| request("Update", url, v1.clone(), Some(v1.clone()))).await;
    assert_eq!(same["Data"]["PublicKeys"], first);

    let v2 = json!({"SecretId": arn, "KeyId": "prod-2", "Generation": "1"});
    let rolled = answer(&state, |url| request("Update", url, v2, Some(v1.clone()))).await;
    let second = public_key_of("prod-2", &stored(&sm, &arn).await).unwrap().to_entry();
    assert_ne!(first, second);
    assert_eq!(rolled["Data"]["PublicKeys"], format!("{second},{first}"));
    assert_eq!(rolled["Data"]["KeyId"], "prod-2");
}

#[tokio::test]
async fn a_secret_it_cannot_write_is_a_failed_answer_naming_the_permission() {
    let state = State::new(testkit::aws_clients().await);
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf";
    let props = json!({"SecretId": missing, "KeyId": "dev-1"});
    let got = answer(&state, |url| request("Create", url, props, None)).await;
    assert_eq!(got["Status"], "FAILED");
    let reason = got["Reason"].as_str().expect("a reason");
    assert!(reason.contains(missing) && reason.contains("secretsmanager:PutSecretValue"), "{reason}");
}
