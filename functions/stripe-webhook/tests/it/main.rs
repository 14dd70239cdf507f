//! stripe-webhook integration tests, one binary: signature checks and idempotent processing through the
//! handler (`webhook`), 20 real processes racing one event (`processes`), and thin events fetched from a
//! local Stripe API with payload validation (`thin`).

mod common;
mod processes;
mod thin;
mod webhook;
