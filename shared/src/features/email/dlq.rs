//! Replaying a dead-letter queue: once the cause of the failures is fixed (a verified sender, a
//! corrected template, a provider back up), the jobs that ran out of receives go back to the email
//! queue. Used by `ops dlq-replay`; it works for any pair of SQS queues.
//!
//! Each message is sent to the target with the same body and message attributes (and, for a FIFO
//! target, its message group and deduplication id), and deleted from the source only after that
//! send succeeded. A failure stops the replay: what was not moved yet stays in the source queue and
//! becomes visible again. If a delete fails after its send, the job exists twice; email-sender's
//! idempotency key makes sure it is still sent once.

use std::collections::HashMap;

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};

/// Messages are hidden this long while being moved; a crash mid-way leaves them to reappear.
const MOVE_VISIBILITY_SECS: i32 = 60;

/// Why a replay stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The source and target URLs name one queue: a replay would move every message onto itself.
    #[error("the source and the target are the same queue")]
    SameQueue,
    #[error("{message} ({moved} message(s) moved before it)")]
    /// An SQS call failed; what was not moved yet is still in the source.
    Sqs {
        /// Messages moved before the failure.
        moved: usize,
        /// The failed call and its error chain.
        message: String,
    },
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ReplayReport {
    /// Messages sent to the target and deleted from the source.
    pub moved: usize,
}

fn sqs_err(moved: usize, what: &str, e: &dyn std::error::Error) -> ReplayError {
    let mut message = format!("{what}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    ReplayError::Sqs { moved, message }
}

/// Moves up to `max` messages (all, when `None`) from `from` to `to`, until `from` is empty.
pub async fn replay(
    sqs: &aws_sdk_sqs::Client,
    from: &str,
    to: &str,
    max: Option<usize>,
) -> Result<ReplayReport, ReplayError> {
    if from.trim_end_matches('/') == to.trim_end_matches('/') {
        return Err(ReplayError::SameQueue);
    }
    let mut moved = 0;
    loop {
        let want = max.map_or(10, |m| m.saturating_sub(moved).min(10));
        if want == 0 {
            break;
        }
        let received = sqs
            .receive_message()
            .queue_url(from)
            .max_number_of_messages(want as i32)
            // Long polling: a short poll may answer "empty" while messages are there.
            .wait_time_seconds(1)
            .visibility_timeout(MOVE_VISIBILITY_SECS)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| sqs_err(moved, "receive", &e))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            move_one(sqs, &message, from, to).await.map_err(|(what, e)| sqs_err(moved, what, &*e))?;
            moved += 1;
        }
    }
    Ok(ReplayReport { moved })
}

type BoxedError = Box<dyn std::error::Error + Send + Sync>;

/// The message attributes that can be sent again: each needs a data type and a value. (moto
/// answers a message without attributes with empty entries named after the system attributes.)
pub fn sendable_attributes(message: &Message) -> Option<HashMap<String, MessageAttributeValue>> {
    let attributes: HashMap<String, MessageAttributeValue> = message
        .message_attributes
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, v)| {
            !v.data_type.is_empty()
                && (v.string_value.is_some()
                    || v.binary_value.is_some()
                    || v.string_list_values.as_ref().is_some_and(|l| !l.is_empty())
                    || v.binary_list_values.as_ref().is_some_and(|l| !l.is_empty()))
        })
        .collect();
    (!attributes.is_empty()).then_some(attributes)
}

async fn move_one(
    sqs: &aws_sdk_sqs::Client,
    message: &Message,
    from: &str,
    to: &str,
) -> Result<(), (&'static str, BoxedError)> {
    let mut send = sqs
        .send_message()
        .queue_url(to)
        .message_body(message.body().unwrap_or_default())
        .set_message_attributes(sendable_attributes(message));
    if to.ends_with(".fifo") {
        let system = message.attributes.clone().unwrap_or_default();
        let group = system.get(&MessageSystemAttributeName::MessageGroupId).cloned();
        let dedup = system.get(&MessageSystemAttributeName::MessageDeduplicationId).cloned();
        send = send
            .message_group_id(group.unwrap_or_else(|| "replay".into()))
            .set_message_deduplication_id(dedup.or_else(|| message.message_id.clone()));
    }
    send.send().await.map_err(|e| ("send", BoxedError::from(e)))?;
    if let Some(handle) = message.receipt_handle() {
        sqs.delete_message()
            .queue_url(from)
            .receipt_handle(handle)
            .send()
            .await
            .map_err(|e| ("delete", BoxedError::from(e)))?;
    }
    Ok(())
}
