//! stripe-webhook integration tests, one binary: signature checks and idempotent processing through the
//! handler (`webhook`), and 20 real processes racing one event (`processes`).

mod common;
mod processes;
mod webhook;
