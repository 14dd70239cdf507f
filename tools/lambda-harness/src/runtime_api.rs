//! The Lambda Runtime API (version 2018-06-01), served on loopback with hyper.
//!
//! A function binary built on `lambda_runtime` (or any custom runtime) long-polls
//! `GET /2018-06-01/runtime/invocation/next` for work and answers on
//! `POST /2018-06-01/runtime/invocation/{id}/response` or `.../{id}/error`; a runtime that cannot start
//! reports `POST /2018-06-01/runtime/init/error`. [`RuntimeApi`] is the Lambda service side of that
//! conversation: [`RuntimeApi::invoke`] queues an event, the next `/next` poll receives it with the
//! same headers Lambda sends, and the answer comes back as an [`Invocation`].
//!
//! One `RuntimeApi` stands for one execution environment: it remembers the instant of the first
//! `/next` poll, which is when the function finished its init phase.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use crate::HarnessError;

/// Largest response payload Lambda accepts from a synchronous invocation (6 MB).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Account id used in the invoked function ARN: Lambda's documentation placeholder.
const ACCOUNT_ID: &str = "000000000000";

const PREFIX: &str = "/2018-06-01/runtime/";
const ERROR_TYPE_HEADER: &str = "lambda-runtime-function-error-type";

/// The answer to one invocation, as the caller of Lambda's `Invoke` would see it.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The request id the function saw in `Lambda-Runtime-Aws-Request-Id`.
    pub request_id: String,
    /// The X-Ray trace header the function was handed (`Lambda-Runtime-Trace-Id`), new for every
    /// invocation as in Lambda: `Root=1-…;Parent=<16 hex>;Sampled=0|1;Lineage=…` (`Sampled=1`
    /// after [`RuntimeApi::set_sampled`]).
    pub trace_id: String,
    /// The payload exactly as the function posted it (a JSON document for every non-streaming runtime).
    pub body: Bytes,
    /// True when the function reported an error (`/error`, a panic caught by the runtime, an error
    /// trailer on a streamed response, or a response over the 6 MB limit). `body` is then the error
    /// document, usually `{"errorType": ..., "errorMessage": ...}`.
    pub is_error: bool,
    /// The `Lambda-Runtime-Function-Error-Type` the runtime sent with an error, if any.
    pub error_type: Option<String>,
    /// From queueing the event to receiving the complete answer. On the first invocation of a fresh
    /// process this includes the part of the init phase that had not finished yet.
    pub latency: Duration,
}

impl Invocation {
    /// The payload parsed as JSON.
    pub fn json(&self) -> Result<Value, HarnessError> {
        serde_json::from_slice(&self.body).map_err(HarnessError::NotJson)
    }

    /// For a function error, `"<errorType>: <errorMessage>"` from the error document (or the raw
    /// payload when it is not one); `None` for a successful answer.
    pub fn error_summary(&self) -> Option<String> {
        if !self.is_error {
            return None;
        }
        let document = self.json().ok();
        let field = |name: &str| document.as_ref().and_then(|d| d.get(name)).and_then(Value::as_str).map(str::to_owned);
        Some(match (field("errorType"), field("errorMessage")) {
            (Some(error_type), Some(message)) => format!("{error_type}: {message}"),
            (None, Some(message)) => message,
            _ => String::from_utf8_lossy(&self.body).into_owned(),
        })
    }

    /// The `statusCode` of an API Gateway / Function URL proxy response, when the payload is one.
    /// A function error has no status code.
    pub fn status_code(&self) -> Option<u16> {
        if self.is_error {
            return None;
        }
        let value = self.json().ok()?;
        match value.get("statusCode")? {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// What the runtime posted to `/runtime/init/error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitFailure {
    pub error_type: String,
    pub message: String,
}

/// The emulated Runtime API of one execution environment. Cheap to clone; the server stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct RuntimeApi {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts every open connection.
        self.server.abort();
    }
}

struct QueuedEvent {
    request_id: String,
    body: Bytes,
    deadline_ms: u128,
    trace_id: String,
}

struct Answer {
    body: Bytes,
    is_error: bool,
    error_type: Option<String>,
    received_at: Instant,
}

struct State {
    events_tx: mpsc::UnboundedSender<QueuedEvent>,
    /// Behind an async mutex so that concurrent pollers take turns, each waiting for its own event.
    events_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<QueuedEvent>>,
    /// Invocations waiting for an answer, by request id. An entry disappears when its caller gives up.
    pending: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    first_poll: watch::Sender<Option<Instant>>,
    init_error: watch::Sender<Option<InitFailure>>,
    function_arn: Mutex<String>,
    /// Invocations handed to the function by `/next` and not answered yet, and the most there
    /// ever were at once: how many invocations one process really had in flight (Lambda
    /// Managed Instances run several at a time in one execution environment).
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Whether the trace headers handed out say `Sampled=1` (X-Ray sampled the invocation).
    sampled: AtomicBool,
}

impl State {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Answer>>> {
        // A poisoned map is still a valid map: nothing panics while holding it half-updated.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn function_arn(&self) -> String {
        self.function_arn.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl RuntimeApi {
    /// Binds `127.0.0.1:0` and starts serving the Runtime API. Must be called inside a Tokio runtime.
    pub async fn start() -> Result<RuntimeApi, HarnessError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.map_err(HarnessError::Bind)?;
        let addr = listener.local_addr().map_err(HarnessError::Bind)?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            events_tx,
            events_rx: tokio::sync::Mutex::new(events_rx),
            pending: Mutex::new(HashMap::new()),
            first_poll: watch::Sender::new(None),
            init_error: watch::Sender::new(None),
            function_arn: Mutex::new(function_arn("function", "us-east-1")),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            sampled: AtomicBool::new(false),
        });
        let server = tokio::spawn(serve(listener, Arc::clone(&state)));
        Ok(RuntimeApi { inner: Arc::new(Inner { addr, state, server }) })
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The value Lambda puts in `AWS_LAMBDA_RUNTIME_API`: `127.0.0.1:PORT`.
    pub fn host_port(&self) -> String {
        self.inner.addr.to_string()
    }

    /// Sets the ARN sent in `Lambda-Runtime-Invoked-Function-Arn` (by default
    /// `arn:aws:lambda:us-east-1:000000000000:function:function`). [`crate::Function::spawn`] sets
    /// it from the function's name and region.
    pub fn set_function(&self, name: &str, region: &str) {
        let arn = function_arn(name, region);
        *self.inner.state.function_arn.lock().unwrap_or_else(PoisonError::into_inner) = arn;
    }

    /// Whether the invocations queued from now on are sampled by X-Ray: their trace header says
    /// `Sampled=1` instead of the default `Sampled=0`, as Lambda's does for the invocations its
    /// sampling rule picks. A function under active tracing records subsegments only for those.
    pub fn set_sampled(&self, sampled: bool) {
        self.inner.state.sampled.store(sampled, Ordering::SeqCst);
    }

    /// The most invocations the function held at once (handed out by `/next`, not yet answered).
    pub fn max_in_flight(&self) -> usize {
        self.inner.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// The instant of the first `GET /next`: when the function finished initialising.
    pub fn first_poll(&self) -> Option<Instant> {
        *self.inner.state.first_poll.borrow()
    }

    /// Waits for the first `GET /next` and returns its instant.
    pub async fn wait_first_poll(&self) -> Instant {
        wait_some(&self.inner.state.first_poll).await
    }

    /// What the runtime reported on `/runtime/init/error`, if it did.
    pub fn init_error(&self) -> Option<InitFailure> {
        self.inner.state.init_error.borrow().clone()
    }

    /// Waits until the runtime reports an init error (possibly forever).
    pub async fn wait_init_error(&self) -> InitFailure {
        wait_some(&self.inner.state.init_error).await
    }

    /// Queues `event` for the next `/next` poll and waits up to `timeout` for the answer.
    ///
    /// This does not watch any process: use [`crate::Function::invoke`] to fail fast when the
    /// function process dies.
    pub async fn invoke(&self, event: &Value, timeout: Duration) -> Result<Invocation, HarnessError> {
        self.invoke_until(event, timeout, std::future::pending()).await
    }

    /// Like [`RuntimeApi::invoke`], but gives up with the error `abort` resolves to, if it resolves
    /// before the answer arrives.
    pub(crate) async fn invoke_until(
        &self,
        event: &Value,
        timeout: Duration,
        abort: impl Future<Output = HarnessError>,
    ) -> Result<Invocation, HarnessError> {
        let state = &self.inner.state;
        let body = Bytes::from(serde_json::to_vec(event).map_err(HarnessError::Event)?);
        if let Some(failure) = self.init_error() {
            return Err(init_error(failure));
        }

        let request_id = Uuid::new_v4().to_string();
        let (answer_tx, answer_rx) = oneshot::channel();
        state.pending().insert(request_id.clone(), answer_tx);
        // Whatever happens below, an abandoned invocation must not stay pending: `/next` skips
        // events that are no longer pending, and a late answer for it is refused.
        let _pending = PendingGuard { state, request_id: request_id.clone() };

        let started = Instant::now();
        let trace_id = trace_id(state.sampled.load(Ordering::SeqCst));
        let queued = QueuedEvent {
            request_id: request_id.clone(),
            body,
            deadline_ms: epoch_ms(SystemTime::now() + timeout),
            trace_id: trace_id.clone(),
        };
        state.events_tx.send(queued).map_err(|_| HarnessError::ServerStopped)?;

        tokio::select! {
            biased;
            answer = answer_rx => {
                let answer = answer.map_err(|_| HarnessError::ServerStopped)?;
                Ok(Invocation {
                    request_id,
                    trace_id,
                    body: answer.body,
                    is_error: answer.is_error,
                    error_type: answer.error_type,
                    latency: answer.received_at.saturating_duration_since(started),
                })
            }
            failure = self.wait_init_error() => Err(init_error(failure)),
            error = abort => Err(error),
            () = tokio::time::sleep(timeout) => Err(HarnessError::Timeout(timeout)),
        }
    }
}

/// Waits until the watched value is set. The sender lives as long as the `RuntimeApi` that awaits
/// this, so the channel cannot close underneath it.
async fn wait_some<T: Clone>(sender: &watch::Sender<Option<T>>) -> T {
    let mut rx = sender.subscribe();
    loop {
        if let Some(value) = rx.borrow_and_update().clone() {
            return value;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn init_error(failure: InitFailure) -> HarnessError {
    HarnessError::InitError { error_type: failure.error_type, message: failure.message }
}

struct PendingGuard<'a> {
    state: &'a State,
    request_id: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.state.pending().remove(&self.request_id);
    }
}

fn function_arn(name: &str, region: &str) -> String {
    format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}")
}

fn epoch_ms(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

/// An X-Ray trace header in the format Lambda sends (`Root=1-<epoch hex>-<96-bit id>;...`).
fn trace_id(sampled: bool) -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let random = Uuid::new_v4().simple().to_string();
    let parent = Uuid::new_v4().simple().to_string();
    let sampled = u8::from(sampled);
    format!("Root=1-{secs:08x}-{};Parent={};Sampled={sampled};Lineage=1:00000000:0", &random[..24], &parent[..16])
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&state)));
                }
                // Out of file descriptors or similar: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(route(&state, req).await) }
    });
    // A connection error only means the function went away mid-request; its invocation (if any)
    // is failed by the process watcher or the timeout.
    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}

type Reply = Response<Full<Bytes>>;

async fn route(state: &State, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return api_error(StatusCode::NOT_FOUND, "NotFound", "unknown Runtime API path");
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let method = req.method().clone();
    match (method, segments.as_slice()) {
        (Method::GET, ["invocation", "next"]) => next(state).await,
        (Method::POST, ["invocation", id, "response"]) => {
            let id = (*id).to_owned();
            answer(state, &id, req, false).await
        }
        (Method::POST, ["invocation", id, "error"]) => {
            let id = (*id).to_owned();
            answer(state, &id, req, true).await
        }
        (Method::POST, ["init", "error"]) => init_error_report(state, req).await,
        (_, ["invocation", "next"] | ["invocation", _, "response" | "error"] | ["init", "error"]) => {
            api_error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method not allowed")
        }
        _ => api_error(StatusCode::NOT_FOUND, "NotFound", "unknown Runtime API path"),
    }
}

/// `GET /invocation/next`: blocks until an event is queued.
async fn next(state: &State) -> Reply {
    state.first_poll.send_if_modified(|first| {
        if first.is_none() {
            *first = Some(Instant::now());
            true
        } else {
            false
        }
    });
    // Cancel-safe: if the function hangs up while waiting, no event is lost.
    let mut events = state.events_rx.lock().await;
    loop {
        let Some(event) = events.recv().await else {
            return api_error(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", "shutting down");
        };
        if !state.pending().contains_key(&event.request_id) {
            continue; // its caller timed out or gave up before the function asked for work
        }
        let mut response = Response::new(Full::new(event.body));
        let headers = response.headers_mut();
        insert(headers, "content-type", "application/json");
        insert(headers, "lambda-runtime-aws-request-id", &event.request_id);
        insert(headers, "lambda-runtime-deadline-ms", &event.deadline_ms.to_string());
        insert(headers, "lambda-runtime-invoked-function-arn", &state.function_arn());
        insert(headers, "lambda-runtime-trace-id", &event.trace_id);
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        return response;
    }
}

/// `POST /invocation/{id}/response` and `POST /invocation/{id}/error`.
async fn answer(state: &State, request_id: &str, req: Request<Incoming>, is_error: bool) -> Reply {
    if !state.pending().contains_key(request_id) {
        return api_error(StatusCode::BAD_REQUEST, "InvalidRequestID", "unknown or finished request id");
    }
    let header_error_type = header_string(req.headers(), ERROR_TYPE_HEADER);
    let (answer, reply) = match read_body(req).await {
        Ok((body, trailers)) => {
            // A streamed response reports a mid-stream failure in its trailers.
            let trailer_error_type = trailers.as_ref().and_then(|t| header_string(t, ERROR_TYPE_HEADER));
            let answer = Answer {
                body,
                is_error: is_error || trailer_error_type.is_some(),
                error_type: trailer_error_type.or(header_error_type),
                received_at: Instant::now(),
            };
            (answer, accepted())
        }
        Err(BodyError::TooLarge) => {
            let message =
                format!("Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).");
            let error = json!({ "errorType": "Function.ResponseSizeTooLarge", "errorMessage": message });
            let answer = Answer {
                body: Bytes::from(error.to_string()),
                is_error: true,
                error_type: Some("Function.ResponseSizeTooLarge".into()),
                received_at: Instant::now(),
            };
            (answer, api_error(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", &message))
        }
        Err(BodyError::Io) => {
            return api_error(StatusCode::BAD_REQUEST, "InvalidRequest", "could not read the request body");
        }
    };
    match state.pending().remove(request_id) {
        // The waiting side may have just given up; then nobody needs the answer.
        Some(waiter) => {
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
            let _ = waiter.send(answer);
            reply
        }
        None => api_error(StatusCode::BAD_REQUEST, "InvalidRequestID", "unknown or finished request id"),
    }
}

/// `POST /init/error`.
async fn init_error_report(state: &State, req: Request<Incoming>) -> Reply {
    let header_error_type = header_string(req.headers(), ERROR_TYPE_HEADER);
    let body = match read_body(req).await {
        Ok((body, _)) => body,
        Err(BodyError::TooLarge | BodyError::Io) => Bytes::new(),
    };
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)).and_then(Value::as_str).map(str::to_owned);
    let failure = InitFailure {
        error_type: field("errorType").or(header_error_type).unwrap_or_else(|| "Runtime.Unknown".into()),
        message: field("errorMessage").unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
    };
    state.init_error.send_replace(Some(failure));
    accepted()
}

enum BodyError {
    TooLarge,
    Io,
}

async fn read_body(req: Request<Incoming>) -> Result<(Bytes, Option<HeaderMap>), BodyError> {
    match Limited::new(req.into_body(), MAX_RESPONSE_BYTES).collect().await {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            Ok((collected.to_bytes(), trailers))
        }
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Io),
    }
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    // Every value we send is ASCII we generated ourselves or an ARN built from the function name;
    // a name with control characters is skipped rather than sent broken.
    if let Ok(value) = header::HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

fn accepted() -> Reply {
    json_reply(StatusCode::ACCEPTED, &json!({ "status": "OK" }))
}

fn api_error(status: StatusCode, error_type: &str, message: &str) -> Reply {
    json_reply(status, &json!({ "errorType": error_type, "errorMessage": message }))
}

fn json_reply(status: StatusCode, body: &Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    insert(response.headers_mut(), "content-type", "application/json");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_headers_have_lambdas_shape_and_the_sampling_asked_for() {
        for (sampled, flag) in [(false, "Sampled=0"), (true, "Sampled=1")] {
            let header = trace_id(sampled);
            let parts: Vec<&str> = header.split(';').collect();
            let root = parts[0].strip_prefix("Root=").expect("Root first");
            let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
            let pieces: Vec<&str> = root.split('-').collect();
            assert!(pieces.len() == 3 && pieces[0] == "1" && hex(pieces[1], 8) && hex(pieces[2], 24), "{header}");
            assert!(parts[1].strip_prefix("Parent=").is_some_and(|p| hex(p, 16)), "{header}");
            assert_eq!(parts[2], flag);
        }
    }
}
