//! Transactional email: jobs ([`jobs`]) rendered by [`templates`] into an
//! [`EmailMessage`] and handed to a [`transport::Transport`]: Amazon SES v2 (the default), an
//! HTTP email API (Resend/Postmark-like, through [`crate::outbound`]), or `log`, which prints the
//! message as JSON for local work. [`dlq`] moves failed jobs from the dead-letter queue back.
//!
//! Configuration ([`EmailSettings::from_env`]):
//! `EMAIL_TRANSPORT` (`ses` | `http` | `log`, default `ses`), `EMAIL_FROM` (the sender address),
//! `APP_URL` (the base of links in emails), `EMAIL_CONFIGURATION_SET` (optional, SES),
//! `EMAIL_HTTP_URL` and `EMAIL_HTTP_API_KEY` (required for `http`), and the `OUTBOUND_*`
//! variables of [`OutboundSettings`].

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::config::{EnvReader, Secret};
use crate::outbound::OutboundSettings;

pub mod dlq;
pub mod jobs;
pub mod money;
pub mod templates;
pub mod transport;

pub use jobs::*;
pub use templates::{AppUrl, RenderError, Templates};
pub use transport::{SendOptions, Sent, Transport, TransportError};

/// Longest subject accepted, in characters.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// A subject line: 1 to 200 characters, none of them a control character (so no CR/LF).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Subject(String);

/// Why a text is not a [`Subject`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a subject must be 1 to {MAX_SUBJECT_CHARS} characters without control characters")]
pub struct InvalidSubject;

impl Subject {
    /// Parses a subject: 1 to [`MAX_SUBJECT_CHARS`] characters, not blank, no control characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidSubject> {
        let n = raw.chars().count();
        if (1..=MAX_SUBJECT_CHARS).contains(&n) && !raw.chars().any(char::is_control) && !raw.trim().is_empty() {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidSubject)
        }
    }

    /// The subject as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A rendered email, ready for a transport.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EmailMessage {
    /// The sender (`EMAIL_FROM`).
    pub from: EmailAddress,
    /// The recipient, from the job.
    pub to: EmailAddress,
    /// The subject line, built by the template code and checked for CR/LF.
    pub subject: Subject,
    /// The plain-text part.
    pub text: String,
    /// The HTML part, every value escaped.
    pub html: String,
    /// The job template it was rendered from (`order_confirmation`, ...).
    pub template: &'static str,
}

/// Whether a failure may go away by itself. Both kinds are retried by the queue (and land in the
/// dead-letter queue after `maxReceiveCount`); the kind tells the operator what to expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// Throttling, 5xx, timeouts, a key being processed elsewhere: a retry may succeed.
    Transient,
    /// A message, template, address or account problem: a retry fails the same way until someone
    /// fixes the cause (then `ops dlq-replay`).
    Permanent,
}

impl FailureKind {
    /// `transient` or `permanent` (logs, metric dimensions).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which transport sends the email (`EMAIL_TRANSPORT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// `ses`: Amazon SES v2 `SendEmail`, the default.
    Ses,
    /// `http`: a JSON POST to an email API (`EMAIL_HTTP_URL`, `EMAIL_HTTP_API_KEY`).
    Http,
    /// `log`: one JSON line on stdout, nothing sent (local work).
    Log,
}

impl FromStr for TransportKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ses" => Ok(TransportKind::Ses),
            "http" => Ok(TransportKind::Http),
            "log" => Ok(TransportKind::Log),
            other => Err(format!("unknown transport {other:?}")),
        }
    }
}

/// The HTTP email API: where to POST and the bearer key.
#[derive(Clone, Debug)]
pub struct HttpApiSettings {
    /// The endpoint messages are POSTed to: `https://`, or `http://` on loopback.
    pub url: String,
    /// Sent as `Authorization: Bearer …`.
    pub api_key: Secret,
}

/// Everything email sending reads from the environment (see the module docs).
#[derive(Clone, Debug)]
pub struct EmailSettings {
    /// Which transport sends (`EMAIL_TRANSPORT`).
    pub transport: TransportKind,
    /// The sender address (`EMAIL_FROM`).
    pub from: EmailAddress,
    /// The base of links in emails (`APP_URL`).
    pub app_url: AppUrl,
    /// SES configuration set for event publishing (bounces, complaints), if any.
    pub configuration_set: Option<String>,
    /// Present when `transport` is `Http`.
    pub http: Option<HttpApiSettings>,
    /// Timeouts and retries of the HTTP transport (`OUTBOUND_*`).
    pub outbound: OutboundSettings,
}

/// `https://`, or `http://` to a loopback host (a local stand-in for the provider).
fn http_api_url_ok(url: &str) -> bool {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| url.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/'])));
    (url.starts_with("https://") || loopback) && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl EmailSettings {
    /// Reads the email variables; each bad one is recorded on `env`, which names them all at `finish`.
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let transport = env.parsed_or("EMAIL_TRANSPORT", TransportKind::Ses, "ses, http or log");

        let from_expected = "the sender address, like no-reply@example.com";
        let raw_from = env.required("EMAIL_FROM", from_expected);
        let from = EmailAddress::parse(&raw_from).unwrap_or_else(|_| {
            if !raw_from.is_empty() {
                env.reject("EMAIL_FROM", from_expected, "not a valid email address");
            }
            // Never used: `finish` fails.
            EmailAddress::parse("invalid@example.invalid").expect("a constant, valid address")
        });

        let url_expected = "the web app's base URL, like https://app.example.com";
        let raw_url = env.required("APP_URL", url_expected);
        let app_url = AppUrl::parse(&raw_url).unwrap_or_else(|e| {
            if !raw_url.is_empty() {
                env.reject("APP_URL", url_expected, &e.to_string());
            }
            AppUrl::parse("https://example.invalid").expect("a constant, valid URL")
        });

        let configuration_set = env.optional("EMAIL_CONFIGURATION_SET");
        if let Some(name) = &configuration_set
            && !(1..=64).contains(&name.len())
        {
            env.reject("EMAIL_CONFIGURATION_SET", "an SES configuration set name (1 to 64 characters)", "too long");
        }

        let http = (transport == TransportKind::Http).then(|| {
            let url_expected = "the email API endpoint (https://, or http:// on loopback)";
            let url = env.required("EMAIL_HTTP_URL", url_expected);
            if !url.is_empty() && !http_api_url_ok(&url) {
                env.reject("EMAIL_HTTP_URL", url_expected, "not https");
            }
            let api_key = env.secret("EMAIL_HTTP_API_KEY", "the email API's bearer key");
            HttpApiSettings { url, api_key }
        });
        let outbound = OutboundSettings::from_env(env);
        Self { transport, from, app_url, configuration_set, http, outbound }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> (EmailSettings, Result<(), crate::config::ConfigError>) {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut env = EnvReader::from_fn(move |k| map.get(k).cloned());
        let s = EmailSettings::from_env(&mut env);
        (s, env.finish(()))
    }

    #[test]
    fn ses_is_the_default_and_needs_only_from_and_app_url() {
        let (s, ok) = read(&[("EMAIL_FROM", "shop@example.com"), ("APP_URL", "https://app.example.com")]);
        ok.unwrap();
        assert_eq!(s.transport, TransportKind::Ses);
        assert_eq!(s.from.as_str(), "shop@example.com");
        assert!(s.http.is_none() && s.configuration_set.is_none());
    }

    #[test]
    fn every_bad_variable_is_named() {
        let (_, err) = read(&[("EMAIL_TRANSPORT", "smtp"), ("EMAIL_FROM", "shop@example.com\r\nBcc: x@y.z")]);
        let names: Vec<String> = err.unwrap_err().problems.into_iter().map(|p| p.variable).collect();
        assert_eq!(names, ["EMAIL_TRANSPORT", "EMAIL_FROM", "APP_URL"]);

        let (_, err) = read(&[
            ("EMAIL_TRANSPORT", "http"),
            ("EMAIL_FROM", "shop@example.com"),
            ("APP_URL", "https://app.example.com"),
            ("EMAIL_HTTP_URL", "http://api.example.com/emails"),
        ]);
        let names: Vec<String> = err.unwrap_err().problems.into_iter().map(|p| p.variable).collect();
        assert_eq!(names, ["EMAIL_HTTP_URL", "EMAIL_HTTP_API_KEY"]);
    }

    #[test]
    fn http_transport_settings() {
        let (s, ok) = read(&[
            ("EMAIL_TRANSPORT", "HTTP"),
            ("EMAIL_FROM", "shop@example.com"),
            ("APP_URL", "https://app.example.com"),
            ("EMAIL_HTTP_URL", "http://127.0.0.1:8025/emails"),
            ("EMAIL_HTTP_API_KEY", "re_123"),
        ]);
        ok.unwrap();
        let http = s.http.unwrap();
        assert_eq!((http.url.as_str(), http.api_key.expose()), ("http://127.0.0.1:8025/emails", "re_123"));
        assert!(http_api_url_ok("https://api.resend.com/emails"));
        assert!(!http_api_url_ok("http://localhost.evil.com/emails"));
    }

    #[test]
    fn subjects() {
        assert!(Subject::parse("Order 1 confirmed").is_ok());
        for bad in ["", "  ", "a\r\nBcc: x", "a\nb", "tab\there", &"x".repeat(201)] {
            assert!(Subject::parse(bad).is_err(), "{bad:?}");
        }
    }
}
