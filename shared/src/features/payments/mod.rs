//! Payments: Stripe webhook signature verification and the events we handle ([`stripe`]), thin
//! event notifications and the API reads they need ([`thin`]), the
//! orders and subscriptions those events change ([`orders`]), and the refusals every caller
//! agrees on (`problem.rs`, as problem+json). Which failures Stripe should retry is the webhook's own policy.

pub mod orders;
mod problem;
pub mod stripe;
pub mod thin;

pub use orders::*;
pub use stripe::*;
pub use thin::*;
