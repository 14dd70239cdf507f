//! The `lambda-harness` binary: `invoke` exit codes and output, and `check`'s lines and summary.

use std::path::Path;
use std::process::{Command, Output};

const HARNESS: &str = env!("CARGO_BIN_EXE_lambda-harness");
const ECHO: &str = env!("CARGO_BIN_EXE_echo-function");

fn run(args: &[&str]) -> Output {
    Command::new(HARNESS).args(args).output().expect("lambda-harness runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create folder");
    }
    std::fs::write(&path, contents).expect("write file");
    path.to_string_lossy().into_owned()
}

#[test]
fn invoke_prints_the_response_and_checks_the_status() {
    let dir = tempfile::tempdir().expect("temp dir");
    let event = write(dir.path(), "ok.json", r#"{"hello":"world"}"#);

    let output = run(&["invoke", "--bin", ECHO, "--event", &event, "--expect-status", "200"]);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let response: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is the response JSON");
    assert_eq!(response["statusCode"], 200);

    let output = run(&["invoke", "--bin", ECHO, "--event", &event, "--expect-status", "404"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("expected statusCode 404, got 200"), "stderr: {}", text(&output.stderr));
}

#[test]
fn invoke_fails_on_a_function_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let event = write(dir.path(), "fail.json", r#"{"fail":true}"#);
    let output = run(&["invoke", "--bin", ECHO, "--event", &event]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("function error"), "stderr: {}", text(&output.stderr));
}

#[test]
fn invoke_passes_env_and_env_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env_file = write(dir.path(), "dev.env", "# dev settings\nGREETING=from-file\nOTHER=x\n");
    let event = write(dir.path(), "env.json", r#"{"env":"GREETING"}"#);

    let output = run(&["invoke", "--bin", ECHO, "--event", &event, "--env-file", &env_file]);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let response: serde_json::Value = serde_json::from_slice(&output.stdout).expect("response JSON");
    assert_eq!(response["body"], "from-file");

    // --env wins over the file.
    let output =
        run(&["invoke", "--bin", ECHO, "--event", &event, "--env-file", &env_file, "--env", "GREETING=from-flag"]);
    let response: serde_json::Value = serde_json::from_slice(&output.stdout).expect("response JSON");
    assert_eq!(response["body"], "from-flag");

    let output = run(&["invoke", "--bin", ECHO, "--event", &event, "--env", "not-an-assignment"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("--env"), "stderr: {}", text(&output.stderr));
}

#[test]
fn check_prints_one_line_per_event_and_the_summary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin_dir = Path::new(ECHO).parent().expect("bin dir").to_string_lossy().into_owned();
    write(dir.path(), "echo/ok.json", r#"{"hello":"world"}"#);
    write(dir.path(), "echo/teapot.json", r#"{"status":418}"#);
    write(dir.path(), "echo/created.json", r#"{"status":201}"#);
    write(dir.path(), "echo/fail.json", r#"{"fail":true}"#);
    write(dir.path(), "echo/count.json", r#"{"countStatus":true}"#);
    let manifest = write(
        dir.path(),
        "manifest.json",
        r#"[
            {"function": "echo-function", "event": "echo/count.json", "expectStatus": 200},
            {"function": "echo-function", "event": "echo/ok.json", "expectStatus": 200},
            {"function": "no-such-function", "event": "echo/ok.json", "expectStatus": 200},
            {"function": "echo-function", "event": "echo/teapot.json", "expectStatus": 418},
            {"function": "echo-function", "event": "echo/created.json", "expectStatus": 200},
            {"function": "echo-function", "event": "echo/fail.json", "expectStatus": 200},
            {"function": "echo-function", "event": "echo/count.json", "expectStatus": 205},
            {"function": "echo-function", "event": "echo/ok.json"}
        ]"#,
    );
    let log_dir = dir.path().join("logs").to_string_lossy().into_owned();

    let output = run(&["check", "--manifest", &manifest, "--bin-dir", &bin_dir, "--log-dir", &log_dir]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "stdout: {stdout}\nstderr: {}", text(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 9, "{stdout}");
    assert_eq!(lines[8], "5 passed, 3 failed");
    // Grouped by function in order of first appearance; one warm process serves all of echo-function's
    // events, so the second count event sees five earlier invocations (status 205).
    assert_eq!(lines[0], "ok echo-function echo/count.json expected=200 got=200");
    assert_eq!(lines[1], "ok echo-function echo/ok.json expected=200 got=200");
    assert_eq!(lines[2], "ok echo-function echo/teapot.json expected=418 got=418");
    assert!(lines[3].starts_with("FAIL echo-function echo/created.json expected=200 got=201"), "{}", lines[3]);
    assert!(lines[4].starts_with("FAIL echo-function echo/fail.json expected=200 got=error"), "{}", lines[4]);
    assert_eq!(lines[5], "ok echo-function echo/count.json expected=205 got=205");
    assert_eq!(lines[6], "ok echo-function echo/ok.json expected=any got=200");
    assert!(lines[7].starts_with("FAIL no-such-function echo/ok.json expected=200 got=-"), "{}", lines[7]);
    assert!(Path::new(&log_dir).join("echo-function.log").is_file());
}

#[test]
fn check_passes_when_everything_passes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin_dir = Path::new(ECHO).parent().expect("bin dir").to_string_lossy().into_owned();
    write(dir.path(), "ok.json", "{}");
    let manifest =
        write(dir.path(), "manifest.json", r#"[{"function":"echo-function","event":"ok.json","expectStatus":200}]"#);
    let output = run(&["check", "--manifest", &manifest, "--bin-dir", &bin_dir]);
    assert!(output.status.success(), "stdout: {}\nstderr: {}", text(&output.stdout), text(&output.stderr));
    assert_eq!(text(&output.stdout).lines().last(), Some("1 passed, 0 failed"));
}

#[test]
fn check_reports_an_unusable_manifest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = write(dir.path(), "manifest.json", r#"[{"function":"f","event":"e.json","expectedStatus":200}]"#);
    let output = run(&["check", "--manifest", &manifest, "--bin-dir", "."]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("expectedStatus"), "stderr: {}", text(&output.stderr));
}
