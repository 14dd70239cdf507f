//! JSON logs for CloudWatch, one object per line.
//!
//! lambda_runtime opens a span per invocation that carries `requestId` (and the X-Ray trace id);
//! printing the current span on every line is what puts the request id on each log line. With
//! several invocations in flight (Lambda Managed Instances) each runs in its own span, so nothing
//! per request is global and lines of concurrent invocations never borrow each other's id.
//! The level comes from `AWS_LAMBDA_LOG_LEVEL` (set by Lambda's advanced logging controls), else
//! `RUST_LOG`, else `info`.

use tracing_subscriber::EnvFilter;

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
    let filter = EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info"));
    // try_init: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_ansi(false)
        .try_init();
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
}
