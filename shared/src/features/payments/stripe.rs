//! Stripe webhooks: the `Stripe-Signature` scheme, verified the way Stripe's own libraries do it,
//! and the event types the bundle handles.
//!
//! Stripe signs `{t}.{raw body}` with HMAC-SHA256 under the endpoint's signing secret (the whole
//! `whsec_…` string is the key) and sends `Stripe-Signature: t=<unix seconds>,v1=<64 hex>[,v1=…][,v0=…]`.
//! During a secret roll it sends one `v1` per active secret, so the verifier accepts the delivery when
//! *any* `v1` matches *any* configured secret (async-stripe keeps only the last `v1`, which refuses
//! valid deliveries during a roll). Comparisons are constant-time (`hmac`'s `verify_slice`).
//!
//! Like stripe-node, stripe-python and stripe-go, the signature is checked first and the timestamp
//! second, and only an *old* timestamp is refused (`now - t > tolerance`): a timestamp in the future
//! can only come from a holder of the secret, and refusing it would only lose events when clocks
//! disagree. The body is verified exactly as received; it is parsed only after it is verified.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::config::{EnvReader, Secret};

type HmacSha256 = Hmac<Sha256>;

/// The header Stripe signs deliveries with (HTTP header names are case-insensitive).
pub const SIGNATURE_HEADER: &str = "stripe-signature";
/// Stripe's libraries' default tolerance.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// A header longer than this is refused before it is parsed (Stripe's are about 150 bytes).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// The prefix of every Stripe webhook signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Why a delivery was refused. Every variant is the caller's fault (a 400), never ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    #[error("the Stripe-Signature header is missing")]
    MissingHeader,
    /// The header does not parse; the text says which rule it broke.
    #[error("the Stripe-Signature header is malformed: {0}")]
    Malformed(&'static str),
    /// The header parses but carries no `v1` element.
    #[error("the Stripe-Signature header has no v1 signature")]
    NoV1Signature,
    /// A `v1` is not 64 lowercase hex digits.
    #[error("a v1 signature is not 64 lowercase hex digits")]
    BadHex,
    /// No `v1` matches the body under any configured secret.
    #[error("no v1 signature matches the body under any configured secret")]
    NoMatch,
    /// The signature matched, but it was made longer ago than the tolerance allows (a replay).
    #[error("the signature was made {age_secs} s ago; the tolerance is {tolerance_secs} s")]
    Stale {
        /// Seconds between the header's `t` and now.
        age_secs: i64,
        /// The configured tolerance, in seconds.
        tolerance_secs: u64,
    },
}

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader<'a> {
    /// `t`, as written: the exact text that was signed.
    pub timestamp_text: &'a str,
    /// `t`, in Unix seconds.
    pub timestamp: i64,
    /// Every `v1`, decoded, in header order. Other schemes (`v0`, future ones) are ignored.
    pub v1: Vec<[u8; 32]>,
}

/// Parses `t=…,v1=…[,v1=…][,other=…]`. Elements may come in any order and are trimmed of spaces;
/// each must be `key=value`; exactly one `t` (1 to 12 decimal digits); at least one `v1`, each
/// exactly 64 lowercase hex digits. Never panics, whatever the input.
pub fn parse_header(header: &str) -> Result<SignatureHeader<'_>, SignatureError> {
    use SignatureError::Malformed;
    if header.len() > MAX_HEADER_BYTES {
        return Err(Malformed("longer than 8 KiB"));
    }
    if header.trim().is_empty() {
        return Err(Malformed("empty"));
    }
    let mut timestamp: Option<&str> = None;
    let mut v1 = Vec::new();
    for element in header.split(',') {
        let element = element.trim_matches(|c: char| c == ' ' || c == '\t');
        let Some((key, value)) = element.split_once('=') else {
            return Err(Malformed("every element must be key=value"));
        };
        match key {
            "" => return Err(Malformed("an element has an empty key")),
            "t" => {
                if timestamp.is_some() {
                    return Err(Malformed("more than one t= element"));
                }
                if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Malformed("t= must be a Unix time in decimal seconds"));
                }
                timestamp = Some(value);
            }
            "v1" => v1.push(decode_signature(value)?),
            _ => {} // v0 (test-mode legacy) and schemes Stripe may add later
        }
    }
    let timestamp_text = timestamp.ok_or(Malformed("no t= element"))?;
    if v1.is_empty() {
        return Err(SignatureError::NoV1Signature);
    }
    // At most 12 digits: always fits.
    let timestamp =
        timestamp_text.parse::<i64>().map_err(|_| Malformed("t= must be a Unix time in decimal seconds"))?;
    Ok(SignatureHeader { timestamp_text, timestamp, v1 })
}

/// 64 lowercase hex digits → 32 bytes. Stripe sends lowercase; anything else is refused.
fn decode_signature(value: &str) -> Result<[u8; 32], SignatureError> {
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(SignatureError::BadHex);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(value, &mut out).map_err(|_| SignatureError::BadHex)?;
    Ok(out)
}

/// A verified delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// `t` of the header.
    pub timestamp: i64,
    /// Which configured secret matched (0 = the first). During a roll this tells when the old
    /// secret stops being used.
    pub secret_index: usize,
}

/// Verification settings, from the environment.
#[derive(Clone, Debug)]
pub struct VerifierSettings {
    /// The signing secrets (`whsec_…`), several during a roll; a delivery may match any.
    pub secrets: Vec<Secret>,
    /// The oldest signature accepted, measured from its `t` (a replay guard).
    pub tolerance: Duration,
}

impl VerifierSettings {
    /// `STRIPE_WEBHOOK_SECRET`: the endpoint's signing secret, or several comma-separated during a
    /// roll (each `whsec_…`). `STRIPE_WEBHOOK_TOLERANCE_SECS`: 1 to 3600, default 300.
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        const EXPECTED: &str = "one or more comma-separated Stripe signing secrets (whsec_...)";
        let secrets = env.list("STRIPE_WEBHOOK_SECRET");
        if secrets.is_empty() {
            env.required("STRIPE_WEBHOOK_SECRET", EXPECTED);
        } else if secrets.iter().any(|s| !s.starts_with(SECRET_PREFIX) || s.len() <= SECRET_PREFIX.len()) {
            env.reject("STRIPE_WEBHOOK_SECRET", EXPECTED, "an entry does not start with whsec_");
        }
        let tolerance = env.seconds("STRIPE_WEBHOOK_TOLERANCE_SECS", DEFAULT_TOLERANCE.as_secs(), 1..=3600);
        Self { secrets: secrets.into_iter().map(Secret::new).collect(), tolerance }
    }
}

/// Verifies `Stripe-Signature` headers against one or more secrets. Keys are set up once, at init.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<HmacSha256>,
    tolerance: Duration,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").field("secrets", &self.keys.len()).field("tolerance", &self.tolerance).finish()
    }
}

impl Verifier {
    /// Keys every secret once; verifications clone the keyed state.
    pub fn new(settings: &VerifierSettings) -> Self {
        let keys = settings
            .secrets
            .iter()
            .map(|s| HmacSha256::new_from_slice(s.expose().as_bytes()).expect("HMAC takes keys of any length"))
            .collect();
        Self { keys, tolerance: settings.tolerance }
    }

    /// How old a signature may be.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// Verifies `header` (the `Stripe-Signature` value, `None` when absent) over the raw `body`, at
    /// `now` (Unix seconds). The signature is checked before the timestamp, as Stripe's libraries do.
    pub fn verify(&self, header: Option<&str>, body: &[u8], now: i64) -> Result<Verified, SignatureError> {
        let header = parse_header(header.ok_or(SignatureError::MissingHeader)?)?;
        let secret_index = self.matching_secret(&header, body).ok_or(SignatureError::NoMatch)?;
        let age_secs = now.saturating_sub(header.timestamp);
        let tolerance_secs = self.tolerance.as_secs();
        if age_secs > i64::try_from(tolerance_secs).unwrap_or(i64::MAX) {
            return Err(SignatureError::Stale { age_secs, tolerance_secs });
        }
        Ok(Verified { timestamp: header.timestamp, secret_index })
    }

    /// The index of the first secret under which some `v1` matches.
    fn matching_secret(&self, header: &SignatureHeader<'_>, body: &[u8]) -> Option<usize> {
        self.keys.iter().position(|key| {
            let mut mac = key.clone();
            mac.update(header.timestamp_text.as_bytes());
            mac.update(b".");
            mac.update(body);
            // `verify_slice` compares in constant time; it consumes the MAC, hence a clone per v1.
            header.v1.iter().any(|sig| mac.clone().verify_slice(sig).is_ok())
        })
    }
}

/// The header Stripe would send for `body` signed with `secret` at `timestamp`: what
/// `stripe.webhooks.generateTestHeaderString` makes. For tests, the ops tool and local use.
pub fn sign_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

// ---- events -----------------------------------------------------------------------------------

/// The event type that marks an order paid.
pub const PAYMENT_INTENT_SUCCEEDED: &str = "payment_intent.succeeded";
/// The event type that marks a subscription canceled.
pub const SUBSCRIPTION_DELETED: &str = "customer.subscription.deleted";
/// The event types [`Event::handled`] acts on; every other type is acknowledged and ignored.
pub const HANDLED_TYPES: [&str; 2] = [PAYMENT_INTENT_SUCCEEDED, SUBSCRIPTION_DELETED];

/// A verified body that is not the event we expect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEvent(pub String);

/// The envelope of every Stripe event; `data.object` is read according to `type`.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    /// Stripe's event id (`evt_…`), the delivery's idempotency key.
    pub id: String,
    /// The event type (`type` on the wire), such as [`PAYMENT_INTENT_SUCCEEDED`].
    #[serde(rename = "type")]
    pub kind: String,
    /// When Stripe created the event, Unix seconds.
    #[serde(default)]
    pub created: Option<i64>,
    /// Whether the event comes from live mode rather than test mode.
    #[serde(default)]
    pub livemode: bool,
    /// The object the event is about.
    pub data: EventData,
}

/// `data` of an event.
#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    /// The PaymentIntent, Subscription, ... as JSON, read once `type` is known.
    pub object: serde_json::Value,
}

/// The part of a PaymentIntent we use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentIntent {
    /// The PaymentIntent id (`pi_…`).
    pub id: String,
    /// In minor units of `currency`.
    pub amount: i64,
    /// What was received, in minor units, when Stripe sends it (see [`PaymentIntent::received`]).
    #[serde(default)]
    pub amount_received: Option<i64>,
    /// Lowercase ISO 4217, as Stripe sends it.
    pub currency: String,
    /// The checkout's key-value pairs; `orderId` names the order.
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

impl PaymentIntent {
    /// `metadata.orderId`, which the checkout sets when it creates the PaymentIntent.
    pub fn order_id(&self) -> Option<&str> {
        self.metadata.get("orderId").map(String::as_str)
    }

    /// What was actually received (for a succeeded PaymentIntent, the whole amount).
    pub fn received(&self) -> i64 {
        self.amount_received.unwrap_or(self.amount)
    }
}

/// The part of a Subscription we use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Subscription {
    /// The subscription id (`sub_…`), the `Subscriptions` table key.
    pub id: String,
    /// The customer id (`cus_…`), when sent.
    #[serde(default)]
    pub customer: Option<String>,
    /// Stripe's status (`canceled`, `active`, ...), when sent.
    #[serde(default)]
    pub status: Option<String>,
    /// When it was canceled, Unix seconds.
    #[serde(default)]
    pub canceled_at: Option<i64>,
    /// When it ended, Unix seconds.
    #[serde(default)]
    pub ended_at: Option<i64>,
}

/// What an event asks of us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// `payment_intent.succeeded`: mark the order in its metadata paid.
    PaymentSucceeded(PaymentIntent),
    /// `customer.subscription.deleted`: mark the subscription canceled.
    SubscriptionDeleted(Subscription),
    /// A type we do not handle: acknowledged and logged.
    Ignored,
}

impl Event {
    /// Parses a verified body. The id becomes an idempotency key, so it is checked here:
    /// 1 to 255 characters of `A-Z a-z 0-9 _ -`.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidEvent> {
        let event: Event =
            serde_json::from_slice(body).map_err(|e| InvalidEvent(format!("the body is not a Stripe event: {e}")))?;
        let id_ok = (1..=255).contains(&event.id.len())
            && event.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !id_ok {
            return Err(InvalidEvent("the event id must be 1 to 255 characters of A-Z, a-z, 0-9, _ and -".into()));
        }
        Ok(event)
    }

    /// Reads `data.object` for the types we handle.
    pub fn handled(&self) -> Result<Handled, InvalidEvent> {
        let object = || self.data.object.clone();
        let invalid = |what: &str, e: serde_json::Error| InvalidEvent(format!("{}: {what}: {e}", self.kind));
        match self.kind.as_str() {
            PAYMENT_INTENT_SUCCEEDED => serde_json::from_value(object())
                .map(Handled::PaymentSucceeded)
                .map_err(|e| invalid("data.object is not a PaymentIntent", e)),
            SUBSCRIPTION_DELETED => serde_json::from_value(object())
                .map(Handled::SubscriptionDeleted)
                .map_err(|e| invalid("data.object is not a Subscription", e)),
            _ => Ok(Handled::Ignored),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::Value;

    const GOLDEN: &str = include_str!("../../../tests/fixtures/stripe/golden.json");

    fn verifier(secrets: &[&str], tolerance_secs: u64) -> Verifier {
        Verifier::new(&VerifierSettings {
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            tolerance: Duration::from_secs(tolerance_secs),
        })
    }

    fn golden() -> Value {
        serde_json::from_str(GOLDEN).unwrap()
    }

    fn case(c: &Value) -> (&str, i64, &str, &str) {
        (
            c["secret"].as_str().unwrap(),
            c["timestamp"].as_i64().unwrap(),
            c["payload"].as_str().unwrap(),
            c["header"].as_str().unwrap(),
        )
    }

    /// Headers made by stripe-node's `generateTestHeaderString` verify, and ours are identical.
    #[test]
    fn golden_headers_from_stripe_node_verify() {
        let doc = golden();
        let cases = doc["cases"].as_array().unwrap();
        assert!(cases.len() >= 5);
        for c in cases {
            let (secret, t, payload, header) = case(c);
            let name = c["name"].as_str().unwrap();
            let ours = verifier(&[secret], 300).verify(Some(header), payload.as_bytes(), t + 10);
            if c["stripeNodeVerifies"] == "ok" {
                assert_eq!(ours, Ok(Verified { timestamp: t, secret_index: 0 }), "{name}");
                assert_eq!(sign_header(secret, t, payload.as_bytes()), header, "{name}");
                // One flipped byte of the body, or another secret, and it no longer matches.
                let mut tampered = payload.as_bytes().to_vec();
                tampered[payload.len() / 2] ^= 0x01;
                assert_eq!(verifier(&[secret], 300).verify(Some(header), &tampered, t), Err(SignatureError::NoMatch));
                assert_eq!(
                    verifier(&["whsec_other"], 300).verify(Some(header), payload.as_bytes(), t),
                    Err(SignatureError::NoMatch),
                    "{name}"
                );
            } else {
                assert_eq!(ours, Err(SignatureError::NoV1Signature), "{name}");
            }
        }
    }

    #[test]
    fn reserialised_json_is_another_body() {
        // Verification is over the raw bytes: re-serialised JSON (compact vs pretty) is another body.
        let doc = golden();
        let pretty = doc["cases"].as_array().unwrap().iter().find(|c| c["payload"].as_str().unwrap().contains('\n'));
        let (secret, t, payload, header) = case(pretty.unwrap());
        let compact = serde_json::to_string(&serde_json::from_str::<Value>(payload).unwrap()).unwrap();
        assert_eq!(verifier(&[secret], 300).verify(Some(header), compact.as_bytes(), t), Err(SignatureError::NoMatch));
    }

    /// A delivery during a roll carries one v1 per secret; any configured secret may match any v1.
    #[test]
    fn rotated_secrets_and_multiple_v1() {
        let doc = golden();
        let roll = &doc["roll"];
        let secrets: Vec<&str> = roll["secrets"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        let (t, payload, header) =
            (roll["timestamp"].as_i64().unwrap(), roll["payload"].as_str().unwrap(), roll["header"].as_str().unwrap());
        assert_eq!(parse_header(header).unwrap().v1.len(), 2);
        let body = payload.as_bytes();
        let (old, new) = (secrets[0], secrets[1]);
        assert_eq!(verifier(&[old], 300).verify(Some(header), body, t).unwrap().secret_index, 0);
        assert_eq!(verifier(&[new], 300).verify(Some(header), body, t).unwrap().secret_index, 0);
        assert_eq!(verifier(&["whsec_unrelated", new], 300).verify(Some(header), body, t).unwrap().secret_index, 1);
        assert_eq!(verifier(&["whsec_a", "whsec_b"], 300).verify(Some(header), body, t), Err(SignatureError::NoMatch));

        // The matching v1 may be anywhere among others (async-stripe only looks at the last one).
        let good = sign_header(new, t, body);
        let good_v1 = good.split("v1=").nth(1).unwrap();
        let junk = "0".repeat(64);
        for h in [
            format!("t={t},v1={good_v1},v1={junk}"),
            format!("t={t},v1={junk},v1={good_v1},v1={junk}"),
            format!("v1={junk},v0={junk},v1={good_v1},t={t}"),
            format!("t={t}, v1={good_v1}"),
        ] {
            assert!(verifier(&[old, new], 300).verify(Some(&h), body, t).is_ok(), "{h}");
        }
        // A v1 made with the old secret still verifies while the old secret is configured.
        let by_old = sign_header(old, t, body);
        assert_eq!(verifier(&[new, old], 300).verify(Some(&by_old), body, t).unwrap().secret_index, 1);
        assert_eq!(verifier(&[new], 300).verify(Some(&by_old), body, t), Err(SignatureError::NoMatch));
    }

    #[test]
    fn tolerance_edges_match_stripe_node() {
        let doc = golden();
        let (secret, t, payload, header) = case(&doc["cases"][0]);
        for edge in doc["toleranceEdges"].as_array().unwrap() {
            let age = edge["ageSeconds"].as_i64().unwrap();
            let tolerance = edge["tolerance"].as_u64().unwrap();
            let ours = verifier(&[secret], tolerance).verify(Some(header), payload.as_bytes(), t + age);
            assert_eq!(ours.is_ok(), edge["stripeNode"] == "ok", "age {age}: stripe-node says {}", edge["stripeNode"]);
        }
        let v = verifier(&[secret], 300);
        assert!(v.verify(Some(header), payload.as_bytes(), t + 300).is_ok());
        assert_eq!(
            v.verify(Some(header), payload.as_bytes(), t + 301),
            Err(SignatureError::Stale { age_secs: 301, tolerance_secs: 300 })
        );
        assert!(v.verify(Some(header), payload.as_bytes(), t - 86_400).is_ok(), "future timestamps are accepted");
        // The signature is checked first: a stale header with a wrong signature is a mismatch.
        assert_eq!(v.verify(Some(header), b"other", t + 10_000), Err(SignatureError::NoMatch));
        // Tolerance is configurable.
        assert!(verifier(&[secret], 3600).verify(Some(header), payload.as_bytes(), t + 3600).is_ok());
        assert!(verifier(&[secret], 1).verify(Some(header), payload.as_bytes(), t + 2).is_err());
    }

    #[test]
    fn malformed_headers_are_refused_precisely() {
        use SignatureError::*;
        let v1 = "a".repeat(64);
        let cases: Vec<(String, SignatureError)> = vec![
            (String::new(), Malformed("empty")),
            ("   ".into(), Malformed("empty")),
            (format!("v1={v1}"), Malformed("no t= element")),
            ("t=123".into(), NoV1Signature),
            (format!("t=123,v0={v1}"), NoV1Signature),
            (format!("t=123,v1={}", "A".repeat(64)), BadHex),
            (format!("t=123,v1={}", "g".repeat(64)), BadHex),
            (format!("t=123,v1={}", "a".repeat(63)), BadHex),
            (format!("t=123,v1={}", "a".repeat(65)), BadHex),
            ("t=123,v1=".into(), BadHex),
            (format!("t=abc,v1={v1}"), Malformed("t= must be a Unix time in decimal seconds")),
            (format!("t=-5,v1={v1}"), Malformed("t= must be a Unix time in decimal seconds")),
            (format!("t=,v1={v1}"), Malformed("t= must be a Unix time in decimal seconds")),
            (format!("t=1234567890123,v1={v1}"), Malformed("t= must be a Unix time in decimal seconds")),
            (format!("t=1,t=2,v1={v1}"), Malformed("more than one t= element")),
            (format!("t=1;v1={v1}"), Malformed("t= must be a Unix time in decimal seconds")),
            (format!("t=1,v1{v1}"), Malformed("every element must be key=value")),
            (format!("t=1,,v1={v1}"), Malformed("every element must be key=value")),
            (format!("t=1,v1={v1},"), Malformed("every element must be key=value")),
            (format!("t=1,={v1}"), Malformed("an element has an empty key")),
            (format!("t=1,v1={v1}{}", ",x=y".repeat(2048)), Malformed("longer than 8 KiB")),
        ];
        let v = verifier(&["whsec_x"], 300);
        for (header, expected) in cases {
            assert_eq!(v.verify(Some(&header), b"{}", 0), Err(expected), "{header:?}");
        }
        assert_eq!(v.verify(None, b"{}", 0), Err(MissingHeader));
    }

    /// Randomised: arbitrary text never panics the parser, and whatever it accepts obeys the rules;
    /// well-formed headers built from random parts parse back to exactly their parts.
    #[test]
    fn header_parser_property() {
        let seed: u64 =
            std::env::var("STRIPE_PROPTEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
        let mut rng = StdRng::seed_from_u64(seed);
        const ALPHABET: &[&str] =
            &["t", "v1", "v0", "=", ",", " ", "0", "9", "a", "f", "g", "A", "-", "é", "\u{0}", "\n"];
        for _ in 0..20_000 {
            // Fragments of the real grammar glued at random, plus raw random bytes (lossy UTF-8).
            let text: String = if rng.random_bool(0.5) {
                (0..rng.random_range(0..40)).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())]).collect()
            } else {
                let bytes: Vec<u8> = (0..rng.random_range(0..200)).map(|_| rng.random()).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            };
            if let Ok(h) = parse_header(&text) {
                assert!(!h.v1.is_empty(), "seed {seed}: {text:?}");
                assert!(h.timestamp_text.bytes().all(|b| b.is_ascii_digit()), "seed {seed}: {text:?}");
                assert_eq!(h.timestamp.to_string().trim_start_matches('0'), h.timestamp_text.trim_start_matches('0'));
            }
        }
        for _ in 0..5_000 {
            let t: i64 = rng.random_range(0..=999_999_999_999);
            let sigs: Vec<[u8; 32]> = (0..rng.random_range(1..5)).map(|_| rng.random()).collect();
            let mut elements = vec![format!("t={t}")];
            elements.extend(sigs.iter().map(|s| format!("v1={}", hex::encode(s))));
            for _ in 0..rng.random_range(0..3) {
                elements.push(format!("v0={}", hex::encode(rng.random::<[u8; 32]>())));
            }
            // Shuffle, keeping the v1 order (the parser reports them in header order).
            let t_at = rng.random_range(0..elements.len());
            let t_element = elements.remove(0);
            elements.insert(t_at, t_element);
            let header = elements.join(",");
            let parsed = parse_header(&header).unwrap_or_else(|e| panic!("seed {seed}: {header}: {e}"));
            assert_eq!((parsed.timestamp, &parsed.v1), (t, &sigs), "seed {seed}: {header}");
        }
    }

    #[test]
    fn settings_need_whsec_secrets() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            EnvReader::from_fn(move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
        };
        let mut env = vars(&[("STRIPE_WEBHOOK_SECRET", "whsec_new, whsec_old")]);
        let s = VerifierSettings::from_env(&mut env);
        assert!(env.finish(()).is_ok());
        assert_eq!(s.secrets.iter().map(Secret::expose).collect::<Vec<_>>(), ["whsec_new", "whsec_old"]);
        assert_eq!(s.tolerance, DEFAULT_TOLERANCE);
        assert!(!format!("{:?}", Verifier::new(&s)).contains("whsec"));

        for bad in [
            &[("STRIPE_WEBHOOK_SECRET", "sk_live_123")][..],
            &[][..],
            &[("STRIPE_WEBHOOK_SECRET", "whsec_a"), ("STRIPE_WEBHOOK_TOLERANCE_SECS", "0")][..],
        ] {
            let mut env = vars(bad);
            VerifierSettings::from_env(&mut env);
            assert!(env.finish(()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn events_are_read_by_type() {
        let pi = br#"{"id":"evt_1","type":"payment_intent.succeeded","created":1,"livemode":false,
            "data":{"object":{"id":"pi_1","amount":2599,"amount_received":2599,"currency":"eur","metadata":{"orderId":"ord_1"}}}}"#;
        let event = Event::parse(pi).unwrap();
        let Handled::PaymentSucceeded(intent) = event.handled().unwrap() else { panic!("a payment") };
        assert_eq!((intent.order_id(), intent.received(), intent.currency.as_str()), (Some("ord_1"), 2599, "eur"));

        let sub = br#"{"id":"evt_2","type":"customer.subscription.deleted","data":{"object":{"id":"sub_1","customer":"cus_1"}}}"#;
        assert!(
            matches!(Event::parse(sub).unwrap().handled().unwrap(), Handled::SubscriptionDeleted(s) if s.id == "sub_1")
        );

        let other = br#"{"id":"evt_3","type":"customer.created","data":{"object":{"whatever":true}}}"#;
        assert_eq!(Event::parse(other).unwrap().handled().unwrap(), Handled::Ignored);

        let bad_object = br#"{"id":"evt_4","type":"payment_intent.succeeded","data":{"object":{"id":"pi"}}}"#;
        assert!(Event::parse(bad_object).unwrap().handled().is_err());
        for bad in [
            &b"not json"[..],
            br#"{"id":"evt/../x","type":"a","data":{"object":{}}}"#,
            br#"{"id":"","type":"a","data":{"object":{}}}"#,
            br#"{"type":"a"}"#,
        ] {
            assert!(Event::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
