//! The invocation's X-Ray trace header (`Root=1-…;Parent=…;Sampled=…`), carried to every AWS call.
//!
//! Lambda hands each invocation its trace header (`Lambda-Runtime-Trace-Id`, in
//! `Context::xray_trace_id`). The AWS SDK sends it on as `X-Amzn-Trace-Id` when it finds it in the
//! `_X_AMZN_TRACE_ID` environment variable, but setting that variable per invocation leaks on
//! glibc (every `setenv` of a new value allocates a string that is never freed) and means nothing
//! when several invocations share the process (Lambda Managed Instances). So the runtime keeps
//! the header in a task-local for the length of the invocation ([`scope`]), and the AWS clients
//! add it to each request ([`TraceHeaderInterceptor`], installed by `clients::aws`).

use std::future::Future;

// Every SDK re-exports the same smithy interceptor types; one implementation serves all clients.
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use http::HeaderValue;

/// The header AWS services read the trace from.
pub const TRACE_HEADER: &str = "x-amzn-trace-id";

tokio::task_local! {
    static TRACE: Option<String>;
}

/// Runs `invocation` with `trace` as the current trace header (`None`: the invocation has none).
pub async fn scope<F: Future>(trace: Option<String>, invocation: F) -> F::Output {
    TRACE.scope(trace, invocation).await
}

/// The current invocation's trace header, if it has one (none outside an invocation).
pub fn current() -> Option<String> {
    TRACE.try_with(Clone::clone).ok().flatten()
}

/// Adds the current invocation's trace header to every AWS request that has none, as the SDK's
/// recursion-detection interceptor does from `_X_AMZN_TRACE_ID` (which is no longer set).
#[derive(Debug, Default)]
pub struct TraceHeaderInterceptor;

impl Intercept for TraceHeaderInterceptor {
    fn name(&self) -> &'static str {
        "TraceHeaderInterceptor"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let headers = context.request_mut().headers_mut();
        if headers.contains_key(TRACE_HEADER) {
            return Ok(());
        }
        // What Lambda sent is a valid header value; anything else is left out (`insert` would
        // panic on it), never an error of the AWS call.
        if let Some(trace) = current().filter(|t| HeaderValue::from_str(t).is_ok()) {
            headers.insert(TRACE_HEADER, trace);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_trace_is_the_current_invocations_and_only_inside_it() {
        assert_eq!(current(), None);
        let inside = scope(Some("Root=1-a".to_owned()), async { current() }).await;
        assert_eq!(inside.as_deref(), Some("Root=1-a"));
        let (a, b) = tokio::join!(
            scope(Some("Root=1-a".to_owned()), async {
                tokio::task::yield_now().await;
                current()
            }),
            scope(Some("Root=1-b".to_owned()), async { current() }),
        );
        assert_eq!((a.as_deref(), b.as_deref()), (Some("Root=1-a"), Some("Root=1-b")));
        assert_eq!(current(), None);
    }
}
