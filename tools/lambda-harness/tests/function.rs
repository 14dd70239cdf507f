//! The harness against a real `lambda_runtime` function (the crate's `echo-function` binary) and
//! against a hand-rolled HTTP client speaking the Runtime API directly.

use std::time::{Duration, Instant};

use lambda_harness::{Function, HarnessError, RuntimeApi, SpawnOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ECHO: &str = env!("CARGO_BIN_EXE_echo-function");
/// Generous: the machine is small and may be busy building. Promptness is asserted separately.
const TIMEOUT: Duration = Duration::from_secs(60);

fn options(env: &[(&str, &str)]) -> SpawnOptions {
    SpawnOptions {
        env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        ..SpawnOptions::default()
    }
}

async fn echo(env: &[(&str, &str)]) -> Function {
    Function::start(ECHO, &options(env)).await.expect("echo-function starts")
}

#[tokio::test]
async fn invoke_returns_the_echo_and_measures_cold_init() {
    let function = echo(&[]).await;
    let cold_init = function.wait_ready(TIMEOUT).await.expect("function initialises");
    assert!(cold_init > Duration::ZERO);
    assert_eq!(function.cold_init(), Some(cold_init));

    let event = json!({ "hello": "world" });
    let answer = function.invoke(&event, TIMEOUT).await.expect("function answers");
    assert!(!answer.is_error, "{answer:?}");
    assert_eq!(answer.status_code(), Some(200));
    let body = answer.json().expect("JSON answer")["body"].as_str().map(str::to_owned).expect("body is a string");
    assert_eq!(serde_json::from_str::<Value>(&body).expect("body is the event"), event);
    assert!(answer.latency > Duration::ZERO);

    assert!(function.peak_rss_bytes().expect("process is alive") > 0);
    let report = function.stop().await;
    assert!(report.peak_rss_bytes.is_some_and(|bytes| bytes > 0));
    assert!(!report.exited_on_its_own);
}

#[tokio::test]
async fn terminate_sends_sigterm_and_the_process_exits_by_that_signal() {
    use std::os::unix::process::ExitStatusExt;
    let function = echo(&[]).await;
    function.wait_ready(TIMEOUT).await.expect("function initialises");
    let report = function.terminate(TIMEOUT).await;
    assert!(report.exited_on_its_own, "{report:?}");
    assert_eq!(report.status.and_then(|s| s.signal()), Some(15), "{report:?}");
}

#[tokio::test]
async fn warm_invocations_reuse_the_process() {
    let function = echo(&[]).await;
    let pid = function.pid();
    for expected in [200, 201, 202] {
        let answer = function.invoke(&json!({ "countStatus": true }), TIMEOUT).await.expect("function answers");
        assert_eq!(answer.status_code(), Some(expected));
    }
    assert_eq!(function.pid(), pid);
    assert!(function.is_running());
}

#[tokio::test]
async fn a_function_error_is_an_answer_with_is_error() {
    let function = echo(&[]).await;
    let answer = function.invoke(&json!({ "fail": true }), TIMEOUT).await.expect("function answers");
    assert!(answer.is_error);
    assert_eq!(answer.status_code(), None);
    let error = answer.json().expect("error document");
    assert!(error["errorMessage"].as_str().is_some_and(|m| m.contains("asked to fail")), "{error}");

    // The process survives a function error and serves the next event.
    let answer = function.invoke(&json!({}), TIMEOUT).await.expect("function answers");
    assert_eq!(answer.status_code(), Some(200));
}

#[tokio::test]
async fn a_panic_is_a_function_error_and_shows_in_the_logs() {
    let function = echo(&[]).await;
    let answer = function.invoke(&json!({ "panic": true }), TIMEOUT).await.expect("function answers");
    assert!(answer.is_error);
    let report = function.stop().await;
    assert!(report.logs.contains("panicked"), "logs: {}", report.logs);
}

#[tokio::test]
async fn logs_are_captured() {
    let log_dir = tempfile::tempdir().expect("temp dir");
    let log_file = log_dir.path().join("echo.log");
    let options = SpawnOptions { log_file: Some(log_file.clone()), ..SpawnOptions::default() };
    let function = Function::start(ECHO, &options).await.expect("function starts");
    function.invoke(&json!({ "log": "first line" }), TIMEOUT).await.expect("function answers");
    function.invoke(&json!({ "log": "second line" }), TIMEOUT).await.expect("function answers");
    let report = function.stop().await;
    assert!(report.logs.contains("first line\n") && report.logs.contains("second line\n"), "{}", report.logs);
    let file = std::fs::read_to_string(&log_file).expect("log file written");
    assert!(file.contains("second line"), "{file}");
}

#[tokio::test]
async fn the_lambda_environment_is_set_and_the_caller_wins() {
    let function = echo(&[("GREETING", "hello"), ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")]).await;
    let env = |name: &'static str| {
        let function = &function;
        async move {
            let answer = function.invoke(&json!({ "env": name }), TIMEOUT).await.expect("function answers");
            answer.json().expect("JSON")["body"].as_str().unwrap_or_default().to_owned()
        }
    };
    assert_eq!(env("GREETING").await, "hello");
    assert_eq!(env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").await, "512");
    assert_eq!(env("AWS_LAMBDA_FUNCTION_NAME").await, "echo-function");
    assert_eq!(env("AWS_LAMBDA_FUNCTION_VERSION").await, "$LATEST");
    assert_eq!(env("AWS_REGION").await, "us-east-1");
    assert_eq!(env("AWS_LAMBDA_LOG_FORMAT").await, "JSON");
    assert_eq!(env("_HANDLER").await, "bootstrap");
    assert_eq!(env("AWS_LAMBDA_RUNTIME_API").await, function.api().host_port());
    assert!(!env("LAMBDA_TASK_ROOT").await.is_empty());
}

#[tokio::test]
async fn a_process_that_exits_at_init_fails_the_invocation_promptly() {
    let function = echo(&[("ECHO_EXIT_AT_INIT", "3")]).await;
    let started = Instant::now();
    let error = function.invoke(&json!({}), TIMEOUT).await.expect_err("no answer from a dead process");
    assert!(matches!(error, HarnessError::ProcessExited { .. }), "{error}");
    assert!(error.to_string().contains("exit status: 3"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(!function.is_running());
    assert!(function.cold_init().is_none());

    let error = function.wait_ready(TIMEOUT).await.expect_err("never ready");
    assert!(matches!(error, HarnessError::ProcessExited { .. }), "{error}");
    let report = function.stop().await;
    assert!(report.exited_on_its_own);
    assert!(report.logs.contains("exiting at init"), "{}", report.logs);
}

#[tokio::test]
async fn a_process_that_dies_mid_invocation_fails_it_promptly() {
    let function = echo(&[]).await;
    function.wait_ready(TIMEOUT).await.expect("function initialises");
    let started = Instant::now();
    let error = function.invoke(&json!({ "exit": 4 }), TIMEOUT).await.expect_err("no answer");
    assert!(matches!(error, HarnessError::ProcessExited { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn a_slow_function_times_out() {
    let function = echo(&[]).await;
    function.wait_ready(TIMEOUT).await.expect("function initialises");
    let error = function.invoke(&json!({ "sleepMs": 5_000 }), Duration::from_millis(200)).await.expect_err("too slow");
    assert!(matches!(error, HarnessError::Timeout(_)), "{error}");
}

#[tokio::test]
async fn dropping_the_function_kills_the_process() {
    let function = echo(&[]).await;
    function.wait_ready(TIMEOUT).await.expect("function initialises");
    let proc_dir = format!("/proc/{}", function.pid());
    drop(function);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&proc_dir).exists() {
        assert!(Instant::now() < deadline, "process still alive after drop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_missing_binary_is_reported() {
    let error =
        Function::start("/nonexistent/bootstrap", &SpawnOptions::default()).await.err().expect("no such binary");
    assert!(matches!(error, HarnessError::BinaryNotFound { .. }), "{error}");
}

/// One HTTP/1.1 request on a fresh connection; returns status, lower-cased headers and body.
async fn http(api: &RuntimeApi, method: &str, path: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect(api.addr()).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        api.host_port(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("receive");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

#[tokio::test]
async fn next_carries_lambda_headers_and_answers_are_routed_by_request_id() {
    let api = RuntimeApi::start().await.expect("server starts");
    api.set_function("posts-read", "eu-west-1");
    assert!(api.first_poll().is_none());

    let invoking = {
        let api = api.clone();
        tokio::spawn(async move { api.invoke(&json!({ "n": 1 }), TIMEOUT).await })
    };
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    let (status, headers, body) = http(&api, "GET", "/2018-06-01/runtime/invocation/next", "").await;
    assert_eq!(status, 200);
    assert!(api.first_poll().is_some());
    assert_eq!(serde_json::from_str::<Value>(&body).expect("event"), json!({ "n": 1 }));
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).expect(name);
    let request_id = header("lambda-runtime-aws-request-id");
    let deadline: u128 = header("lambda-runtime-deadline-ms").parse().expect("epoch ms");
    assert!(deadline >= before + 59_000, "deadline {deadline} should be about now + timeout");
    assert_eq!(
        header("lambda-runtime-invoked-function-arn"),
        "arn:aws:lambda:eu-west-1:000000000000:function:posts-read"
    );
    assert!(header("lambda-runtime-trace-id").starts_with("Root=1-"));

    let (status, _, _) = http(&api, "POST", "/2018-06-01/runtime/invocation/not-a-request/response", "{}").await;
    assert_eq!(status, 400);
    let path = format!("/2018-06-01/runtime/invocation/{request_id}/response");
    let (status, _, _) = http(&api, "POST", &path, r#"{"statusCode":204}"#).await;
    assert_eq!(status, 202);
    let answer = invoking.await.expect("task").expect("answered");
    assert_eq!(answer.request_id, request_id);
    assert_eq!(answer.status_code(), Some(204));

    // The same id cannot be answered twice.
    let (status, _, _) = http(&api, "POST", &path, "{}").await;
    assert_eq!(status, 400);
    let (status, _, _) = http(&api, "GET", "/2018-06-01/runtime/nope", "").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_init_error_fails_waiting_invocations() {
    let api = RuntimeApi::start().await.expect("server starts");
    let invoking = {
        let api = api.clone();
        tokio::spawn(async move { api.invoke(&json!({}), TIMEOUT).await })
    };
    let report = r#"{"errorType":"Runtime.ConfigError","errorMessage":"TABLE_NAME is missing"}"#;
    let (status, _, _) = http(&api, "POST", "/2018-06-01/runtime/init/error", report).await;
    assert_eq!(status, 202);
    let started = Instant::now();
    let error = invoking.await.expect("task").expect_err("init failed");
    assert!(started.elapsed() < Duration::from_secs(10));
    match error {
        HarnessError::InitError { error_type, message } => {
            assert_eq!(error_type, "Runtime.ConfigError");
            assert_eq!(message, "TABLE_NAME is missing");
        }
        other => panic!("expected an init error, got {other}"),
    }
    assert!(api.init_error().is_some());
}

/// The v1 `cpu` controller's folder or the v2 root, if this machine lets us make groups there.
fn writable_cpu_hierarchy() -> Option<std::path::PathBuf> {
    ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists() && std::fs::metadata(p).is_ok_and(|m| !m.permissions().readonly()))
}

#[tokio::test]
async fn a_cgroup_is_joined_before_exec_so_init_runs_inside_it() {
    let Some(root) = writable_cpu_hierarchy() else {
        eprintln!("SKIP: no writable cgroup hierarchy here (the Lambda-shaped bench needs one; CI has it)");
        return;
    };
    let group = root.join(format!("harness-test-{}", std::process::id()));
    if std::fs::create_dir(&group).is_err() {
        eprintln!("SKIP: cannot make a cgroup under {} (not root?)", root.display());
        return;
    }
    let options = SpawnOptions { cgroup: Some(group.clone()), ..SpawnOptions::default() };
    let f = Function::start(ECHO, &options).await.expect("echo-function starts in the group");
    f.wait_ready(TIMEOUT).await.expect("init");
    let members = std::fs::read_to_string(group.join("cgroup.procs")).expect("cgroup.procs");
    let pid = f.pid();
    f.stop().await;
    let _ = std::fs::remove_dir(&group);
    assert!(members.split_whitespace().any(|p| p == pid.to_string()), "pid {pid} not in {members:?}");

    let missing = SpawnOptions { cgroup: Some(root.join("no-such-group-here")), ..SpawnOptions::default() };
    match Function::start(ECHO, &missing).await {
        Err(HarnessError::Cgroup { path, .. }) => assert!(path.ends_with("no-such-group-here/cgroup.procs")),
        Err(other) => panic!("expected a cgroup error, got {other}"),
        Ok(_) => panic!("a missing cgroup must refuse the start"),
    }
}
