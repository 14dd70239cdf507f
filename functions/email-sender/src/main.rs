//! Lambda entry point: settings and state built once ([`State`]'s `Function` impl), then
//! every SQS batch served by [`handle`] before the invocation's deadline.

use aws_lambda_events::sqs::SqsEvent;
use email_sender::handler::{State, handle};
use lambda_runtime::LambdaEvent;
use shared::deadline::Deadline;

fn main() -> Result<(), lambda_runtime::Error> {
    shared::runtime::run_events(|state: &'static State, event: LambdaEvent<SqsEvent>| {
        handle(state, event.payload, Deadline::from_epoch_ms(event.context.deadline))
    })
}
