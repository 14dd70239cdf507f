//! The outbound HTTP client: every call a function makes to a third-party HTTP API goes through
//! [`Outbound`], so timeouts, retries and error mapping are decided once.
//!
//! - One `reqwest::Client` (one connection pool, one TLS configuration), built at init.
//! - Each attempt has a timeout: the configured per-request timeout, or less when the caller's
//!   deadline (the Lambda deadline) is nearer. Nothing runs, and nothing sleeps, past the deadline.
//! - Idempotent requests (GET, HEAD, PUT, DELETE, OPTIONS, TRACE, or any request that carries an
//!   `Idempotency-Key` header) are retried on connect errors, 429 and 5xx, with exponential backoff
//!   and jitter; a `Retry-After` (seconds or HTTP-date) replaces the backoff. Other requests are
//!   sent once: a POST that may have been processed is never repeated blindly.
//! - Failures are one [`OutboundError`], which [`crate::http`] maps to 502 (the upstream status and at most
//!   200 characters of its body) or 504 (timeout).

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, StatusCode};
use rand::Rng;

use crate::config::EnvReader;

/// How much of an upstream error body is kept (characters).
pub const MAX_ERROR_BODY_CHARS: usize = 200;

/// Timeouts and retries of [`Outbound`] (see [`OutboundSettings::from_env`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundSettings {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one attempt, from connecting to the end of the response body.
    pub request_timeout: Duration,
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the first retry; it doubles with each retry, up to `max_backoff`.
    pub base_backoff: Duration,
    /// Longest backoff between two attempts.
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the error is returned at once.
    pub max_retry_after: Duration,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(3),
            max_attempts: 3,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(5),
        }
    }
}

impl OutboundSettings {
    /// `OUTBOUND_TIMEOUT_MS` (100..=60000, default 3000), `OUTBOUND_CONNECT_TIMEOUT_MS`
    /// (50..=10000, default 1000) and `OUTBOUND_MAX_ATTEMPTS` (1..=10, default 3).
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let d = Self::default();
        Self {
            request_timeout: env.millis("OUTBOUND_TIMEOUT_MS", d.request_timeout.as_millis() as u64, 100..=60_000),
            connect_timeout: env.millis(
                "OUTBOUND_CONNECT_TIMEOUT_MS",
                d.connect_timeout.as_millis() as u64,
                50..=10_000,
            ),
            max_attempts: env.int_in("OUTBOUND_MAX_ATTEMPTS", u64::from(d.max_attempts), 1..=10) as u32,
            ..d
        }
    }
}

/// What went wrong, without the request it happened to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboundErrorKind {
    /// The upstream answered with a non-success status.
    Status {
        /// The status the upstream answered with.
        status: StatusCode,
        /// At most [`MAX_ERROR_BODY_CHARS`] characters of the response body.
        body: String,
        /// The upstream's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// An attempt ran out of time, or the deadline left no time for one.
    Timeout,
    /// No connection could be made (refused, DNS, TLS handshake).
    Connect(String),
    /// The connection broke or the response could not be read or decoded.
    Transport(String),
    /// The request could not be built (our mistake, never retried).
    InvalidRequest(String),
}

/// A failed outbound call: where it went (scheme, host and path; never the query), how many
/// attempts were made and what the last one ran into.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct OutboundError {
    /// Scheme, host and path of the call, without query, fragment or credentials.
    pub target: String,
    /// Attempts made, the first included (0: the client could not be built).
    pub attempts: u32,
    /// What the last attempt ran into.
    pub kind: OutboundErrorKind,
}

impl fmt::Display for OutboundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.target)?;
        match &self.kind {
            OutboundErrorKind::Status { status, body, .. } => write!(f, "upstream answered {status}: {body}")?,
            OutboundErrorKind::Timeout => f.write_str("timed out")?,
            OutboundErrorKind::Connect(e) => write!(f, "could not connect: {e}")?,
            OutboundErrorKind::Transport(e) => write!(f, "transport error: {e}")?,
            OutboundErrorKind::InvalidRequest(e) => write!(f, "invalid request: {e}")?,
        }
        write!(f, " (after {} attempt(s))", self.attempts)
    }
}

impl OutboundError {
    /// Whether the same call may succeed later: throttling, 408, 5xx, timeouts and connection
    /// problems. Other 4xx answers and invalid requests will fail the same way again.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            OutboundErrorKind::Status { status, .. } => retryable_status(*status),
            OutboundErrorKind::Timeout | OutboundErrorKind::Connect(_) | OutboundErrorKind::Transport(_) => true,
            OutboundErrorKind::InvalidRequest(_) => false,
        }
    }

    /// Whether the last attempt ran out of time (a 504 rather than a 502).
    pub fn is_timeout(&self) -> bool {
        self.kind == OutboundErrorKind::Timeout
    }

    /// The upstream status, when it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match &self.kind {
            OutboundErrorKind::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error()
}

/// A successful (2xx/3xx) answer, read to the end.
#[derive(Clone, Debug)]
pub struct OutboundResponse {
    /// The upstream's status.
    pub status: StatusCode,
    /// The upstream's response headers.
    pub headers: HeaderMap,
    /// The whole response body, as received.
    pub body: Vec<u8>,
    /// How many attempts it took.
    pub attempts: u32,
}

impl OutboundResponse {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON. A body that is not `T` is the upstream's fault: a transport error (502).
    pub fn json<T: serde::de::DeserializeOwned>(&self, target: &str) -> Result<T, OutboundError> {
        serde_json::from_slice(&self.body).map_err(|e| OutboundError {
            target: target.to_owned(),
            attempts: self.attempts,
            kind: OutboundErrorKind::Transport(format!("unexpected response body: {e}")),
        })
    }
}

/// The shared client. Cheap to clone (the pool, and the client once built, are shared).
///
/// The reqwest client is built on first use, not at init: building it loads the platform's trust
/// store (rustls-platform-verifier reads every certificate of the system bundle and directory),
/// which measured +5 ms on stripe-webhook's init although only thin events ever call out.
/// The first outbound call pays it instead, beside a TLS handshake with a third party.
#[derive(Clone, Debug)]
pub struct Outbound {
    client: Arc<OnceLock<Result<reqwest::Client, String>>>,
    settings: OutboundSettings,
}

/// The URL without its query or fragment, for messages and logs.
fn target_of(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Whether a request may be sent more than once.
pub fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE)
        || headers.contains_key("idempotency-key")
}

/// `Retry-After` as a delay: delta-seconds, or an HTTP-date (a date in the past means now).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, &format).ok()?.assume_utc();
    let delta = at - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(delta).unwrap_or(Duration::ZERO))
}

impl Outbound {
    /// The outbound client of `settings`. Call once, at init; the HTTP client itself is built on
    /// first use ([`client`](Self::client)), so nothing here can fail.
    pub fn new(settings: OutboundSettings) -> Self {
        Self { client: Arc::new(OnceLock::new()), settings }
    }

    /// The client, to build requests with (`outbound.client()?.post(url)...`), built the first
    /// time it is asked for. A client that cannot be built (no usable TLS backend) is an error
    /// of every call, never a panic.
    pub fn client(&self) -> Result<&reqwest::Client, OutboundError> {
        let built = self.client.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(self.settings.connect_timeout)
                .timeout(self.settings.request_timeout)
                .pool_idle_timeout(Duration::from_secs(60))
                .user_agent(concat!("rust-serverless-bundle/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))
        });
        built.as_ref().map_err(|reason| OutboundError {
            target: String::new(),
            attempts: 0,
            kind: OutboundErrorKind::InvalidRequest(reason.clone()),
        })
    }

    /// The timeouts and retry limits it was built with.
    pub fn settings(&self) -> &OutboundSettings {
        &self.settings
    }

    /// Builds `request` and [`send`](Self::send)s it.
    pub async fn execute(
        &self,
        request: reqwest::RequestBuilder,
        deadline: Option<Instant>,
    ) -> Result<OutboundResponse, OutboundError> {
        let request = request.build().map_err(|e| OutboundError {
            target: e.url().map(target_of).unwrap_or_default(),
            attempts: 0,
            kind: OutboundErrorKind::InvalidRequest(e.to_string()),
        })?;
        self.send(request, deadline).await
    }

    /// Sends `request`, retrying as the module documentation says, and reads the whole answer.
    /// `deadline` is when the caller must have an answer (the Lambda deadline, less what the caller
    /// needs afterwards); `None` bounds each attempt by the request timeout only.
    pub async fn send(
        &self,
        request: reqwest::Request,
        deadline: Option<Instant>,
    ) -> Result<OutboundResponse, OutboundError> {
        let target = target_of(request.url());
        let retryable_request = is_idempotent(request.method(), request.headers()) && request.try_clone().is_some();
        let max_attempts = if retryable_request { self.settings.max_attempts.max(1) } else { 1 };
        let fail = |attempts, kind| OutboundError { target: target.clone(), attempts, kind };

        let mut original = Some(request);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => self.settings.request_timeout,
            };
            if remaining.is_zero() {
                return Err(fail(attempt - 1, OutboundErrorKind::Timeout));
            }
            // Every attempt but the last sends a copy; the last one sends the original.
            let this = if attempt < max_attempts {
                original.as_ref().and_then(reqwest::Request::try_clone)
            } else {
                original.take()
            };
            let Some(mut this) = this else {
                return Err(fail(attempt, OutboundErrorKind::InvalidRequest("the request cannot be replayed".into())));
            };
            *this.timeout_mut() = Some(remaining.min(self.settings.request_timeout));

            let error = match self.attempt(this).await {
                Ok(response) => return Ok(OutboundResponse { attempts: attempt, ..response }),
                Err(kind) => kind,
            };
            let retry = attempt < max_attempts
                && match &error {
                    OutboundErrorKind::Status { status, .. } => retryable_status(*status),
                    OutboundErrorKind::Connect(_) => true,
                    // A timed-out or broken request may have been processed, and waiting for
                    // another would spend the caller's deadline.
                    _ => false,
                };
            if !retry {
                return Err(fail(attempt, error));
            }
            let delay = match &error {
                OutboundErrorKind::Status { retry_after: Some(after), .. } => {
                    if *after > self.settings.max_retry_after {
                        return Err(fail(attempt, error));
                    }
                    *after
                }
                _ => self.backoff(attempt),
            };
            if let Some(d) = deadline
                && Instant::now() + delay >= d
            {
                // Waiting would end past the deadline: the last answer is the answer.
                return Err(fail(attempt, error));
            }
            tracing::debug!(target = %target, attempt, delay_ms = delay.as_millis() as u64, "outbound retry");
            tokio::time::sleep(delay).await;
        }
    }

    /// Exponential backoff with "equal jitter": half the step is fixed, half is random, so
    /// retries spread out but never come back at once.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.settings.base_backoff.saturating_mul(1u32 << (attempt - 1).min(16));
        let cap = exp.min(self.settings.max_backoff);
        let half = cap / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// One attempt: send, then read the whole body (both within the request's timeout).
    async fn attempt(&self, request: reqwest::Request) -> Result<OutboundResponse, OutboundErrorKind> {
        let response = self.client().map_err(|e| e.kind)?.execute(request).await.map_err(classify)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(classify)?.to_vec();
        if status.is_success() || status.is_redirection() {
            return Ok(OutboundResponse { status, headers, body, attempts: 0 });
        }
        let retry_after =
            headers.get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let body: String = String::from_utf8_lossy(&body).chars().take(MAX_ERROR_BODY_CHARS).collect();
        Err(OutboundErrorKind::Status { status, body, retry_after })
    }
}

fn classify(e: reqwest::Error) -> OutboundErrorKind {
    // The URL is in `OutboundError::target` already, without its query (which may hold a key).
    let e = e.without_url();
    // reqwest reports a connect timeout as both; it is a timeout.
    if e.is_timeout() {
        OutboundErrorKind::Timeout
    } else if e.is_connect() {
        OutboundErrorKind::Connect(error_chain(&e))
    } else if e.is_builder() {
        OutboundErrorKind::InvalidRequest(error_chain(&e))
    } else {
        OutboundErrorKind::Transport(error_chain(&e))
    }
}

/// The error and its sources on one line (reqwest's and the SDKs' own messages are only the
/// outermost layer).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(30);
        let fmt = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        let after = parse_retry_after(&soon.format(&fmt).unwrap()).unwrap();
        assert!(after > Duration::from_secs(27) && after <= Duration::from_secs(30), "{after:?}");
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn only_idempotent_requests_are_retried() {
        let mut headers = HeaderMap::new();
        assert!(is_idempotent(&Method::GET, &headers));
        assert!(is_idempotent(&Method::PUT, &headers));
        assert!(!is_idempotent(&Method::POST, &headers));
        assert!(!is_idempotent(&Method::PATCH, &headers));
        headers.insert("Idempotency-Key", http::HeaderValue::from_static("k1"));
        assert!(is_idempotent(&Method::POST, &headers));
    }

    #[test]
    fn backoff_grows_and_stays_capped() {
        let outbound = Outbound::new(OutboundSettings {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            ..OutboundSettings::default()
        });
        for _ in 0..20 {
            let first = outbound.backoff(1);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first), "{first:?}");
            let second = outbound.backoff(2);
            assert!((Duration::from_millis(100)..=Duration::from_millis(200)).contains(&second), "{second:?}");
            let late = outbound.backoff(30);
            assert!((Duration::from_millis(150)..=Duration::from_millis(300)).contains(&late), "{late:?}");
        }
    }

    #[test]
    fn targets_never_carry_the_query_or_credentials() {
        let url = reqwest::Url::parse("https://user:pw@api.example.com/emails?key=secret#x").unwrap();
        assert_eq!(target_of(&url), "https://api.example.com/emails");
    }

    #[test]
    fn settings_from_the_environment() {
        let mut env = EnvReader::from_fn(|k| match k {
            "OUTBOUND_TIMEOUT_MS" => Some("1500".into()),
            "OUTBOUND_MAX_ATTEMPTS" => Some("1".into()),
            _ => None,
        });
        let s = OutboundSettings::from_env(&mut env);
        assert!(env.finish(()).is_ok());
        assert_eq!((s.request_timeout, s.max_attempts), (Duration::from_millis(1500), 1));
        assert_eq!(s.connect_timeout, Duration::from_secs(1));
        let mut env = EnvReader::from_fn(|k| (k == "OUTBOUND_MAX_ATTEMPTS").then(|| "0".into()));
        OutboundSettings::from_env(&mut env);
        assert!(env.finish(()).is_err());
    }
}
