//! Stripe thin events: the `v2.core.event` notifications of an event destination.
//!
//! A thin notification is signed like a snapshot event (`Stripe-Signature`, same secret scheme)
//! but carries no object: `{"id": "evt_…", "object": "v2.core.event", "type": "v1.payment_intent.succeeded",
//! "created": "<RFC 3339>", "livemode": false, "related_object": {"id", "type", "url"}}`. The
//! receiver fetches the event (`GET /v2/core/events/{id}`) with its API key, and the object it is
//! about (`related_object.url`), so what it acts on is always Stripe's current state, never a
//! payload that might be stale or out of order.
//!
//! Both calls go through [`crate::outbound`]: per-attempt timeouts bounded by the invocation's
//! deadline, and retries of 429 (Stripe's rate-limit answer) and 5xx with backoff or the
//! server's `Retry-After`. `Stripe-Version` pins the API version the objects are read in.

use std::time::Instant;

use serde::Deserialize;

use crate::config::{EnvReader, Secret};
use crate::idempotency::Fingerprint;
use crate::outbound::{Outbound, OutboundError, OutboundSettings};

use super::stripe::{Event, EventData, InvalidEvent};

/// The `object` of a thin event notification.
pub const THIN_EVENT_OBJECT: &str = "v2.core.event";
/// Stripe's API, unless `STRIPE_API_BASE_URL` says otherwise (tests: a local server).
pub const DEFAULT_API_BASE_URL: &str = "https://api.stripe.com";
/// The `Stripe-Version` sent unless `STRIPE_API_VERSION` says otherwise.
pub const DEFAULT_API_VERSION: &str = "2025-09-30.clover";
/// Thin events about v1 resources are named after the snapshot type with this prefix.
pub const V1_PREFIX: &str = "v1.";

/// What a thin event points at.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct RelatedObject {
    /// The object's id (`pi_…`, `sub_…`).
    pub id: String,
    /// Its type (`payment_intent`, `subscription`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its path on the API (`/v1/payment_intents/pi_…`).
    pub url: String,
}

/// A thin event: the notification, or the event as fetched from `/v2/core/events/{id}`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ThinEvent {
    /// The event id (`evt_…`), the idempotency key as for snapshot events.
    pub id: String,
    /// Always [`THIN_EVENT_OBJECT`].
    pub object: String,
    /// The event type, such as `v1.payment_intent.succeeded`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When Stripe created the event (RFC 3339).
    #[serde(default)]
    pub created: Option<String>,
    /// Live or test mode.
    #[serde(default)]
    pub livemode: bool,
    /// The object the event is about, when there is one.
    #[serde(default)]
    pub related_object: Option<RelatedObject>,
}

/// Whether a verified body is a thin notification (its `object` is `v2.core.event`).
pub fn is_thin(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Object<'a> {
        #[serde(borrow, default)]
        object: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Object<'_>>(body).is_ok_and(|o| o.object.as_deref() == Some(THIN_EVENT_OBJECT))
}

impl ThinEvent {
    /// Parses a verified notification; the id is checked as a snapshot event's is.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidEvent> {
        let event: ThinEvent = serde_json::from_slice(body)
            .map_err(|e| InvalidEvent(format!("the body is not a Stripe thin event: {e}")))?;
        if event.object != THIN_EVENT_OBJECT {
            return Err(InvalidEvent(format!("object is {:?}, not {THIN_EVENT_OBJECT}", event.object)));
        }
        let id_ok = (1..=255).contains(&event.id.len())
            && event.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !id_ok {
            return Err(InvalidEvent("the event id must be 1 to 255 characters of A-Z, a-z, 0-9, _ and -".into()));
        }
        Ok(event)
    }

    /// The snapshot type this thin event stands for (`v1.payment_intent.succeeded` →
    /// `payment_intent.succeeded`); `None` for v2 types, which have no snapshot twin.
    pub fn v1_type(&self) -> Option<&str> {
        self.kind.strip_prefix(V1_PREFIX)
    }

    /// What must not change between deliveries of this id: its type, creation time and object.
    pub fn fingerprint(&self) -> Fingerprint {
        let related = self.related_object.as_ref().map(|r| (&r.id, &r.kind, &r.url));
        let canonical = serde_json::json!([self.id, self.kind, self.created, self.livemode, related]);
        Fingerprint::of(canonical.to_string().as_bytes())
    }

    /// The snapshot event this thin event and its fetched object amount to, so that the same
    /// effects run for both kinds of destination.
    pub fn to_snapshot(&self, object: serde_json::Value) -> Event {
        let created = self
            .created
            .as_deref()
            .and_then(|c| time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok())
            .map(|t| t.unix_timestamp());
        Event {
            id: self.id.clone(),
            kind: self.v1_type().unwrap_or(&self.kind).to_owned(),
            created,
            livemode: self.livemode,
            data: EventData { object },
        }
    }
}

/// `STRIPE_API_KEY`, `STRIPE_API_BASE_URL`, `STRIPE_API_VERSION` and the outbound timeouts.
#[derive(Clone, Debug)]
pub struct StripeApiSettings {
    /// The secret (`sk_…`) or restricted (`rk_…`) key; without it thin events are refused.
    pub api_key: Option<Secret>,
    /// Where the API is (`STRIPE_API_BASE_URL`, default [`DEFAULT_API_BASE_URL`]).
    pub base_url: String,
    /// `Stripe-Version` (`STRIPE_API_VERSION`, default [`DEFAULT_API_VERSION`]).
    pub api_version: String,
    /// Timeouts and retries of the calls.
    pub outbound: OutboundSettings,
}

impl StripeApiSettings {
    /// Reads the variables; a key that is not `sk_…`/`rk_…` or a base URL that is not http(s)
    /// is a configuration error.
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let api_key = env.optional("STRIPE_API_KEY");
        if api_key.as_deref().is_some_and(|k| !(k.starts_with("sk_") || k.starts_with("rk_"))) {
            env.reject("STRIPE_API_KEY", "a Stripe secret or restricted key (sk_... or rk_...)", "wrong prefix");
        }
        let base_url = env.optional("STRIPE_API_BASE_URL").unwrap_or_else(|| DEFAULT_API_BASE_URL.to_owned());
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            env.reject("STRIPE_API_BASE_URL", "an http(s) URL", "not an http(s) URL");
        }
        Self {
            api_key: api_key.map(Secret::new),
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_version: env.optional("STRIPE_API_VERSION").unwrap_or_else(|| DEFAULT_API_VERSION.to_owned()),
            outbound: OutboundSettings::from_env(env),
        }
    }
}

/// Why a thin event could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum StripeApiError {
    /// No `STRIPE_API_KEY`: thin events cannot be fetched.
    #[error("STRIPE_API_KEY is not set; thin events cannot be fetched")]
    NotConfigured,
    /// The call failed (after its retries).
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    /// The API answered something that is not what was asked for.
    #[error("the Stripe API answered an unexpected document: {0}")]
    Unexpected(String),
}

/// The two reads a thin event needs, over one HTTP client built at init.
#[derive(Clone, Debug)]
pub struct StripeApi {
    outbound: Outbound,
    settings: StripeApiSettings,
}

impl StripeApi {
    /// The client (its connection pool and TLS configuration are built on the first call).
    pub fn new(settings: &StripeApiSettings) -> Self {
        Self { outbound: Outbound::new(settings.outbound.clone()), settings: settings.clone() }
    }

    async fn get(&self, path: &str, target: &str, deadline: Instant) -> Result<serde_json::Value, StripeApiError> {
        let key = self.settings.api_key.as_ref().ok_or(StripeApiError::NotConfigured)?;
        let url = format!("{}{path}", self.settings.base_url);
        let request = self
            .outbound
            .client()?
            .get(url)
            .bearer_auth(key.expose())
            .header("Stripe-Version", &self.settings.api_version);
        let response = self.outbound.execute(request, Some(deadline)).await?;
        Ok(response.json(target)?)
    }

    /// `GET /v2/core/events/{id}`: the event as Stripe has it.
    pub async fn event(&self, id: &str, deadline: Instant) -> Result<ThinEvent, StripeApiError> {
        let value = self.get(&format!("/v2/core/events/{id}"), "stripe event", deadline).await?;
        let event: ThinEvent =
            serde_json::from_value(value).map_err(|e| StripeApiError::Unexpected(format!("event {id}: {e}")))?;
        if event.id != id {
            return Err(StripeApiError::Unexpected(format!("asked for event {id}, got {}", event.id)));
        }
        Ok(event)
    }

    /// The object an event points at, read at its `url` (a path on the API, never another host).
    pub async fn related_object(
        &self,
        related: &RelatedObject,
        deadline: Instant,
    ) -> Result<serde_json::Value, StripeApiError> {
        if !related.url.starts_with('/') || related.url.starts_with("//") {
            return Err(StripeApiError::Unexpected(format!("related_object.url {:?} is not an API path", related.url)));
        }
        let object = self.get(&related.url, "stripe object", deadline).await?;
        if object.get("id").and_then(serde_json::Value::as_str) != Some(related.id.as_str()) {
            return Err(StripeApiError::Unexpected(format!("{} did not answer object {}", related.url, related.id)));
        }
        Ok(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTIFICATION: &str = r#"{"id":"evt_test_65R9","object":"v2.core.event","type":"v1.payment_intent.succeeded",
        "livemode":false,"created":"2026-11-30T12:00:00.000Z",
        "related_object":{"id":"pi_1","type":"payment_intent","url":"/v1/payment_intents/pi_1"}}"#;

    #[test]
    fn a_notification_is_told_from_a_snapshot_and_maps_to_its_v1_type() {
        assert!(is_thin(NOTIFICATION.as_bytes()));
        assert!(!is_thin(br#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded","data":{}}"#));
        assert!(!is_thin(b"not json"));
        let thin = ThinEvent::parse(NOTIFICATION.as_bytes()).unwrap();
        assert_eq!(thin.v1_type(), Some("payment_intent.succeeded"));
        let snapshot = thin.to_snapshot(serde_json::json!({"id": "pi_1"}));
        assert_eq!((snapshot.kind.as_str(), snapshot.created), ("payment_intent.succeeded", Some(1_796_040_000)));
        assert!(ThinEvent::parse(br#"{"id":"evt 1","object":"v2.core.event","type":"x"}"#).is_err());
    }

    #[test]
    fn the_fingerprint_covers_the_object_pointed_at() {
        let a = ThinEvent::parse(NOTIFICATION.as_bytes()).unwrap();
        let mut b = a.clone();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.related_object.as_mut().unwrap().id = "pi_2".into();
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn settings_refuse_a_publishable_key_and_default_to_stripe() {
        let mut env = EnvReader::from_pairs(&[]);
        let s = StripeApiSettings::from_env(&mut env);
        assert!(env.finish(()).is_ok());
        assert_eq!((s.base_url.as_str(), s.api_key.is_none()), (DEFAULT_API_BASE_URL, true));
        let mut env = EnvReader::from_pairs(&[("STRIPE_API_KEY", "pk_live_x"), ("STRIPE_API_BASE_URL", "ftp://x")]);
        StripeApiSettings::from_env(&mut env);
        assert_eq!(env.finish(()).unwrap_err().problems.len(), 2);
    }
}
