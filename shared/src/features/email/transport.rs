//! Where a rendered [`EmailMessage`] goes: one [`Transport`] trait, three implementations, chosen
//! by `EMAIL_TRANSPORT` in [`from_settings`].
//!
//! - [`SesTransport`]: Amazon SES v2 `SendEmail` with a simple (subject, text, HTML) message, from
//!   `EMAIL_FROM`, with the configuration set when one is configured.
//! - [`HttpTransport`]: a JSON POST with a bearer key, shaped like Resend's `POST /emails`
//!   (`from`, `to`, `subject`, `text`, `html`), through [`Outbound`]. The job's idempotency key goes
//!   in an `Idempotency-Key` header, which providers use to drop duplicates and which makes the POST
//!   safe for `Outbound` to retry.
//! - [`LogTransport`]: prints the message as one JSON line on stdout and sends nothing, like the
//!   seed's Nodemailer jsonTransport.
//!
//! Every failure is a [`TransportError`] that says whether it is transient (throttling, 5xx,
//! timeouts, connection problems) or permanent (a rejected message or sender, a bad key).

use std::sync::Arc;
use std::time::Instant;

use aws_sdk_sesv2::config::http::HttpResponse;
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use futures::future::BoxFuture;
use serde::Serialize;

use super::{EmailMessage, EmailSettings, FailureKind, TransportKind};
use crate::config::Secret;
use crate::outbound::error_chain;
use crate::outbound::{Outbound, OutboundError};

/// Per-send details that are not part of the message.
#[derive(Clone, Debug)]
pub struct SendOptions {
    /// The job's idempotency key (sent to providers that deduplicate).
    pub idempotency_key: String,
    /// When the send must be over (the Lambda deadline less a reserve).
    pub deadline: Option<Instant>,
}

/// A send the provider accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// The provider's message id, when it gives one.
    pub provider_id: Option<String>,
}

/// A send that failed, with the transport that tried and whether a retry may help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{transport} ({kind}{}): {message}", if *.maybe_sent { ", outcome unknown" } else { "" })]
pub struct TransportError {
    /// `ses`, `http` or `log`.
    pub transport: &'static str,
    /// Whether the same send may succeed later.
    pub kind: FailureKind,
    /// The provider's code and message, or the error chain.
    pub message: String,
    /// The request may have reached the provider and been sent: it timed out or broke after it
    /// left, with no answer that says it was refused. SES has no idempotency key, so a resend
    /// could be a second email; the caller holds the job back instead (email-sender's
    /// `UNKNOWN_OUTCOME_HOLD`).
    pub maybe_sent: bool,
}

/// Sends rendered messages. Object-safe, so the choice is made once, at init.
pub trait Transport: Send + Sync {
    /// `ses`, `http` or `log`.
    fn name(&self) -> &'static str;

    /// Sends one message; a send still running at `options.deadline` fails as transient.
    fn send<'a>(
        &'a self,
        message: &'a EmailMessage,
        options: &'a SendOptions,
    ) -> BoxFuture<'a, Result<Sent, TransportError>>;
}

/// The transport `settings` ask for (the HTTP transport's client is built on its first send).
pub fn from_settings(settings: &EmailSettings, sesv2: &aws_sdk_sesv2::Client) -> Arc<dyn Transport> {
    match (settings.transport, &settings.http) {
        (TransportKind::Http, Some(http)) => Arc::new(HttpTransport::new(
            Outbound::new(settings.outbound.clone()),
            http.url.clone(),
            http.api_key.clone(),
        )),
        (TransportKind::Log, _) => Arc::new(LogTransport),
        // Http without settings cannot come out of `EmailSettings::from_env`; SES is the default.
        _ => Arc::new(SesTransport::new(sesv2.clone(), settings.configuration_set.clone())),
    }
}

// ---- SES ----------------------------------------------------------------------------------------

/// Amazon SES v2 `SendEmail`.
#[derive(Clone, Debug)]
pub struct SesTransport {
    client: aws_sdk_sesv2::Client,
    configuration_set: Option<String>,
}

impl SesTransport {
    /// Sends with `client`, tagging each message with `configuration_set` when there is one.
    ///
    /// The SDK's retries are turned off for this client: `SendEmail` has no idempotency key, and
    /// the SDK retries an attempt that timed out, which SES may already have sent: one job, two
    /// emails, within one invocation. A failed send goes back to the queue instead, where the
    /// claim decides (and an unknown outcome is held, see [`TransportError::maybe_sent`]).
    pub fn new(client: aws_sdk_sesv2::Client, configuration_set: Option<String>) -> Self {
        let once = client.config().to_builder().retry_config(aws_sdk_sesv2::config::retry::RetryConfig::disabled());
        Self { client: aws_sdk_sesv2::Client::from_conf(once.build()), configuration_set }
    }

    fn error(kind: FailureKind, message: impl Into<String>) -> TransportError {
        TransportError { transport: "ses", kind, message: message.into(), maybe_sent: false }
    }

    /// A send that left and whose answer never came (or came unreadable).
    fn unknown(message: impl Into<String>) -> TransportError {
        TransportError { maybe_sent: true, ..Self::error(FailureKind::Transient, message) }
    }

    async fn send_now(&self, message: &EmailMessage) -> Result<Sent, TransportError> {
        let content = |data: &str| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|e| Self::error(FailureKind::Permanent, e.to_string()))
        };
        let simple = Message::builder()
            .subject(content(message.subject.as_str())?)
            .body(Body::builder().text(content(&message.text)?).html(content(&message.html)?).build())
            .build();
        let out = self
            .client
            .send_email()
            .from_email_address(message.from.as_str())
            .destination(Destination::builder().to_addresses(message.to.as_str()).build())
            .content(EmailContent::builder().simple(simple).build())
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(classify_ses)?;
        Ok(Sent { provider_id: out.message_id })
    }
}

/// SES's answer, sorted into what may pass and what needs a person.
fn classify_ses(e: SdkError<SendEmailError, HttpResponse>) -> TransportError {
    match e {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let err = service.into_err();
            let code = err.code().unwrap_or("Unknown").to_owned();
            let detail = err.message().unwrap_or_default().to_owned();
            let kind = match &err {
                SendEmailError::TooManyRequestsException(_)
                | SendEmailError::LimitExceededException(_)
                | SendEmailError::SendingPausedException(_) => FailureKind::Transient,
                SendEmailError::MessageRejected(_)
                | SendEmailError::MailFromDomainNotVerifiedException(_)
                | SendEmailError::AccountSuspendedException(_)
                | SendEmailError::BadRequestException(_)
                | SendEmailError::NotFoundException(_) => FailureKind::Permanent,
                _ if status == 429 || status >= 500 || code.contains("Throttl") => FailureKind::Transient,
                _ => FailureKind::Permanent,
            };
            SesTransport::error(kind, format!("{code} (HTTP {status}): {detail}"))
        }
        SdkError::ConstructionFailure(_) => SesTransport::error(FailureKind::Permanent, error_chain(&e)),
        // The request was never sent: no connection could be made.
        SdkError::DispatchFailure(ref d) if connect_failed(d.as_connector_error().map(|c| c as _)) => {
            SesTransport::error(FailureKind::Transient, error_chain(&e))
        }
        // Timeouts, a connection that broke, an answer that could not be read: the request may
        // have reached SES, which may have sent the email.
        other => SesTransport::unknown(error_chain(&other)),
    }
}

/// Whether a dispatch failure happened before the request could leave: the connection itself
/// was refused or never made. The HTTP client reports that as a connect error somewhere in the
/// chain; anything else (a reset, a read that timed out) may have come after the request left.
fn connect_failed(connector_error: Option<&(dyn std::error::Error + 'static)>) -> bool {
    let mut source = connector_error;
    while let Some(e) = source {
        let refused = e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(io.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable)
        });
        if refused {
            return true;
        }
        source = e.source();
    }
    false
}

impl Transport for SesTransport {
    fn name(&self) -> &'static str {
        "ses"
    }

    fn send<'a>(
        &'a self,
        message: &'a EmailMessage,
        options: &'a SendOptions,
    ) -> BoxFuture<'a, Result<Sent, TransportError>> {
        Box::pin(async move {
            match options.deadline {
                None => self.send_now(message).await,
                Some(deadline) => tokio::time::timeout_at(deadline.into(), self.send_now(message))
                    .await
                    .unwrap_or_else(|_| Err(Self::unknown("no answer by the invocation's deadline"))),
            }
        })
    }
}

// ---- HTTP API -----------------------------------------------------------------------------------

/// A JSON POST to an HTTP email API (Resend/Postmark-like) through [`Outbound`].
#[derive(Clone, Debug)]
pub struct HttpTransport {
    outbound: Outbound,
    url: String,
    api_key: Secret,
}

#[derive(Serialize)]
struct HttpEmail<'a> {
    from: &'a str,
    to: [&'a str; 1],
    subject: &'a str,
    text: &'a str,
    html: &'a str,
}

#[derive(serde::Deserialize)]
struct HttpAccepted {
    /// Resend's name.
    id: Option<String>,
    /// Postmark's name.
    #[serde(rename = "MessageID")]
    message_id: Option<String>,
}

impl HttpTransport {
    /// POSTs to `url` with `api_key` as the bearer token.
    pub fn new(outbound: Outbound, url: String, api_key: Secret) -> Self {
        Self { outbound, url, api_key }
    }

    fn error(e: &OutboundError) -> TransportError {
        let kind = if e.is_transient() { FailureKind::Transient } else { FailureKind::Permanent };
        // The provider deduplicates by the Idempotency-Key header, so a resend is safe.
        TransportError { transport: "http", kind, message: e.to_string(), maybe_sent: false }
    }
}

impl Transport for HttpTransport {
    fn name(&self) -> &'static str {
        "http"
    }

    fn send<'a>(
        &'a self,
        message: &'a EmailMessage,
        options: &'a SendOptions,
    ) -> BoxFuture<'a, Result<Sent, TransportError>> {
        Box::pin(async move {
            let body = HttpEmail {
                from: message.from.as_str(),
                to: [message.to.as_str()],
                subject: message.subject.as_str(),
                text: &message.text,
                html: &message.html,
            };
            let request = self
                .outbound
                .client()
                .map_err(|e| Self::error(&e))?
                .post(&self.url)
                .bearer_auth(self.api_key.expose())
                .header("Idempotency-Key", &options.idempotency_key)
                .json(&body);
            let response = self.outbound.execute(request, options.deadline).await.map_err(|e| Self::error(&e))?;
            // Any 2xx is accepted; the id is a bonus for the log.
            let accepted: Option<HttpAccepted> = serde_json::from_slice(&response.body).ok();
            Ok(Sent { provider_id: accepted.and_then(|a| a.id.or(a.message_id)) })
        })
    }
}

// ---- log ----------------------------------------------------------------------------------------

/// Prints the message instead of sending it.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogTransport;

impl LogTransport {
    /// The line `send` prints: `{"emailTransport":"log","idempotencyKey":…,"message":{…}}`.
    pub fn line(message: &EmailMessage, options: &SendOptions) -> String {
        serde_json::json!({
            "emailTransport": "log",
            "idempotencyKey": options.idempotency_key,
            "message": message,
        })
        .to_string()
    }
}

impl Transport for LogTransport {
    fn name(&self) -> &'static str {
        "log"
    }

    fn send<'a>(
        &'a self,
        message: &'a EmailMessage,
        options: &'a SendOptions,
    ) -> BoxFuture<'a, Result<Sent, TransportError>> {
        Box::pin(async move {
            println!("{}", Self::line(message, options));
            Ok(Sent::default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::EmailAddress;
    use crate::email::Subject;

    fn message() -> EmailMessage {
        EmailMessage {
            from: EmailAddress::parse("shop@example.com").unwrap(),
            to: EmailAddress::parse("buyer@example.com").unwrap(),
            subject: Subject::parse("Order 1 confirmed").unwrap(),
            text: "text".into(),
            html: "<p>html</p>".into(),
            template: "order_confirmation",
        }
    }

    fn ses_at(endpoint: &str) -> SesTransport {
        let config = aws_sdk_sesv2::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_sesv2::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_sesv2::config::Credentials::new("test", "test", None, None, "test"))
            .build();
        SesTransport::new(aws_sdk_sesv2::Client::from_conf(config), None)
    }

    /// Nothing listens: the request never left, so the job may be sent again at once.
    #[tokio::test]
    async fn a_refused_connection_is_a_known_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let options = SendOptions { idempotency_key: "k".into(), deadline: None };
        let err = ses_at(&format!("http://127.0.0.1:{port}")).send(&message(), &options).await.unwrap_err();
        assert_eq!((err.kind, err.maybe_sent), (FailureKind::Transient, false), "{err}");
    }

    /// The request reached a server that never answers: SES may have sent it.
    #[tokio::test]
    async fn no_answer_after_the_request_left_is_an_unknown_outcome() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            let _ = rx.await; // hold the connection open, never answer
        });
        let deadline = Instant::now() + std::time::Duration::from_millis(800);
        let options = SendOptions { idempotency_key: "k".into(), deadline: Some(deadline) };
        let err = ses_at(&format!("http://127.0.0.1:{port}")).send(&message(), &options).await.unwrap_err();
        assert!(err.maybe_sent, "{err}");
        assert!(err.to_string().contains("outcome unknown"), "{err}");
        let _ = tx.send(());
        server.await.unwrap();
    }

    #[test]
    fn the_log_line_is_the_whole_message_as_json() {
        let message = EmailMessage {
            from: EmailAddress::parse("shop@example.com").unwrap(),
            to: EmailAddress::parse("buyer@example.com").unwrap(),
            subject: Subject::parse("Order 1 confirmed").unwrap(),
            text: "text".into(),
            html: "<p>html</p>".into(),
            template: "order_confirmation",
        };
        let options = SendOptions { idempotency_key: "order_confirmation:1".into(), deadline: None };
        let v: serde_json::Value = serde_json::from_str(&LogTransport::line(&message, &options)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "emailTransport": "log",
                "idempotencyKey": "order_confirmation:1",
                "message": {"from": "shop@example.com", "to": "buyer@example.com", "subject": "Order 1 confirmed",
                            "text": "text", "html": "<p>html</p>", "template": "order_confirmation"}
            })
        );
    }
}
