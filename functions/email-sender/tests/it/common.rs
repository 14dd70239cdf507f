//! Shared by the integration tests: a provisioned stack on moto (the template's EmailQueue with its
//! redrive policy to EmailDeadLetterQueue, the IdempotencyTable), a sender address that is unique
//! to the test, an SQS receive that builds the event Lambda's event source mapping would, and a
//! reader for what moto's SES accepted.

#![allow(dead_code)] // each test file uses its own subset

use shared::config::FromEnv;
use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use email_sender::handler::State;
use email_sender::settings::Settings;
use serde_json::Value;
use shared::clients::AwsClients;
use shared::email::{EmailAddress, EmailJob, EmailQueue, LineItem, OrderConfirmation};
use testkit::Provisioned;

pub const APP_URL: &str = "https://app.example.com";

pub struct Fixture {
    pub aws: AwsClients,
    /// email-sender's environment, resolved from the template.
    pub env: HashMap<String, String>,
    pub from: String,
    pub queue: EmailQueue,
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    pub endpoint: String,
    pub provisioned: Provisioned,
}

/// A fresh stack. The sender address is unique to this fixture and verified in moto's SES unless
/// `verified` is false (moto refuses unverified senders, as SES does).
pub async fn fixture(verified: bool) -> Fixture {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let from = format!("shop@{}.example.com", &tag[..12]);
    let provisioned = testkit::provision(&[("EMAIL_FROM", &from), ("APP_URL", APP_URL), ("EMAIL_TRANSPORT", "ses")]);
    let aws = testkit::aws_clients().await;
    if verified {
        aws.sesv2().create_email_identity().email_identity(&from).send().await.expect("verify the sender in moto");
    }
    let queue_url = provisioned.resources["EmailQueue"]["url"].clone();
    Fixture {
        env: provisioned.env("email-sender"),
        queue: EmailQueue::new(aws.sqs().clone(), queue_url.clone()),
        queue_arn: provisioned.resources["EmailQueue"]["arn"].clone(),
        dlq_url: provisioned.resources["EmailDeadLetterQueue"]["url"].clone(),
        queue_url,
        from,
        aws,
        endpoint: testkit::aws_endpoint(),
        provisioned,
    }
}

impl Fixture {
    pub fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        let mut env = self.env.clone();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::from_env(testkit::env_reader(env)).expect("settings from the template")
    }

    /// The state `main` builds, from the template's environment plus `extra`.
    pub fn state(&self, extra: &[(&str, &str)]) -> State {
        State::new(&self.settings(extra), &self.aws).expect("state")
    }

    /// Every message moto's SES accepted from this fixture's sender.
    pub async fn sent(&self) -> Vec<Value> {
        let data = testkit::moto_data(&self.endpoint).await;
        data["ses"]["Message"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["source"] == self.from.as_str())
            .cloned()
            .collect()
    }

    pub async fn enqueue(&self, job: &EmailJob) -> String {
        self.queue.send(job).await.expect("enqueue")
    }

    pub async fn enqueue_raw(&self, body: &str) -> String {
        let out = self.aws.sqs().send_message().queue_url(&self.queue_url).message_body(body).send().await.unwrap();
        out.message_id.unwrap()
    }

    /// Receives up to `max` messages from `queue_url` (waiting up to `wait` for the first), and
    /// builds the event an event source mapping would hand the function.
    pub async fn receive(&self, queue_url: &str, max: usize, wait: Duration) -> (SqsEvent, Vec<Message>) {
        let mut messages: Vec<Message> = Vec::new();
        let until = std::time::Instant::now() + wait;
        while messages.len() < max {
            // Long-poll for the first message only; then take what is there at once, so that a
            // short visibility timeout cannot hand the same message back within one batch.
            let wait_secs = if messages.is_empty() {
                until.saturating_duration_since(std::time::Instant::now()).as_secs().min(1) as i32
            } else {
                0
            };
            let out = self
                .aws
                .sqs()
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages((max - messages.len()).min(10) as i32)
                .wait_time_seconds(wait_secs)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive");
            let got = out.messages.unwrap_or_default();
            if got.is_empty() && (!messages.is_empty() || std::time::Instant::now() >= until) {
                break;
            }
            messages.extend(got);
        }
        (event_of(&messages, &self.queue_arn), messages)
    }

    /// Deletes the messages whose ids are not in `failed`, as the event source mapping does.
    pub async fn delete_succeeded(&self, queue_url: &str, messages: &[Message], failed: &[String]) {
        for m in messages {
            if !failed.contains(m.message_id.as_ref().unwrap()) {
                self.aws
                    .sqs()
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle.as_ref().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    pub async fn visible_messages(&self, queue_url: &str) -> usize {
        let out = self
            .aws
            .sqs()
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap();
        out.attributes.unwrap_or_default()[&QueueAttributeName::ApproximateNumberOfMessages].parse().unwrap()
    }

    pub async fn set_visibility_timeout(&self, secs: u32) {
        self.aws
            .sqs()
            .set_queue_attributes()
            .queue_url(&self.queue_url)
            .attributes(QueueAttributeName::VisibilityTimeout, secs.to_string())
            .send()
            .await
            .unwrap();
    }
}

/// The SQS event for `messages`, shaped as Lambda's event source mapping shapes it.
pub fn event_of(messages: &[Message], queue_arn: &str) -> SqsEvent {
    let mut event = SqsEvent::default();
    for m in messages {
        let mut record = SqsMessage::default();
        record.message_id = m.message_id.clone();
        record.receipt_handle = m.receipt_handle.clone();
        record.body = m.body.clone();
        record.md5_of_body = m.md5_of_body.clone();
        record.attributes =
            m.attributes.clone().unwrap_or_default().into_iter().map(|(k, v)| (k.as_str().to_owned(), v)).collect();
        record.event_source = Some("aws:sqs".into());
        record.event_source_arn = Some(queue_arn.to_owned());
        record.aws_region = Some("us-east-1".into());
        event.records.push(record);
    }
    event
}

/// The ids a batch response lists as failed.
pub fn failed_ids(response: &aws_lambda_events::sqs::SqsBatchResponse) -> Vec<String> {
    response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect()
}

pub fn order_job(order_id: &str, to: &str, items: Vec<LineItem>) -> EmailJob {
    let total = items.iter().map(|i| i.unit_amount * i64::from(i.quantity)).sum();
    EmailJob::order_confirmation(
        EmailAddress::parse(to).unwrap(),
        OrderConfirmation { order_id: order_id.into(), currency: "eur".into(), items, total },
    )
    .unwrap()
}

pub fn item(name: &str, quantity: u32, unit_amount: i64) -> LineItem {
    LineItem { name: name.into(), quantity, unit_amount }
}
