//! stripe-webhook: `POST /` on a Lambda Function URL. Verifies Stripe's signature over the raw body,
//! then applies each event's effects exactly once (idempotency records in DynamoDB): an order paid
//! and its confirmation email queued, or a subscription canceled.

pub mod error;
pub mod handler;
pub mod settings;
