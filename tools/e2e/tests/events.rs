//! Every file in `events/` through the real function binaries, each under a local Lambda Runtime
//! API with the environment Lambda gives, answered with the status `events/manifest.json` names.

use std::process::Command;
use std::time::Duration;

use e2e::stack::{Stack, bin_dir};
use lambda_harness::SpawnOptions;
use lambda_harness::check::{CheckOptions, run_check};

/// Log lines shown for an event that failed.
const LOG_TAIL_LINES: usize = 40;
/// When set, each function's answer is written to `<dir>/<event path>` (the event's own path
/// under events/), for the OpenAPI check (`tests/docs/test_openapi.py`, run by `make test`).
const ANSWERS_DIR_VAR: &str = "BUNDLE_E2E_ANSWERS";

/// The largest response payload each function may answer with (docs/limits.md), far under
/// Lambda's 6 MB: posts by the bounds of `shared::posts` (summaries in lists, a whole post at most
/// DynamoDB's item size), the others fixed-shape answers (tokens, presigned URLs, profiles, acks,
/// problems, at most ten failed SQS message ids).
fn payload_budget(function: &str) -> usize {
    match function {
        "posts-read" | "posts-write" => shared::posts::POST_MAX_PAYLOAD_BYTES,
        _ => 16 * 1024,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn every_sample_event_gets_its_manifest_status() {
    let stack = Stack::get("events-");
    let bins = bin_dir();
    // The events read seeded posts, an order and a subscription.
    let seeded = Command::new(bins.join("ops")).arg("seed").envs(stack.env.iter().cloned()).output().expect("ops seed");
    assert!(seeded.status.success(), "ops seed: {}", String::from_utf8_lossy(&seeded.stderr));

    // Events name users, not tokens: fresh access tokens of the stack's key go in now.
    let events = stack.render_events(&stack.dir.join(format!("events-{}", std::process::id())));
    let options = CheckOptions {
        bin_dir: bins.to_path_buf(),
        spawn: SpawnOptions { env: stack.env.clone(), ..SpawnOptions::default() },
        timeout: Duration::from_secs(30),
        log_dir: None,
        // Each function as its own cache (ACL) user, as deployed.
        function_env_dir: Some(stack.dir.join("functions")),
    };
    let answers_dir = std::env::var_os(ANSWERS_DIR_VAR).map(std::path::PathBuf::from);
    let mut failures = Vec::new();
    let mut over_budget = Vec::new();
    let summary = run_check(&events.join("manifest.json"), &options, |outcome| {
        println!("{outcome} payload={}", outcome.payload_bytes);
        let budget = payload_budget(&outcome.entry.function);
        if outcome.payload_bytes > budget {
            over_budget.push(format!("{outcome}: payload {} > {budget}", outcome.payload_bytes));
        }
        if let (Some(dir), Some(answer)) = (&answers_dir, &outcome.answer) {
            let path = dir.join(&outcome.entry.event);
            let written = std::fs::create_dir_all(path.parent().expect("an event path has a folder"))
                .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(answer).expect("JSON")));
            if let Err(error) = written {
                failures.push(format!(
                    "{}: could not write the answer to {}: {error}",
                    outcome.entry.event,
                    path.display()
                ));
            }
        }
        if !outcome.passed() {
            let lines: Vec<&str> = outcome.logs.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n    | ");
            failures.push(format!("{outcome}\n    | {tail}"));
        }
    })
    .await
    .expect("the manifest runs");
    println!("{summary}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(events.join("manifest.json")).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&events);
    let entries = manifest.as_array().map_or(0, Vec::len);
    assert!(entries > 0, "events/manifest.json has no entries");
    assert_eq!(summary.passed + summary.failed, entries, "every manifest entry ran");
    assert!(failures.is_empty(), "{} events failed:\n{}", failures.len(), failures.join("\n"));
    assert!(over_budget.is_empty(), "answers over their payload budget:\n{}", over_budget.join("\n"));
}
