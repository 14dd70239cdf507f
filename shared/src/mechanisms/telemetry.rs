//! JSON logs for CloudWatch, one object per line.
//!
//! lambda_runtime opens a span per invocation that carries `requestId` (and the X-Ray trace id);
//! printing the current span on every line is what puts the request id on each log line. With
//! several invocations in flight (Lambda Managed Instances) each runs in its own span, so nothing
//! per request is global and lines of concurrent invocations never borrow each other's id.
//! The level comes from `AWS_LAMBDA_LOG_LEVEL` (set by Lambda's advanced logging controls), else
//! `RUST_LOG`, else `info`.
//!
//! `RUST_LOG` takes levels and per-target levels (`warn,shared=debug`): tracing-subscriber's
//! `Targets`, not its `EnvFilter`, whose span and field directives (and the regex engine behind
//! them) cost every bootstrap hundreds of kilobytes that Lambda would load on each cold start.
//! A directive `Targets` cannot read falls back to `info`, as a malformed one always did.
//!
//! Each line is one flat JSON object ([`LambdaJson`]) with what CloudWatch Logs Insights queries
//! filter and group on at the top level: `timestamp`, `level`, `message`, `requestId`, `traceId`
//! (the X-Ray trace header of the invocation), `function` (`AWS_LAMBDA_FUNCTION_NAME`),
//! `coldStart` (true for the init and the first invocation of the process), `target`, then the
//! event's own fields. docs/observability.md has the saved queries that use them.

use std::fmt;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The event format of every function: one flat JSON object per line (see the module docs).
pub struct LambdaJson {
    function: String,
    /// The request id of the process's first invocation: its lines are the cold start's.
    first_request: OnceLock<String>,
}

impl LambdaJson {
    /// Lines of `function` (the Lambda function name).
    pub fn new(function: impl Into<String>) -> Self {
        Self { function: function.into(), first_request: OnceLock::new() }
    }

    /// The line of one event: `event` fields (message first), the invocation's `span` fields
    /// (`requestId`, `xrayTraceId` of lambda_runtime's span), in a flat object.
    fn line(
        &self,
        timestamp: String,
        level: &str,
        target: &str,
        span: &Map<String, Value>,
        event: Map<String, Value>,
    ) -> Map<String, Value> {
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(timestamp));
        line.insert("level".into(), Value::String(level.to_owned()));
        let mut event = event;
        line.insert("message".into(), event.remove("message").unwrap_or(Value::String(String::new())));
        let request = span.get("requestId").and_then(Value::as_str);
        if let Some(request) = request {
            line.insert("requestId".into(), Value::String(request.to_owned()));
        }
        if let Some(trace) = span.get("xrayTraceId") {
            line.insert("traceId".into(), trace.clone());
        }
        line.insert("function".into(), Value::String(self.function.clone()));
        // Lines before any invocation are the init's; the first request id seen is the cold one.
        let cold = request.is_none_or(|r| self.first_request.get_or_init(|| r.to_owned()) == r);
        line.insert("coldStart".into(), Value::Bool(cold));
        line.insert("target".into(), Value::String(target.to_owned()));
        for (k, v) in span {
            if k != "requestId" && k != "xrayTraceId" {
                line.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        for (k, v) in event {
            line.entry(k).or_insert(v);
        }
        line
    }
}

/// Collects an event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::Bool(value));
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for LambdaJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        // Span fields, innermost span first (an inner span's field wins). JsonFields stores each
        // span's fields as one JSON object.
        let mut span = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for s in scope {
                let extensions = s.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else { continue };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    for (k, v) in fields {
                        span.entry(k).or_insert(v);
                    }
                }
            }
        }
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        let meta = event.metadata();
        let line = self.line(crate::clock::timestamp_now(), meta.level().as_str(), meta.target(), &span, fields);
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// The filter directive to use, from the two variables Lambda users set.
pub fn filter_directive(lambda_level: Option<&str>, rust_log: Option<&str>) -> String {
    match (lambda_level.map(str::trim).filter(|s| !s.is_empty()), rust_log) {
        // Lambda's levels are upper case (TRACE..FATAL); FATAL has no tracing equivalent.
        (Some(level), _) => match level.to_ascii_lowercase().as_str() {
            "fatal" => "error".to_owned(),
            other => other.to_owned(),
        },
        (None, Some(directive)) if !directive.trim().is_empty() => directive.to_owned(),
        _ => "info".to_owned(),
    }
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init() {
    let directive = filter_directive(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    let filter = parse_filter(&directive);
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".to_owned());
    let json = tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(LambdaJson::new(function))
        .with_ansi(false);
    // try_init: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = tracing_subscriber::registry().with(json.with_filter(filter)).try_init();
}

/// The filter of `directive`, or `info` when it is not one `Targets` can read.
pub fn parse_filter(directive: &str) -> Targets {
    directive.parse().unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
}

#[cfg(test)]
mod tests {
    use super::filter_directive;

    /// The lines of `f`'s events through the real subscriber stack (JsonFields + LambdaJson),
    /// inside spans shaped like lambda_runtime's invocation span.
    fn lines_of(f: impl FnOnce()) -> Vec<serde_json::Value> {
        use tracing_subscriber::layer::SubscriberExt;
        #[derive(Clone, Default)]
        struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(super::JsonFields::new())
            .event_format(super::LambdaJson::new("posts-read"))
            .with_ansi(false)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).expect("each line is one JSON object")).collect()
    }

    #[test]
    fn lines_carry_what_logs_insights_queries_at_the_top_level() {
        let lines = lines_of(|| {
            tracing::info!("init done");
            for request in ["req-1", "req-2"] {
                let span =
                    tracing::info_span!("Lambda runtime invoke", requestId = request, xrayTraceId = "Root=1-abc");
                let _enter = span.enter();
                tracing::warn!(route = "GET /posts/{id}", status = 503u64, "cache unavailable");
            }
        });
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["message"], "init done");
        assert_eq!(lines[0]["coldStart"], true, "init lines belong to the cold start");
        assert!(lines[0].get("requestId").is_none());
        let first = &lines[1];
        assert_eq!(first["level"], "WARN");
        assert_eq!(first["message"], "cache unavailable");
        assert_eq!(first["requestId"], "req-1");
        assert_eq!(first["traceId"], "Root=1-abc");
        assert_eq!(first["function"], "posts-read");
        assert_eq!(first["coldStart"], true);
        assert_eq!(first["route"], "GET /posts/{id}");
        assert_eq!(first["status"], 503);
        assert!(first["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(first.get("span").is_none() && first.get("fields").is_none(), "flat: {first}");
        assert_eq!(lines[2]["requestId"], "req-2");
        assert_eq!(lines[2]["coldStart"], false, "the second invocation is warm");
    }

    #[test]
    fn lambda_level_wins_over_rust_log() {
        assert_eq!(filter_directive(Some("DEBUG"), Some("warn")), "debug");
        assert_eq!(filter_directive(Some("FATAL"), None), "error");
        assert_eq!(filter_directive(None, Some("shared=trace")), "shared=trace");
        assert_eq!(filter_directive(None, None), "info");
        assert_eq!(filter_directive(Some(" "), Some("")), "info");
    }

    #[test]
    fn levels_and_per_target_levels_are_read_and_anything_else_is_info() {
        use tracing::Level;
        let f = super::parse_filter("warn,shared=debug");
        assert!(f.would_enable("shared::cache", &Level::DEBUG));
        assert!(!f.would_enable("aws_config", &Level::INFO));
        assert!(f.would_enable("aws_config", &Level::WARN));
        let fallback = super::parse_filter("[span{field=1}]=debug");
        assert!(fallback.would_enable("anything", &Level::INFO));
        assert!(!fallback.would_enable("anything", &Level::DEBUG));
    }
}
