//! `check`: invoke every sample event of a manifest through the real function binaries.
//!
//! The manifest (`events/manifest.json`) is a JSON array of
//! `{"function": "posts-read", "event": "posts-read/get-hit.json", "expectStatus": 200}`, event paths
//! relative to the manifest's folder; `expectStatus` may be left out for functions that do not answer
//! HTTP (the event then passes when the function answers without an error). An SQS consumer's entry
//! gives `expectBatchItemFailures`: the exact message ids its partial-batch response must list
//! (in any order; `[]` when every record must succeed). Each function binary is
//! started once and serves all of its events in manifest order, as a warm Lambda would; after an
//! invocation that got no answer at all (a crash or a timeout) the process is replaced, as Lambda
//! replaces a broken execution environment.
//!
//! An event passes when the function answered, did not report an error, did not log a panic while
//! handling it, and (if expected) returned the expected `statusCode`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::{Function, HarnessError, Invocation, SpawnOptions};

/// How long to let the log pipes catch up after an answer before looking for a panic message.
const LOG_SETTLE: Duration = Duration::from_millis(20);

/// One line of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestEntry {
    /// The binary's name in the bin dir (`posts-read`).
    pub function: String,
    /// The event file, relative to the manifest's folder.
    pub event: String,
    /// The `statusCode` the function must answer with.
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// The message ids the `batchItemFailures` answer must list, exactly (order aside).
    #[serde(default)]
    pub expect_batch_item_failures: Option<Vec<String>>,
    /// The status under `sam local` instead, where it differs for a reason the manifest states
    /// (scripts/sam_local_run.py reads it; this harness does not).
    #[serde(default)]
    pub sam_local_expect_status: Option<u16>,
    /// Why `samLocalExpectStatus` differs.
    #[serde(default)]
    pub sam_local_reason: Option<String>,
}

/// Reads and validates a manifest file.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestEntry>, HarnessError> {
    let text = std::fs::read(path).map_err(|source| HarnessError::ReadFile { path: path.to_path_buf(), source })?;
    serde_json::from_slice(&text).map_err(|source| HarnessError::InvalidJson { path: path.to_path_buf(), source })
}

/// Settings of a check run.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Where the function binaries are (`target/debug`).
    pub bin_dir: PathBuf,
    /// Environment for every function; also whether to inherit the harness's own.
    pub spawn: SpawnOptions,
    /// Timeout of one invocation (the first one of a process includes its init).
    pub timeout: Duration,
    /// When set, each function's output is appended to `<log_dir>/<function>.log`.
    pub log_dir: Option<PathBuf>,
    /// When set, `<dir>/<function>.env` (if it exists) is applied over `spawn.env` for that function.
    pub function_env_dir: Option<PathBuf>,
}

/// What the function answered, as far as the check cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// A response with this `statusCode`.
    Status(u16),
    /// A response without a `statusCode` (not an HTTP proxy response).
    NoStatus,
    /// A function error.
    FunctionError,
    /// No answer: the process could not start, died, or timed out.
    NoAnswer,
}

impl fmt::Display for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Got::Status(code) => write!(f, "{code}"),
            Got::NoStatus => f.write_str("none"),
            Got::FunctionError => f.write_str("error"),
            Got::NoAnswer => f.write_str("-"),
        }
    }
}

/// The result of one manifest entry.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    pub entry: ManifestEntry,
    pub got: Got,
    /// Why it failed; `None` when it passed.
    pub problem: Option<String>,
    /// What the function logged while handling this event.
    pub logs: String,
    /// The function's answer as JSON (an HTTP function's proxy response), when it gave one:
    /// what `tools/e2e` hands to the OpenAPI check.
    pub answer: Option<Value>,
    /// The size of the response payload it posted (what Lambda holds against its 6 MB limit);
    /// 0 without an answer.
    pub payload_bytes: usize,
}

impl CheckOutcome {
    pub fn passed(&self) -> bool {
        self.problem.is_none()
    }
}

impl fmt::Display for CheckOutcome {
    /// `ok|FAIL function event expected=N got=M`, then the reason of a failure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "ok" } else { "FAIL" };
        let expected = self.entry.expect_status.map_or_else(|| "any".to_owned(), |code| code.to_string());
        write!(f, "{verdict} {} {} expected={expected} got={}", self.entry.function, self.entry.event, self.got)?;
        if let Some(problem) = &self.problem {
            write!(f, " ({problem})")?;
        }
        Ok(())
    }
}

/// Totals of a check run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckSummary {
    pub passed: usize,
    pub failed: usize,
}

impl fmt::Display for CheckSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

/// Runs every entry of the manifest at `manifest_path`, calling `report` with each outcome as soon as
/// it is known. Fails only when the manifest itself cannot be used.
pub async fn run_check(
    manifest_path: &Path,
    options: &CheckOptions,
    mut report: impl FnMut(&CheckOutcome),
) -> Result<CheckSummary, HarnessError> {
    let entries = read_manifest(manifest_path)?;
    let base = manifest_path.parent().unwrap_or(Path::new("."));
    if let Some(dir) = &options.log_dir {
        std::fs::create_dir_all(dir).map_err(|source| HarnessError::WriteFile { path: dir.clone(), source })?;
    }

    // Functions in order of first appearance, each with its events in manifest order.
    let mut groups: Vec<(String, Vec<ManifestEntry>)> = Vec::new();
    for entry in entries {
        match groups.iter_mut().find(|(name, _)| *name == entry.function) {
            Some((_, group)) => group.push(entry),
            None => groups.push((entry.function.clone(), vec![entry])),
        }
    }

    let mut summary = CheckSummary::default();
    for (name, events) in groups {
        let mut spawn = options.spawn.clone();
        spawn.log_file = options.log_dir.as_ref().map(|dir| dir.join(format!("{name}.log")));
        if let Some(file) = options.function_env_dir.as_ref().map(|dir| dir.join(format!("{name}.env")))
            && file.exists()
        {
            spawn.env.extend(crate::env::read_env_file(&file)?);
        }
        let bootstrap = options.bin_dir.join(&name);
        let mut running: Option<Function> = None;

        for entry in events {
            if running.is_none() {
                match Function::start(&bootstrap, &spawn).await {
                    Ok(function) => running = Some(function),
                    Err(error) => {
                        let outcome = no_answer(entry, error.to_string(), String::new());
                        tally(&mut summary, &outcome, &mut report);
                        continue;
                    }
                }
            }
            let Some(function) = running.as_ref() else { continue };
            let (outcome, healthy) = check_one(function, entry, base, options.timeout).await;
            tally(&mut summary, &outcome, &mut report);
            if !healthy && let Some(broken) = running.take() {
                broken.stop().await;
            }
        }
        if let Some(function) = running {
            function.stop().await;
        }
    }
    Ok(summary)
}

fn tally(summary: &mut CheckSummary, outcome: &CheckOutcome, report: &mut impl FnMut(&CheckOutcome)) {
    if outcome.passed() {
        summary.passed += 1;
    } else {
        summary.failed += 1;
    }
    report(outcome);
}

fn no_answer(entry: ManifestEntry, problem: String, logs: String) -> CheckOutcome {
    CheckOutcome { entry, got: Got::NoAnswer, problem: Some(problem), logs, answer: None, payload_bytes: 0 }
}

/// Invokes one event. The flag is false when the process should be replaced before the next event.
async fn check_one(function: &Function, entry: ManifestEntry, base: &Path, timeout: Duration) -> (CheckOutcome, bool) {
    let path = base.join(&entry.event);
    let event = match read_event(&path) {
        Ok(event) => event,
        Err(error) => return (no_answer(entry, error.to_string(), String::new()), true),
    };
    let log_start = function.logs_len();
    let result = function.invoke(&event, timeout).await;
    tokio::time::sleep(LOG_SETTLE).await;
    let logs = function.logs_since(log_start);
    match result {
        Ok(invocation) => (judge(entry, &invocation, logs), function.is_running()),
        Err(error) => (no_answer(entry, error.to_string(), logs), false),
    }
}

fn judge(entry: ManifestEntry, invocation: &Invocation, logs: String) -> CheckOutcome {
    let payload_bytes = invocation.body.len();
    if let Some(error) = invocation.error_summary() {
        let problem = format!("function error: {error}");
        return CheckOutcome {
            entry,
            got: Got::FunctionError,
            problem: Some(problem),
            logs,
            answer: None,
            payload_bytes,
        };
    }
    let got = invocation.status_code().map_or(Got::NoStatus, Got::Status);
    let problem = match (entry.expect_status, &got) {
        (Some(expected), Got::Status(code)) if *code != expected => {
            Some(format!("expected status {expected}, got {code}"))
        }
        (Some(_), Got::NoStatus) => Some("the response has no statusCode".to_owned()),
        _ if logs.contains("panicked") => Some("the function logged a panic".to_owned()),
        _ => entry
            .expect_batch_item_failures
            .as_deref()
            .and_then(|expected| batch_item_failures_problem(expected, invocation.json().ok().as_ref())),
    };
    CheckOutcome { entry, got, problem, logs, answer: invocation.json().ok(), payload_bytes }
}

/// Why a partial-batch answer is not the expected one, or `None` when its `batchItemFailures`
/// list exactly the `expected` message ids.
pub fn batch_item_failures_problem(expected: &[String], answer: Option<&Value>) -> Option<String> {
    let Some(failures) = answer.and_then(|a| a.get("batchItemFailures")).and_then(Value::as_array) else {
        return Some("the response has no batchItemFailures list".to_owned());
    };
    let mut got: Vec<&str> = failures.iter().filter_map(|f| f.get("itemIdentifier")?.as_str()).collect();
    let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    (got != want).then(|| format!("expected batchItemFailures {want:?}, got {got:?}"))
}

/// Reads an event file as JSON.
pub fn read_event(path: &Path) -> Result<Value, HarnessError> {
    let text = std::fs::read(path).map_err(|source| HarnessError::ReadFile { path: path.to_path_buf(), source })?;
    serde_json::from_slice(&text).map_err(|source| HarnessError::InvalidJson { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_shape() {
        let entries: Vec<ManifestEntry> = serde_json::from_str(
            r#"[{"function":"posts-read","event":"posts-read/get-hit.json","expectStatus":200},
                {"function":"email-sender","event":"email-sender/batch.json"}]"#,
        )
        .expect("valid manifest");
        assert_eq!(entries[0].expect_status, Some(200));
        assert_eq!(entries[1].expect_status, None);
        let typo = serde_json::from_str::<Vec<ManifestEntry>>(r#"[{"function":"a","event":"b","expectedStatus":200}]"#);
        assert!(typo.is_err(), "an unknown field is a mistake, not something to ignore");
    }

    #[test]
    fn batch_item_failures_must_match_exactly() {
        let want = vec!["b".to_owned(), "a".to_owned()];
        let answer = |ids: &[&str]| serde_json::json!({"batchItemFailures": ids.iter().map(|id| serde_json::json!({"itemIdentifier": id})).collect::<Vec<_>>()});
        assert_eq!(batch_item_failures_problem(&want, Some(&answer(&["a", "b"]))), None);
        assert!(batch_item_failures_problem(&want, Some(&answer(&["a"]))).is_some(), "one missing");
        assert!(batch_item_failures_problem(&want, Some(&answer(&["a", "b", "c"]))).is_some(), "one extra");
        assert!(batch_item_failures_problem(&[], Some(&serde_json::json!({}))).is_some(), "no list at all");
        assert_eq!(batch_item_failures_problem(&[], Some(&answer(&[]))), None);
    }

    #[test]
    fn outcome_lines() {
        let entry = ManifestEntry {
            function: "posts-read".into(),
            event: "posts-read/get-hit.json".into(),
            expect_status: Some(200),
            expect_batch_item_failures: None,
            sam_local_expect_status: None,
            sam_local_reason: None,
        };
        let ok = CheckOutcome {
            entry: entry.clone(),
            got: Got::Status(200),
            problem: None,
            logs: String::new(),
            answer: None,
            payload_bytes: 0,
        };
        assert_eq!(ok.to_string(), "ok posts-read posts-read/get-hit.json expected=200 got=200");
        let fail = CheckOutcome {
            entry,
            got: Got::Status(404),
            problem: Some("expected status 200, got 404".into()),
            logs: String::new(),
            answer: None,
            payload_bytes: 0,
        };
        assert!(fail.to_string().starts_with("FAIL posts-read posts-read/get-hit.json expected=200 got=404"));
        assert_eq!(CheckSummary { passed: 3, failed: 1 }.to_string(), "3 passed, 1 failed");
    }
}
