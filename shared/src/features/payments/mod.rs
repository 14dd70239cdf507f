//! Payments: Stripe webhook signature verification and the events we handle ([`stripe`]), the
//! orders and subscriptions those events change ([`orders`]), and the refusals every caller
//! agrees on (`problem.rs`, as problem+json). Which failures Stripe should retry is the webhook's own policy.

pub mod orders;
mod problem;
pub mod stripe;

pub use orders::*;
pub use stripe::*;
