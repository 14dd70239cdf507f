//! A batch of SQS records in, the ids of the records that failed out.
//!
//! Each record is one email job. It is parsed, rendered, claimed in the idempotency table under
//! `email:{idempotencyKey}` (the SQS message id when the job has no key), sent, and the claim
//! completed; a failed send releases the claim so the next delivery tries again. A send whose
//! outcome is unknown (it timed out or broke after the request left: SES may have sent it, and
//! SES has no idempotency key) is not released: the claim is held for `unknown_outcome_hold`
//! (120 s by default), so no delivery sends it again within that window, and it is counted as
//! `EmailsOutcomeUnknown` (alarmed: each one is a possible duplicate once the window is over and
//! a later delivery sends again). See `docs/limits.md`. A key that is
//! already COMPLETED is a redelivery: success, nothing sent. A key another invocation holds is a
//! failure to retry later.
//!
//! Every failure, transient (throttling, 5xx, timeouts, a key held elsewhere) or permanent (an
//! unparseable body, an unknown template, an invalid address, a rejected sender), is reported in
//! `batchItemFailures`, so the queue redelivers it and, after `maxReceiveCount` receives, moves it
//! to the dead-letter queue: nothing is dropped. The log says which kind each failure is and why.
//!
//! Standard queues: records run concurrently, at most `EMAIL_CONCURRENCY` at a time. FIFO queues
//! (the source ARN ends in `.fifo`): records run in order and the first failure stops the batch;
//! it and every later record are reported, so none overtakes an earlier one of its group.
//! Records that would start too close to the invocation's deadline are not started but reported,
//! so a slow batch never times out as a whole.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use shared::clients::AwsClients;
use shared::deadline::Deadline;
use shared::email::transport::{self, SendOptions, Transport};
use shared::email::{EmailAddress, EmailJob};
use shared::email::{FailureKind, Templates};
use shared::idempotency::{Claim, Fingerprint, IdempotencyError, IdempotencyStore};

use crate::settings::Settings;

/// The counters this function emits (their names are read by tests/template; see `shared::metrics::Metric`).
mod metric {
    use shared::metrics::Metric;

    /// Records left for the next delivery because the invocation ran short of time.
    pub const BATCH_RECORDS_CUT_OFF: Metric = "EmailBatchRecordsCutOff";
    /// Records of a batch whose message id repeated an earlier record's.
    pub const BATCH_REPEATED_MESSAGE_IDS: Metric = "EmailBatchRepeatedMessageIds";
    /// A send retried within the invocation.
    pub const RETRIED: Metric = "EmailsRetried";
    /// An email sent.
    pub const SENT: Metric = "EmailsSent";
    /// A job whose email had already been sent (idempotency).
    pub const DUPLICATE: Metric = "EmailsDuplicate";
    /// A job that failed, by kind (transient: back to the queue; permanent: to the dead-letter
    /// queue after its receives); the permanent ones page (EmailPermanentFailuresAlarm).
    pub const FAILED: Metric = "EmailsFailed";
    /// A send whose outcome is unknown (timed out after the request left): its claim is held,
    /// and a later resend is a possible duplicate (EmailsOutcomeUnknownAlarm).
    pub const OUTCOME_UNKNOWN: Metric = "EmailsOutcomeUnknown";
}

/// A record is not started with less than this left before the deadline.
pub const START_RESERVE: Duration = Duration::from_millis(1500);
/// A send must be over this long before the deadline, to leave time to release or complete the
/// claim and answer.
pub const SEND_RESERVE: Duration = Duration::from_millis(500);
/// The batch answers this long before the deadline, whatever is still running.
pub const ANSWER_RESERVE: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct State {
    pub templates: Arc<Templates>,
    pub transport: Arc<dyn Transport>,
    pub idempotency: IdempotencyStore,
    pub from: EmailAddress,
    pub concurrency: usize,
    /// How long a record waits on a live claim of its key held by another delivery.
    pub inprogress_wait: Duration,
    /// How long a send with an unknown outcome keeps its key from being sent again.
    pub unknown_outcome_hold: Duration,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("transport", &self.transport.name())
            .field("from", &self.from)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("email templates: {0}")]
    Templates(#[from] shared::email::RenderError),
}

impl State {
    /// Everything built once: templates parsed, the transport `EMAIL_TRANSPORT` names (with its
    /// HTTP client), the idempotency store.
    pub fn new(settings: &Settings, aws: &AwsClients) -> Result<Self, InitError> {
        let transport = transport::from_settings(&settings.email, aws.sesv2());
        Self::with_transport(settings, aws, transport)
    }

    /// [`new`](Self::new) with a transport of the caller's choosing.
    pub fn with_transport(
        settings: &Settings,
        aws: &AwsClients,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, InitError> {
        Ok(Self {
            templates: Arc::new(Templates::new(settings.email.app_url.clone())?),
            transport,
            idempotency: IdempotencyStore::new(aws.dynamodb().clone(), &settings.idempotency),
            from: settings.email.from.clone(),
            concurrency: settings.concurrency.max(1),
            inprogress_wait: settings.inprogress_wait,
            unknown_outcome_hold: settings.unknown_outcome_hold,
        })
    }
}

impl shared::runtime::Function for State {
    type Settings = Settings;

    async fn init(settings: &Settings) -> Result<Self, lambda_runtime::Error> {
        Ok(Self::new(settings, &AwsClients::load(false).await)?)
    }
}

/// What became of a record that did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    Sent {
        template: &'static str,
        provider_id: Option<String>,
    },
    /// Sent before (the key is COMPLETED): nothing sent now.
    Duplicate {
        template: &'static str,
    },
}

/// Why a record failed, and whether a retry may help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub reason: String,
    /// The job's template, when the message could be read that far.
    pub template: Option<&'static str>,
}

impl Failure {
    fn transient(reason: impl Into<String>) -> Self {
        Self { kind: FailureKind::Transient, reason: reason.into(), template: None }
    }
    fn permanent(reason: impl Into<String>) -> Self {
        Self { kind: FailureKind::Permanent, reason: reason.into(), template: None }
    }
    fn of(mut self, template: &'static str) -> Self {
        self.template = Some(template);
        self
    }
}

/// The batch: returns the ids of the failed records only.
///
/// Lambda drops the whole answer of an invocation that times out (every record comes back, sent
/// or not), so the batch answers by [`ANSWER_RESERVE`] before the deadline whatever happens:
/// records not started by then, or still running, are reported failed.
pub async fn handle(state: &State, event: SqsEvent, deadline: Deadline) -> SqsBatchResponse {
    let received = event.records.len();
    let records = distinct(event.records);
    let fifo = records.iter().any(|r| r.event_source_arn.as_deref().is_some_and(|arn| arn.ends_with(".fifo")));
    let answer_by = deadline.at.checked_sub(ANSWER_RESERVE).unwrap_or(deadline.at);
    // One slot per record, filled as records finish; `None` when cut off at `answer_by`.
    let mut results: Vec<Option<Result<Done, Failure>>> = vec![None; records.len()];

    if fifo {
        let run = async {
            for (slot, record) in results.iter_mut().zip(&records) {
                let result = process_logged(state, record, deadline).await;
                let failed = result.is_err();
                *slot = Some(result);
                if failed {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout_at(answer_by.into(), run).await;
    } else {
        let run = futures::stream::iter(records.iter().cloned().enumerate())
            .map(|(i, record)| async move { (i, process_logged(state, &record, deadline).await) })
            .buffer_unordered(state.concurrency)
            .for_each(|(i, result)| {
                results[i] = Some(result);
                std::future::ready(())
            });
        let _ = tokio::time::timeout_at(answer_by.into(), run).await;
    }

    let mut response = SqsBatchResponse::default();
    let (mut sent, mut duplicates, mut cut_off) = (0usize, 0usize, 0usize);
    let mut stopped = false;
    for (record, result) in records.iter().zip(results) {
        let message_id = record.message_id.as_deref();
        match result {
            Some(Ok(Done::Sent { .. })) => sent += 1,
            Some(Ok(Done::Duplicate { .. })) => duplicates += 1,
            Some(Err(_)) => {
                stopped = fifo;
                // A record without an id cannot be named; an empty id makes Lambda retry the
                // whole batch, which loses nothing (the sent ones are duplicates next time).
                response.add_failure(message_id.unwrap_or_default().to_owned());
            }
            None if stopped => {
                tracing::warn!(message_id, "not processed: an earlier record of this FIFO batch failed");
                response.add_failure(message_id.unwrap_or_default().to_owned());
            }
            None => {
                cut_off += 1;
                tracing::warn!(message_id, "not finished before the invocation's deadline; reported for redelivery");
                response.add_failure(message_id.unwrap_or_default().to_owned());
            }
        }
    }
    shared::metrics::count(metric::BATCH_RECORDS_CUT_OFF, cut_off as u64);
    tracing::info!(
        records = received,
        distinct = records.len(),
        sent,
        duplicates,
        cut_off,
        failed = response.batch_item_failures.len(),
        fifo,
        "email batch done"
    );
    response
}

/// The batch without repeated `messageId`s: SQS may hand the same message twice in one batch
/// (a redelivery racing the first receive); it is processed once, and its one outcome answers
/// for both copies (`batchItemFailures` names message ids, not positions).
fn distinct(records: Vec<SqsMessage>) -> Vec<SqsMessage> {
    let mut seen = std::collections::HashSet::new();
    let before = records.len();
    let kept: Vec<SqsMessage> = records
        .into_iter()
        .filter(|r| match r.message_id.as_deref() {
            Some(id) => seen.insert(id.to_owned()),
            None => true,
        })
        .collect();
    if kept.len() < before {
        let repeated = before - kept.len();
        tracing::warn!(repeated, "the same messageId more than once in one batch; processed once");
        shared::metrics::count(metric::BATCH_REPEATED_MESSAGE_IDS, repeated as u64);
    }
    kept
}

/// [`process`] with one log line per record saying what happened.
async fn process_logged(state: &State, record: &SqsMessage, deadline: Deadline) -> Result<Done, Failure> {
    let message_id = record.message_id.as_deref().unwrap_or("");
    let receive_count = record.attributes.get("ApproximateReceiveCount").map(String::as_str);
    let result = process(state, record, deadline).await;
    if receive_count.and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n > 1) {
        shared::metrics::count(metric::RETRIED, 1);
    }
    match &result {
        Ok(Done::Sent { .. }) => shared::metrics::count(metric::SENT, 1),
        Ok(Done::Duplicate { .. }) => shared::metrics::count(metric::DUPLICATE, 1),
        Err(failure) => shared::metrics::count_by(metric::FAILED, &[("kind", failure.kind.as_str())], 1),
    }
    match &result {
        Ok(Done::Sent { template, provider_id }) => tracing::info!(
            message_id,
            template,
            provider_id = provider_id.as_deref(),
            transport = state.transport.name(),
            "email sent"
        ),
        Ok(Done::Duplicate { template }) => {
            tracing::info!(message_id, template, "email already sent for this key; not sent again")
        }
        Err(Failure { kind: FailureKind::Transient, reason, template }) => tracing::warn!(
            message_id,
            template,
            receive_count,
            failure = "transient",
            reason = %reason,
            "email job failed; the queue will deliver it again"
        ),
        Err(Failure { kind: FailureKind::Permanent, reason, template }) => tracing::error!(
            message_id,
            template,
            receive_count,
            failure = "permanent",
            reason = %reason,
            "email job failed and will fail again; it reaches the dead-letter queue after maxReceiveCount receives"
        ),
    }
    result
}

/// One record: parse, render, claim, send, complete (or release).
pub async fn process(state: &State, record: &SqsMessage, deadline: Deadline) -> Result<Done, Failure> {
    let left = deadline.remaining();
    if left < START_RESERVE {
        return Err(Failure::transient(format!(
            "not started: {} ms left before the invocation's deadline",
            left.as_millis()
        )));
    }
    let message_id = record.message_id.as_deref().unwrap_or("");
    let body = record.body.as_deref().ok_or_else(|| Failure::permanent("the message has no body"))?;
    let job = EmailJob::from_json_or_key(body, &format!("sqs:{message_id}"))
        .map_err(|e| Failure::permanent(format!("unusable message: {e}")))?;
    let template = job.content.template();
    let message = state
        .templates
        .render(&job, &state.from)
        .map_err(|e| Failure::permanent(format!("cannot render: {e}")).of(template))?;

    let key = format!("email:{}", job.idempotency_key);
    // The job as parsed, re-serialised: the same job sent twice has the same fingerprint
    // whatever the producer's JSON formatting.
    let payload = Fingerprint::of(job.to_json().as_bytes());
    // Wait for another delivery of the key, but never into the time this record needs.
    let wait = state.inprogress_wait.min(deadline.remaining().saturating_sub(START_RESERVE));
    let claim = match state.idempotency.claim_waiting(&key, &payload, deadline.epoch_ms, wait).await {
        Ok(Claim::Acquired(claim)) => claim,
        Ok(Claim::Completed) => return Ok(Done::Duplicate { template }),
        Ok(Claim::InProgress(held)) => return Err(Failure::transient(held.to_string()).of(template)),
        Err(e @ IdempotencyError::PayloadMismatch { .. }) => {
            return Err(Failure::permanent(format!("refused: {e}")).of(template));
        }
        Err(e) => return Err(Failure::transient(format!("idempotency store: {e}")).of(template)),
    };

    let options = SendOptions {
        idempotency_key: job.idempotency_key.clone(),
        deadline: Some(deadline.at.checked_sub(SEND_RESERVE).unwrap_or(deadline.at)),
    };
    match state.transport.send(&message, &options).await {
        Ok(sent) => {
            if let Err(e) = state.idempotency.complete(&claim).await {
                // The email went out: reporting a failure would send it again. The claim lapses
                // at this invocation's deadline; only a new message with the same key could
                // send it twice after that.
                tracing::error!(key = %key, error = %e, "email sent but its idempotency record was not completed");
            }
            Ok(Done::Sent { template, provider_id: sent.provider_id })
        }
        Err(e) if e.maybe_sent => {
            // At most once where SES cannot tell: keep the claim for the window instead of
            // releasing it, so the redelivery that follows cannot send a second copy right away.
            let hold = state.unknown_outcome_hold;
            let until_ms = shared::clock::now_ms().saturating_add(hold.as_millis() as i64);
            shared::metrics::count(metric::OUTCOME_UNKNOWN, 1);
            if let Err(held) = state.idempotency.hold(&claim, until_ms).await {
                tracing::warn!(key = %key, error = %held, "could not hold the claim; it lapses at the deadline");
            }
            tracing::error!(
                key = %key,
                hold_seconds = hold.as_secs(),
                error = %e,
                "the send's outcome is unknown (the provider may have sent it); the key is held, and a delivery \
                 after the hold sends it again: a possible duplicate"
            );
            Err(Failure {
                kind: e.kind,
                reason: format!("{e}; held for {} s before any resend", hold.as_secs()),
                template: Some(template),
            })
        }
        Err(e) => {
            if let Err(release) = state.idempotency.release(&claim).await {
                tracing::warn!(key = %key, error = %release, "could not release the claim; it lapses at the deadline");
            }
            Err(Failure { kind: e.kind, reason: e.to_string(), template: Some(template) })
        }
    }
}
