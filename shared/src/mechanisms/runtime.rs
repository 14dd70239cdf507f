//! The tokio runtime each function's `main` runs on, chosen from what Lambda asks of the process.
//!
//! A classic execution environment hands the process one invocation at a time: a multi-threaded
//! runtime then only adds work (worker threads parked and woken, tasks moved between them) to
//! every invocation, measured at about half of an empty function's CPU. So the runtime is a
//! current-thread one unless `AWS_LAMBDA_MAX_CONCURRENCY` (Lambda Managed Instances) asks for
//! several invocations in flight at once, in which case it is multi-threaded. Blocking work never
//! runs on it either way (the Redis store and the SDKs are asynchronous, with timeouts), so a
//! slow dependency stalls only the invocation that waits for it.

use std::convert::Infallible;
use std::future::Future;

use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;

use crate::config::{EnvReader, FromEnv, exit_on_error};

/// What a function builds once per execution environment, before its first invocation: its
/// settings from the environment, then its state (clients, keys), shared by every invocation.
pub trait Function: Sized + Sync + 'static {
    /// The function's typed configuration.
    type Settings: FromEnv;

    /// Builds the state the invocations share.
    fn init(settings: &Self::Settings) -> impl Future<Output = Result<Self, lambda_runtime::Error>>;
}

/// Logs, secrets (read once from Secrets Manager: a secret that cannot be read fails init with
/// one line naming it and the permission), settings (the process exits naming every bad
/// variable), state: the start of every `main`. The state lives as long as the process, so it is leaked into a `'static` borrow that
/// every invocation (and, on Managed Instances, every concurrent one) shares.
async fn start<S: Function>() -> Result<&'static S, lambda_runtime::Error> {
    crate::telemetry::init();
    crate::metrics::init();
    // Like a configuration error: one line, then the process ends and Lambda retries the init.
    let secrets = match crate::config::secrets::load_from_env().await {
        Ok(secrets) => secrets,
        Err(e) => {
            tracing::error!("{e}");
            std::process::exit(2);
        }
    };
    let settings = exit_on_error(S::Settings::from_env(EnvReader::from_env().with_secrets(secrets)));
    Ok(Box::leak(Box::new(S::init(&settings).await?)))
}

/// The whole `main` of an HTTP function (API Gateway or a Function URL).
///
/// Served by lambda_runtime's concurrent runner: with `AWS_LAMBDA_MAX_CONCURRENCY` above 1 it
/// runs that many `/next` loops on the multi-threaded runtime, each invocation a task of its own
/// with its own tracing span (request id), deadline and X-Ray trace header (its own `Context`;
/// `crate::xray`); without it, one loop, one invocation at a time.
pub fn run_http<S, F, Fut>(handle: F) -> Result<(), lambda_runtime::Error>
where
    S: Function,
    F: Fn(&'static S, Request) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    block_on(async { serve_http(start::<S>().await?, handle).await })
}

/// The whole `main` of an event function (SQS, ...): `handle` answers every event itself.
/// Concurrent invocations as in [`run_http`].
pub fn run_events<S, E, R, F, Fut>(handle: F) -> Result<(), lambda_runtime::Error>
where
    S: Function,
    E: DeserializeOwned + Send + 'static,
    R: serde::Serialize + Send + 'static,
    F: Fn(&'static S, LambdaEvent<E>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    block_on(async {
        let state = start::<S>().await?;
        lambda_runtime::run_concurrent(lambda_runtime::service_fn(move |event: LambdaEvent<E>| {
            let trace = event.context.xray_trace_id.clone();
            let answer = crate::xray::scope(trace, handle(state, event));
            async move {
                let answer = answer.await;
                crate::metrics::flush();
                Ok::<_, Infallible>(answer)
            }
        }))
        .await
    })
}

/// How many invocations Lambda may run at once in this process (1 unless set above 1).
pub fn max_concurrency() -> usize {
    std::env::var("AWS_LAMBDA_MAX_CONCURRENCY").ok().and_then(|v| v.trim().parse().ok()).filter(|n| *n > 1).unwrap_or(1)
}

/// Runs `main` to completion on the runtime this process needs; a runtime that cannot start
/// (no threads, no timer) is returned as `main`'s own error type.
pub fn block_on<F, T, E>(main: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: From<std::io::Error>,
{
    let mut builder = if max_concurrency() > 1 {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build()?.block_on(main)
}

/// Serves API Gateway / Function URL requests with `handle` over `state` (built once, in `main`),
/// concurrently when `AWS_LAMBDA_MAX_CONCURRENCY` asks for it. A handler answers every request
/// itself, refusals included (problem+json), so the service never fails an invocation.
pub async fn serve_http<S, F, Fut>(state: &'static S, handle: F) -> Result<(), lambda_http::Error>
where
    S: Sync,
    F: Fn(&'static S, Request) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    lambda_http::run_concurrent(lambda_http::service_fn(move |req: Request| {
        let trace = req.lambda_context_ref().and_then(|c| c.xray_trace_id.clone());
        let answer = crate::xray::scope(trace, handle(state, req));
        async move {
            let answer = answer.await;
            // Once per invocation, after the answer is built (EMF lines: shared::metrics).
            crate::metrics::flush();
            Ok::<_, Infallible>(answer)
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_runtime_runs_spawned_tasks() {
        let got = super::block_on(async { Ok::<_, std::io::Error>(tokio::spawn(async { 7 }).await.expect("task")) });
        assert_eq!(got.expect("ran"), 7);
    }
}
