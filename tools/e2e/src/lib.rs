//! The end-to-end checks `make test` gates on, as cargo tests, so `cargo nextest run` runs them:
//! every sample event in `events/` through the real binaries under a local Runtime API
//! (`tests/events.rs`), the bad-input corpus against every HTTP function (`tests/corpus.rs`), and
//! each function's route table against `template.yaml` and the `cargo lambda watch` router
//! (`tests/routes.rs`).
//!
//! They run against the local stack that `make test` started (`BUNDLE_STACK_ENV` names its
//! dotenv file), or, when run on their own, against one they start and stop themselves.

pub mod corpus;
pub mod stack;
