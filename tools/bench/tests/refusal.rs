//! The Lambda-shaped mode refuses to measure without what makes it Lambda-shaped, and says why,
//! instead of publishing whole-core or plaintext figures as Lambda's.

use std::process::Command;

#[test]
fn without_the_node_baseline_the_lambda_shaped_bench_stops_with_the_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["lambda", "--bin-dir", "/nonexistent", "--env-file", "/nonexistent", "--out", "/dev/null"])
        .args(["--command", "test"])
        .env("NODE_SEED", "/nonexistent/node-seed")
        .output()
        .expect("run bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // As root with a cpu controller the cgroup check passes and the missing baseline is the
    // reason; elsewhere the cgroup is. Either way the reason is named, and nothing was measured.
    assert!(
        stderr.contains("/nonexistent/node-seed") || stderr.contains("needs a cgroup with a CPU quota"),
        "{stderr}"
    );
    assert!(!stderr.contains("lambda-shaped "), "nothing may be measured: {stderr}");
}
