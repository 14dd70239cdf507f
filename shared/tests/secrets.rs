//! Secrets read at init (shared::config::secrets) against a real local Secrets Manager (moto).

use shared::config::EnvReader;
use shared::config::secrets::{SecretCause, load, secret_variables};

async fn client() -> aws_sdk_secretsmanager::Client {
    // The shared SdkConfig pointed at the test stack's moto, as every other test client.
    testkit::aws_clients().await.secretsmanager().clone()
}

fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4())
}

#[tokio::test]
async fn a_secret_named_by_its_arn_is_the_value_of_its_variable() {
    let sm = client().await;
    let arn = sm
        .create_secret()
        .name(unique("cursor"))
        .secret_string("generated-by-secrets-manager-0123456789abcdef")
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn");
    let env = [("POSTS_CURSOR_SECRET_SECRET_ARN".to_owned(), arn), ("POSTS_TABLE".to_owned(), "posts".to_owned())];
    let loaded = load(&sm, secret_variables(env.clone())).await.expect("loaded");
    assert_eq!(loaded.len(), 1);
    assert!(!format!("{loaded:?}").contains("generated"), "Debug shows names only");

    // The settings code reads the variable itself; the environment holds only the ARN.
    let mut reader =
        EnvReader::from_fn(move |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())).with_secrets(loaded);
    assert_eq!(reader.secret("POSTS_CURSOR_SECRET", "a key").expose(), "generated-by-secrets-manager-0123456789abcdef");
    assert!(reader.finish(()).is_ok());
}

#[tokio::test]
async fn a_secret_that_cannot_be_read_fails_naming_it_and_the_permission() {
    let sm = client().await;
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:not-there-AbCdEf".to_owned();
    let err = load(&sm, vec![("REFRESH_TOKEN_SECRET".into(), missing.clone())]).await.expect_err("no such secret");
    assert!(matches!(err.cause, SecretCause::Call(_)));
    let line = err.to_string();
    assert!(line.contains("REFRESH_TOKEN_SECRET") && line.contains(&missing), "{line}");
    assert!(line.contains("secretsmanager:GetSecretValue"), "{line}");
    assert!(line.contains("ResourceNotFound"), "the service's own reason: {line}");
}
