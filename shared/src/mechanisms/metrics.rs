//! Counters as CloudWatch Embedded Metric Format (EMF) lines on stdout: Lambda ships stdout to
//! CloudWatch Logs, which extracts the metrics from those lines. No agent, no `PutMetricData`
//! call, nothing on the invocation's critical path but an in-memory add.
//!
//! Features and mechanisms [`count`] (or [`count_by`], with extra dimensions such as a failure
//! kind, an event type and its outcome); the runtime [`flush`]es once per invocation, after the answer is
//! built: one line per dimension set that was counted, nothing at all when nothing was. So a
//! batch of 10 emails is a couple of lines, not one per record, and a cache hit costs one lock of
//! an uncontended mutex and one map update.
//!
//! Every line carries the same namespace (`METRICS_NAMESPACE`, default [`DEFAULT_NAMESPACE`];
//! `off` turns metrics off) and a `function` dimension (the Lambda function name), so the same
//! metric of two functions stays apart. On Lambda Managed Instances several invocations share the
//! process and one flush may carry counts of another invocation still in flight: the counters
//! are sums, so every count is still published exactly once.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock, PoisonError};

/// A counter's name, as CloudWatch shows it. Every counter is declared once, as a
/// `const NAME: Metric = "Name";` next to the code that counts it ([`names`] for the mechanisms'),
/// and counted through that constant: `tests/template` reads these declarations from the source to
/// check that the dashboard and the alarms of `template.yaml` name only metrics the code emits.
pub type Metric = &'static str;

/// The counters of the mechanisms (features and functions declare theirs where they count them).
pub mod names {
    use super::Metric;

    /// A cache read answered from Redis (`cache`).
    pub const CACHE_HITS: Metric = "CacheHits";
    /// A cache read that went to the source of truth (`cache`).
    pub const CACHE_MISSES: Metric = "CacheMisses";
    /// A read that waited for another caller's fill (`cache`).
    pub const CACHE_WAITS: Metric = "CacheWaits";
    /// A fill that landed (`cache`).
    pub const CACHE_FILLS: Metric = "CacheFills";
    /// A fill refused because a newer version was there (`cache`).
    pub const CACHE_STALE_REFUSALS: Metric = "CacheStaleRefusals";
    /// A Redis call that failed as an outage (unreachable, timed out, backing off, not ready):
    /// the caller failed open (cache reads) or closed (sessions). Counted by the Redis store
    /// itself, so every user of the cache reports it; the CacheUnavailable alarms read it.
    pub const CACHE_UNAVAILABLE: Metric = "CacheUnavailable";
    /// A problem+json answer, by problem kind (`http`).
    pub const PROBLEMS_ANSWERED: Metric = "ProblemsAnswered";
    /// An idempotency key claimed for the first time (`idempotency`).
    pub const IDEMPOTENCY_CLAIMS: Metric = "IdempotencyClaims";
    /// A delivery whose key was already completed (`idempotency`).
    pub const IDEMPOTENCY_REPLAYS: Metric = "IdempotencyReplays";
    /// A delivery whose key another delivery holds (`idempotency`).
    pub const IDEMPOTENCY_IN_PROGRESS: Metric = "IdempotencyInProgress";
    /// A replay whose payload differs from the first delivery's (`idempotency`).
    pub const IDEMPOTENCY_VALIDATION_FAILURES: Metric = "IdempotencyValidationFailures";
    /// A wait for another delivery holding the key (`idempotency`).
    pub const IDEMPOTENCY_WAITS: Metric = "IdempotencyWaits";
    /// An avatar answered as a presigned GET (no edge in front): a download anyone holding the
    /// link may repeat until it expires (`uploads`).
    pub const AVATAR_URLS_PRESIGNED: Metric = "AvatarUrlsPresigned";
}

/// The namespace when `METRICS_NAMESPACE` is unset.
pub const DEFAULT_NAMESPACE: &str = "ServerlessBundle";
/// The dimension every line carries: which function counted.
pub const FUNCTION_DIMENSION: &str = "function";
/// EMF allows at most 100 metrics per document; a larger set is split over several lines.
const MAX_METRICS_PER_LINE: usize = 100;

/// Extra dimensions of a counter (beside the function): (name, value) pairs, in call order.
type Dimensions = Vec<(&'static str, String)>;

/// One counter: its dimensions and its name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    dimensions: Dimensions,
    name: &'static str,
}

/// The process's counters and where they go.
#[derive(Debug)]
pub struct Registry {
    namespace: String,
    function: String,
    counts: Mutex<BTreeMap<Key, u64>>,
}

impl Registry {
    /// Counters published under `namespace`, with `function` as the function dimension.
    pub fn new(namespace: impl Into<String>, function: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), function: function.into(), counts: Mutex::new(BTreeMap::new()) }
    }

    fn add(&self, key: Key, n: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry(key).or_insert(0) += n;
    }

    /// Adds `n` to `name`.
    pub fn count(&self, name: &'static str, n: u64) {
        // An empty Vec does not allocate: the hot path (a cache hit) stays one map update.
        self.add(Key { dimensions: Vec::new(), name }, n);
    }

    /// Adds `n` to `name` for the given dimension values (beside the function dimension).
    pub fn count_by(&self, name: &'static str, dimensions: &[(&'static str, &str)], n: u64) {
        let dimensions = dimensions.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.add(Key { dimensions, name }, n);
    }

    /// Takes every count so far as EMF lines (one JSON document per dimension set, each ending
    /// in a newline), at `timestamp_ms`. Written straight into one string, not through a JSON
    /// tree: this runs after every invocation, cache hits included.
    pub fn drain(&self, timestamp_ms: i64) -> String {
        let counts = std::mem::take(&mut *self.counts.lock().unwrap_or_else(PoisonError::into_inner));
        let mut by_dimensions: BTreeMap<Dimensions, Vec<(&'static str, u64)>> = BTreeMap::new();
        for (key, n) in counts {
            by_dimensions.entry(key.dimensions).or_default().push((key.name, n));
        }
        let mut out = String::new();
        for (dimensions, metrics) in by_dimensions {
            for chunk in metrics.chunks(MAX_METRICS_PER_LINE) {
                self.document(&mut out, timestamp_ms, &dimensions, chunk);
            }
        }
        out
    }

    fn document(&self, out: &mut String, timestamp_ms: i64, extra: &Dimensions, metrics: &[(&str, u64)]) {
        use std::fmt::Write as _;
        // Names are our own &'static str identifiers; values (the function name, an event type)
        // are escaped as JSON strings.
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
        let _ = write!(
            out,
            "{{\"_aws\":{{\"Timestamp\":{timestamp_ms},\"CloudWatchMetrics\":[{{\"Namespace\":{},",
            quoted(&self.namespace)
        );
        let _ = write!(out, "\"Dimensions\":[[{}", quoted(FUNCTION_DIMENSION));
        for (name, _) in extra {
            let _ = write!(out, ",{}", quoted(name));
        }
        out.push_str("]],\"Metrics\":[");
        for (i, (name, _)) in metrics.iter().enumerate() {
            let _ = write!(out, "{}{{\"Name\":{},\"Unit\":\"Count\"}}", if i > 0 { "," } else { "" }, quoted(name));
        }
        let _ = write!(out, "]}}]}},{}:{}", quoted(FUNCTION_DIMENSION), quoted(&self.function));
        for (name, value) in extra {
            let _ = write!(out, ",{}:{}", quoted(name), quoted(value));
        }
        for (name, n) in metrics {
            let _ = write!(out, ",{}:{n}", quoted(name));
        }
        out.push_str("}\n");
    }
}

static REGISTRY: OnceLock<Option<Registry>> = OnceLock::new();

/// Reads `METRICS_NAMESPACE` and `AWS_LAMBDA_FUNCTION_NAME` once; later calls keep the first
/// answer. `METRICS_NAMESPACE=off` (or `none`) publishes nothing.
pub fn init() {
    REGISTRY.get_or_init(|| {
        let namespace = std::env::var("METRICS_NAMESPACE").ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let namespace = namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        if ["off", "none"].contains(&namespace.to_ascii_lowercase().as_str()) {
            return None;
        }
        let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".to_owned());
        Some(Registry::new(namespace, function))
    });
}

fn registry() -> Option<&'static Registry> {
    REGISTRY.get().and_then(Option::as_ref)
}

/// Adds `n` to `name` (nothing before [`init`], as in unit tests of the callers).
pub fn count(name: &'static str, n: u64) {
    if let Some(r) = registry() {
        r.count(name, n);
    }
}

/// Adds `n` to `name` under the given dimension values.
pub fn count_by(name: &'static str, dimensions: &[(&'static str, &str)], n: u64) {
    if let Some(r) = registry() {
        r.count_by(name, dimensions, n);
    }
}

/// Writes every count so far to stdout, one EMF line per dimension set, in one write. Called by
/// the runtime once per invocation.
pub fn flush() {
    let Some(r) = registry() else { return };
    let out = r.drain(crate::clock::now_ms());
    if !out.is_empty() {
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parsed(r: &Registry, ts: i64) -> Vec<Value> {
        r.drain(ts).lines().map(|l| serde_json::from_str(l).expect("each line is one JSON document")).collect()
    }

    #[test]
    fn counts_are_grouped_by_dimension_set_and_drained_once() {
        let r = Registry::new("Ns", "fn-a");
        r.count("CacheHits", 1);
        r.count("CacheHits", 2);
        r.count_by("EmailsFailed", &[("kind", "transient")], 1);
        let lines = parsed(&r, 1_700_000_000_000);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert_eq!(lines[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Ns");
        assert_eq!(lines[0]["function"], "fn-a");
        assert_eq!(lines[0]["CacheHits"], 3);
        assert_eq!(lines[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["function"]]));
        assert_eq!(lines[1]["kind"], "transient");
        assert_eq!(lines[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["function", "kind"]]));
        assert!(r.drain(1).is_empty());
        // Values are escaped.
        r.count_by("WebhookEvents", &[("event_type", "a\"b\\c")], 1);
        assert_eq!(parsed(&r, 1)[0]["event_type"], "a\"b\\c");
    }

    #[test]
    fn more_than_a_hundred_metrics_of_one_dimension_set_are_split_over_lines() {
        let r = Registry::new("Ns", "fn-a");
        let names: Vec<&'static str> = (0..150).map(|i| &*Box::leak(format!("M{i:03}").into_boxed_str())).collect();
        for name in &names {
            r.count(name, 1);
        }
        let lines = parsed(&r, 1);
        assert_eq!(lines.len(), 2);
        let defined: usize =
            lines.iter().map(|l| l["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len()).sum();
        assert_eq!(defined, 150);
        assert!(lines.iter().all(|l| l["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len() <= 100));
    }
}
