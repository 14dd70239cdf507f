//! email-sender configuration, from the environment.

use shared::config::{ConfigError, EnvReader, FromEnv};
use shared::email::EmailSettings;
use shared::idempotency::IdempotencySettings;

/// Records of one batch processed at the same time, unless `EMAIL_CONCURRENCY` says otherwise.
pub const DEFAULT_CONCURRENCY: u64 = 8;
/// How long a job whose send has an unknown outcome is held back, unless
/// `EMAIL_UNKNOWN_OUTCOME_HOLD_SECONDS` says otherwise: 120 s. It must end before the queue gives
/// up on the message (EmailQueue: visibility 60 s × maxReceiveCount 5), so the job is sent
/// again, not dead-lettered, once the window is over.
pub const DEFAULT_UNKNOWN_OUTCOME_HOLD_SECS: u64 = 120;

#[derive(Clone, Debug)]
pub struct Settings {
    pub email: EmailSettings,
    pub idempotency: IdempotencySettings,
    /// How many records of a batch are in flight at once (FIFO batches: one).
    pub concurrency: usize,
    /// How long a record waits on another delivery's live claim of its key before it is reported
    /// failed (`EMAIL_INPROGRESS_WAIT_MS`, 0 to 10000, default 0: report at once).
    pub inprogress_wait: std::time::Duration,
    /// How long a send with an unknown outcome keeps its key from being sent again
    /// (`EMAIL_UNKNOWN_OUTCOME_HOLD_SECONDS`, 1 to 200, default 120).
    pub unknown_outcome_hold: std::time::Duration,
}

impl FromEnv for Settings {
    fn from_env(mut env: EnvReader<'_>) -> Result<Self, ConfigError> {
        let settings = Settings {
            email: EmailSettings::from_env(&mut env),
            idempotency: IdempotencySettings::from_env(&mut env),
            concurrency: env.int_in("EMAIL_CONCURRENCY", DEFAULT_CONCURRENCY, 1..=64) as usize,
            inprogress_wait: env.millis("EMAIL_INPROGRESS_WAIT_MS", 0, 0..=10_000),
            unknown_outcome_hold: env.seconds(
                "EMAIL_UNKNOWN_OUTCOME_HOLD_SECONDS",
                DEFAULT_UNKNOWN_OUTCOME_HOLD_SECS,
                1..=200,
            ),
        };
        env.finish(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_missing_variable() {
        let vars = |k: &str| match k {
            "EMAIL_FROM" => Some("shop@example.com".to_owned()),
            "APP_URL" => Some("https://app.example.com".to_owned()),
            "IDEMPOTENCY_TABLE" => Some("t".to_owned()),
            _ => None,
        };
        let s = Settings::from_env(EnvReader::from_fn(vars)).unwrap();
        assert_eq!(s.concurrency, 8);
        assert!(s.inprogress_wait.is_zero());
        assert_eq!(s.unknown_outcome_hold.as_secs(), 120);
        let err =
            Settings::from_env(EnvReader::from_fn(|k| (k == "EMAIL_CONCURRENCY").then(|| "0".into()))).unwrap_err();
        let names: Vec<_> = err.problems.iter().map(|p| p.variable.as_str()).collect();
        assert_eq!(names, ["EMAIL_FROM", "APP_URL", "IDEMPOTENCY_TABLE", "EMAIL_CONCURRENCY"]);
    }
}
