//! stripe-webhook configuration, from the environment.

use shared::config::{ConfigError, EnvReader, FromEnv};
use shared::idempotency::IdempotencySettings;
use shared::payments::{StripeApiSettings, VerifierSettings};

#[derive(Clone, Debug)]
pub struct Settings {
    pub verifier: VerifierSettings,
    pub idempotency: IdempotencySettings,
    pub orders_table: String,
    pub subscriptions_table: String,
    pub email_queue_url: String,
    /// The Stripe API, for thin events (`STRIPE_API_KEY`, `STRIPE_API_BASE_URL`, `STRIPE_API_VERSION`).
    pub stripe_api: StripeApiSettings,
}

impl FromEnv for Settings {
    fn from_env(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let settings = Settings {
            verifier: VerifierSettings::from_env(&mut env),
            idempotency: IdempotencySettings::from_env(&mut env),
            orders_table: env.required("ORDERS_TABLE", "the DynamoDB orders table name"),
            subscriptions_table: env.required("SUBSCRIPTIONS_TABLE", "the DynamoDB subscriptions table name"),
            email_queue_url: env.required("EMAIL_QUEUE_URL", "the URL of the SQS email queue"),
            stripe_api: StripeApiSettings::from_env(&mut env),
        };
        let url = &settings.email_queue_url;
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            env.reject("EMAIL_QUEUE_URL", "the URL of the SQS email queue", "not an http(s) URL");
        }
        env.finish(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(vars: &[(&str, &str)]) -> EnvReader<'static> {
        EnvReader::from_pairs(vars)
    }

    #[test]
    fn every_missing_variable_is_named_at_once() {
        let err = Settings::from_env(reader(&[])).unwrap_err();
        let names: Vec<_> = err.problems.iter().map(|p| p.variable.as_str()).collect();
        assert_eq!(
            names,
            ["STRIPE_WEBHOOK_SECRET", "IDEMPOTENCY_TABLE", "ORDERS_TABLE", "SUBSCRIPTIONS_TABLE", "EMAIL_QUEUE_URL"]
        );
    }

    #[test]
    fn a_complete_environment_is_read() {
        let s = Settings::from_env(reader(&[
            ("STRIPE_WEBHOOK_SECRET", "whsec_a,whsec_b"),
            ("STRIPE_WEBHOOK_TOLERANCE_SECS", "600"),
            ("IDEMPOTENCY_TABLE", "Idem"),
            ("ORDERS_TABLE", "Orders"),
            ("SUBSCRIPTIONS_TABLE", "Subs"),
            ("EMAIL_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/1/Email"),
        ]))
        .unwrap();
        assert_eq!(s.verifier.secrets.len(), 2);
        assert_eq!(s.verifier.tolerance.as_secs(), 600);
        assert_eq!(s.idempotency.expires_after.as_secs(), 7 * 24 * 3600);
        let err = Settings::from_env(reader(&[
            ("STRIPE_WEBHOOK_SECRET", "whsec_a"),
            ("IDEMPOTENCY_TABLE", "Idem"),
            ("ORDERS_TABLE", "Orders"),
            ("SUBSCRIPTIONS_TABLE", "Subs"),
            ("EMAIL_QUEUE_URL", "Email"),
        ]))
        .unwrap_err();
        assert_eq!(err.problems[0].variable, "EMAIL_QUEUE_URL");
    }
}
