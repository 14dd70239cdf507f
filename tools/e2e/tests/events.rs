//! Every file in `events/` through the real function binaries, each under a local Lambda Runtime
//! API with the environment Lambda gives, answered with the status `events/manifest.json` names.

use std::process::Command;
use std::time::Duration;

use e2e::stack::{Stack, bin_dir, root};
use lambda_harness::SpawnOptions;
use lambda_harness::check::{CheckOptions, run_check};

/// Log lines shown for an event that failed.
const LOG_TAIL_LINES: usize = 40;

#[tokio::test(flavor = "current_thread")]
async fn every_sample_event_gets_its_manifest_status() {
    let stack = Stack::get("events-");
    let bins = bin_dir();
    // The events read seeded posts, an order and a subscription.
    let seeded = Command::new(bins.join("ops")).arg("seed").envs(stack.env.iter().cloned()).output().expect("ops seed");
    assert!(seeded.status.success(), "ops seed: {}", String::from_utf8_lossy(&seeded.stderr));

    let options = CheckOptions {
        bin_dir: bins.to_path_buf(),
        spawn: SpawnOptions { env: stack.env.clone(), inherit_env: false, log_file: None, echo_logs: false },
        timeout: Duration::from_secs(30),
        log_dir: None,
    };
    let mut failures = Vec::new();
    let summary = run_check(&root().join("events/manifest.json"), &options, |outcome| {
        println!("{outcome}");
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
        serde_json::from_str(&std::fs::read_to_string(root().join("events/manifest.json")).unwrap()).unwrap();
    let entries = manifest.as_array().map_or(0, Vec::len);
    assert!(entries > 0, "events/manifest.json has no entries");
    assert_eq!(summary.passed + summary.failed, entries, "every manifest entry ran");
    assert!(failures.is_empty(), "{} events failed:\n{}", failures.len(), failures.join("\n"));
}
