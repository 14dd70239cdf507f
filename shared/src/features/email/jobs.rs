//! Email jobs: the versioned message that producers put on the email queue and email-sender
//! consumes, and the producer that sends it to SQS.
//!
//! Wire format (JSON, version 1):
//! `{"v":1,"template":"order_confirmation"|"password_reset","to":"…","data":{…},"idempotencyKey":"…"}`.
//! `data` depends on the template ([`OrderConfirmation`], [`PasswordReset`]); amounts are integer
//! minor units with a lowercase ISO 4217 currency. The consumer sends each `idempotencyKey` at most
//! once, so a producer that retries after a partial failure sends the same key again.

use serde::{Deserialize, Serialize};

/// The wire-format version this build writes and the only one it reads (`"v"`).
pub const VERSION: u32 = 1;
/// SQS allows 128 characters for a FIFO deduplication id; keys are held to that everywhere.
pub const MAX_KEY_LEN: usize = 128;

/// An address that is safe to put in a header: 3 to 254 bytes, no whitespace or control
/// characters (so no CR/LF injection), exactly one `@`, a local part of at most 64 bytes and a
/// dotted domain of letters, digits and hyphens.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

/// Why a text is not an [`EmailAddress`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid email address")]
pub struct InvalidEmailAddress;

impl EmailAddress {
    /// Parses an address by the rule above; anything else is refused, never repaired.
    pub fn parse(raw: &str) -> Result<Self, InvalidEmailAddress> {
        let ok = (3..=254).contains(&raw.len())
            && !raw.chars().any(|c| c.is_whitespace() || c.is_control())
            && raw.matches('@').count() == 1
            && raw.split_once('@').is_some_and(|(local, domain)| {
                (1..=64).contains(&local.len())
                    && !local.contains(['<', '>', '(', ')', ',', ';', ':', '\\', '"', '[', ']'])
                    && domain.contains('.')
                    && domain.split('.').all(|label| {
                        (1..=63).contains(&label.len())
                            && !label.starts_with('-')
                            && !label.ends_with('-')
                            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
            });
        if ok { Ok(Self(raw.to_owned())) } else { Err(InvalidEmailAddress) }
    }

    /// The address as sent in the `To` / `From` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        EmailAddress::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// One line of an order confirmation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    /// What was bought, as shown to the customer (HTML-escaped by the template).
    pub name: String,
    /// How many units; the line total is `quantity × unit_amount`.
    pub quantity: u32,
    /// Minor units.
    pub unit_amount: i64,
}

/// The data of the `order_confirmation` template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderConfirmation {
    /// The order the email confirms; it also keys the job, so each order is confirmed once.
    pub order_id: String,
    /// Lowercase ISO 4217.
    pub currency: String,
    /// The lines of the order, in the order they are shown.
    pub items: Vec<LineItem>,
    /// Minor units.
    pub total: i64,
}

/// The data of the `password_reset` template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordReset {
    /// The single-use token the reset link (built from `APP_URL`) carries.
    pub token: String,
    /// How long the token stays valid, in minutes, as written out in the email.
    pub expires_in_minutes: u32,
}

/// The template and its data: `"template"` and `"data"` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "template", content = "data", rename_all = "snake_case")]
pub enum EmailContent {
    /// `"template": "order_confirmation"`.
    OrderConfirmation(OrderConfirmation),
    /// `"template": "password_reset"`.
    PasswordReset(PasswordReset),
}

impl EmailContent {
    /// The template's wire name (`order_confirmation`, `password_reset`).
    pub fn template(&self) -> &'static str {
        match self {
            EmailContent::OrderConfirmation(_) => "order_confirmation",
            EmailContent::PasswordReset(_) => "password_reset",
        }
    }
}

/// One email to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailJob {
    /// The recipient.
    pub to: EmailAddress,
    /// Which template, with its data.
    pub content: EmailContent,
    /// Sent at most once per key.
    pub idempotency_key: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    v: u32,
    #[serde(flatten)]
    content: EmailContent,
    to: EmailAddress,
    /// Required by [`EmailJob::from_json`]; [`EmailJob::from_json_or_key`] supplies a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
}

/// Why a message body is not an email job this build can send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEmailJob {
    /// A `"v"` other than [`VERSION`] (a newer or older producer).
    #[error("unsupported email job version {0}; this build reads version {VERSION}")]
    Version(u32),
    /// Not JSON, or JSON of the wrong shape; the serde message says where.
    #[error("invalid email job: {0}")]
    Shape(String),
    /// The idempotency key is empty, too long or not printable ASCII.
    #[error("the idempotency key must be 1 to {MAX_KEY_LEN} printable ASCII characters")]
    Key,
}

fn key_ok(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

impl EmailJob {
    /// A job, refused when its idempotency key is not 1 to [`MAX_KEY_LEN`] printable ASCII characters.
    pub fn new(to: EmailAddress, content: EmailContent, idempotency_key: String) -> Result<Self, InvalidEmailJob> {
        if !key_ok(&idempotency_key) {
            return Err(InvalidEmailJob::Key);
        }
        Ok(Self { to, content, idempotency_key })
    }

    /// The order-confirmation job for an order, keyed by the order so that it is sent once
    /// whichever delivery or retry produced it.
    pub fn order_confirmation(to: EmailAddress, data: OrderConfirmation) -> Result<Self, InvalidEmailJob> {
        let key = format!("order_confirmation:{}", data.order_id);
        Self::new(to, EmailContent::OrderConfirmation(data), key)
    }

    /// The message body in the version-1 wire format, `idempotencyKey` included.
    pub fn to_json(&self) -> String {
        let wire = Wire {
            v: VERSION,
            content: self.content.clone(),
            to: self.to.clone(),
            idempotency_key: Some(self.idempotency_key.clone()),
        };
        // Strings, integers and enums only: serialisation cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Reads a message body: the version first (so a newer producer's message is reported as
    /// such, not as a shape error), then the rest.
    pub fn from_json(body: &str) -> Result<Self, InvalidEmailJob> {
        Self::parse(body, None)
    }

    /// [`from_json`](Self::from_json) for a consumer that has a key of its own for messages that
    /// carry none (email-sender uses the SQS message id): `idempotencyKey` may then be left out.
    pub fn from_json_or_key(body: &str, default_key: &str) -> Result<Self, InvalidEmailJob> {
        Self::parse(body, Some(default_key))
    }

    fn parse(body: &str, default_key: Option<&str>) -> Result<Self, InvalidEmailJob> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let version: Version =
            serde_json::from_str(body).map_err(|e| InvalidEmailJob::Shape(format!("no version: {e}")))?;
        if version.v != VERSION {
            return Err(InvalidEmailJob::Version(version.v));
        }
        let wire: Wire = serde_json::from_str(body).map_err(|e| InvalidEmailJob::Shape(e.to_string()))?;
        let key = match (wire.idempotency_key, default_key) {
            (Some(key), _) => key,
            (None, Some(default)) => default.to_owned(),
            (None, None) => return Err(InvalidEmailJob::Shape("missing field `idempotencyKey`".into())),
        };
        Self::new(wire.to, wire.content, key)
    }
}

/// SendMessage to the email queue failed; the SDK's error is kept as the source.
#[derive(Debug, thiserror::Error)]
#[error("SQS SendMessage failed: {}", aws_sdk_sqs::error::DisplayErrorContext(.0))]
pub struct EmailQueueError(
    #[source] pub aws_sdk_sqs::error::SdkError<aws_sdk_sqs::operation::send_message::SendMessageError>,
);

/// Sends email jobs to the email queue. A FIFO queue (URL ending in `.fifo`) gets the
/// idempotency key as its deduplication id and the recipient as the message group.
#[derive(Clone, Debug)]
pub struct EmailQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl EmailQueue {
    /// A producer for the queue at `url` (a `.fifo` URL turns on deduplication and groups).
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }

    /// The queue URL jobs are sent to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Enqueues the job; returns the SQS message id.
    pub async fn send(&self, job: &EmailJob) -> Result<String, EmailQueueError> {
        let mut request = self.client.send_message().queue_url(&self.url).message_body(job.to_json());
        if self.url.ends_with(".fifo") {
            request = request.message_group_id(job.to.as_str()).message_deduplication_id(&job.idempotency_key);
        }
        let out = request.send().await.map_err(EmailQueueError)?;
        Ok(out.message_id.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn confirmation() -> EmailJob {
        EmailJob::order_confirmation(
            EmailAddress::parse("buyer@example.com").unwrap(),
            OrderConfirmation {
                order_id: "ord_1".into(),
                currency: "eur".into(),
                items: vec![LineItem { name: "<script>".into(), quantity: 2, unit_amount: 1250 }],
                total: 2500,
            },
        )
        .unwrap()
    }

    #[test]
    fn wire_format_is_the_v1_contract() {
        let v: Value = serde_json::from_str(&confirmation().to_json()).unwrap();
        assert_eq!(
            v,
            json!({
                "v": 1,
                "template": "order_confirmation",
                "to": "buyer@example.com",
                "data": {"orderId": "ord_1", "currency": "eur", "total": 2500,
                         "items": [{"name": "<script>", "quantity": 2, "unitAmount": 1250}]},
                "idempotencyKey": "order_confirmation:ord_1"
            })
        );
        assert_eq!(EmailJob::from_json(&confirmation().to_json()).unwrap(), confirmation());

        let reset = r#"{"v":1,"template":"password_reset","to":"a@b.co","data":{"token":"t0k","expiresInMinutes":30},"idempotencyKey":"reset:1"}"#;
        let job = EmailJob::from_json(reset).unwrap();
        assert_eq!(
            job.content,
            EmailContent::PasswordReset(PasswordReset { token: "t0k".into(), expires_in_minutes: 30 })
        );
        assert_eq!(job.content.template(), "password_reset");
    }

    #[test]
    fn bad_messages_are_refused_with_the_reason() {
        let good = confirmation().to_json();
        assert_eq!(EmailJob::from_json(&good.replace("\"v\":1", "\"v\":2")), Err(InvalidEmailJob::Version(2)));
        for bad in [
            good.replace("order_confirmation\"", "newsletter\""),
            good.replace("buyer@example.com", "buyer@example.com\r\nBcc: x@evil.com"),
            good.replace("\"v\":1,", ""),
            "not json".to_owned(),
        ] {
            assert!(matches!(EmailJob::from_json(&bad), Err(InvalidEmailJob::Shape(_))), "{bad}");
        }
        assert_eq!(
            EmailJob::from_json(&good.replace("order_confirmation:ord_1", &"k".repeat(129))),
            Err(InvalidEmailJob::Key)
        );
    }

    #[test]
    fn a_consumer_may_supply_the_missing_key() {
        let good = confirmation().to_json();
        let keyless = good.replace(r#","idempotencyKey":"order_confirmation:ord_1""#, "");
        assert_ne!(keyless, good);
        assert!(matches!(EmailJob::from_json(&keyless), Err(InvalidEmailJob::Shape(_))));
        assert_eq!(EmailJob::from_json_or_key(&keyless, "sqs:m1").unwrap().idempotency_key, "sqs:m1");
        // A key in the message wins; the default is checked like any key.
        assert_eq!(EmailJob::from_json_or_key(&good, "sqs:m1").unwrap(), confirmation());
        assert_eq!(EmailJob::from_json_or_key(&keyless, ""), Err(InvalidEmailJob::Key));
    }

    #[test]
    fn addresses_are_validated() {
        for ok in ["a@b.co", "first.last+tag@sub.example.com"] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "a@b", "a@@b.co", "a b@c.co", "a@b.co\n", "<a@b.co>", "a@-b.co", "a@b..co", "@b.co"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
    }
}
