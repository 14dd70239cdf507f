//! X-Ray: the invocation's trace header (`Root=1-…;Parent=…;Sampled=…`), carried to every AWS
//! call, and subsegments for the calls a function makes (AWS SDK operations, Redis round trips).
//!
//! Lambda hands each invocation its trace header (`Lambda-Runtime-Trace-Id`, in
//! `Context::xray_trace_id`). The AWS SDK sends it on as `X-Amzn-Trace-Id` when it finds it in the
//! `_X_AMZN_TRACE_ID` environment variable, but setting that variable per invocation leaks on
//! glibc (every `setenv` of a new value allocates a string that is never freed) and means nothing
//! when several invocations share the process (Lambda Managed Instances). So the runtime keeps
//! the header in a task-local for the length of the invocation ([`scope`]), and the AWS clients
//! add it to each request ([`XrayInterceptor`], installed by `clients::aws`).
//!
//! Subsegments: when the invocation's trace is sampled (`Sampled=1`: Lambda's decision, never
//! made here) and Lambda runs the X-Ray daemon (`AWS_XRAY_DAEMON_ADDRESS`, set with active
//! tracing), each timed call ([`Started::now`] … [`Started::finish`]) is sent to the daemon as one
//! subsegment document in one UDP datagram ([`daemon`]), with the header's `Root` as trace id and
//! its `Parent` (the function's segment) as parent. Otherwise nothing is timed or sent: without a
//! daemon address the cost of a call is one check of a value read once per process.
//! - [`header`]: parsing the trace header;
//! - [`subsegment`]: the document and the timer;
//! - [`daemon`]: the UDP sender;
//! - [`sdk`]: the AWS SDK interceptor (`clients::redis` times its own round trips).

use std::future::Future;

pub mod daemon;
pub mod header;
pub mod sdk;
pub mod subsegment;

pub use header::{Parent, TraceHeader};
pub use sdk::{TRACE_HEADER, XrayInterceptor};
pub use subsegment::{AwsCall, Outcome, Started, Subsegment};

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

/// `f` of the current invocation's trace header, without copying it; `None` when there is none.
pub(crate) fn with_current<R>(f: impl FnOnce(&str) -> R) -> Option<R> {
    TRACE.try_with(|trace| trace.as_deref().map(f)).ok().flatten()
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
        assert_eq!(scope(Some("Root=1-c".to_owned()), async { with_current(str::len) }).await, Some(8));
        assert_eq!(scope(None, async { with_current(str::len) }).await, None);
    }
}
