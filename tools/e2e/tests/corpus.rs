//! The bad-input corpus: hostile and malformed requests to every HTTP function's real binary.
//! Every answer must be a 4xx `application/problem+json` whose `status` member matches, and no
//! function may log a panic.

use e2e::corpus;
use e2e::stack::{Stack, bin_dir, event};

#[tokio::test(flavor = "current_thread")]
async fn every_hostile_request_gets_a_4xx_problem_and_no_panic() {
    let stack = Stack::get("corpus-");
    let bearer = testkit::stack_env::bearer(&stack.env, "corpus-user");
    let base = event("posts-read/get-hit.json");
    let (mut passed, mut failures) = (0usize, Vec::new());
    for function in ["posts-read", "posts-write", "auth-refresh", "upload-presign", "stripe-webhook"] {
        let cases = corpus::cases(function, &base, &bearer);
        let (ok, failed) = corpus::run(&bin_dir().join(function), &stack.env, &cases).await;
        println!("{function}: {ok}/{} hostile requests answered with a 4xx problem", cases.len());
        passed += ok;
        failures.extend(failed.into_iter().map(|f| format!("{function}: {f}")));
    }
    assert!(passed >= 130, "only {passed} corpus requests passed");
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
}
