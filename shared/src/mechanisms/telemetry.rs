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

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

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
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
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
