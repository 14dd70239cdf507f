//! Lambda entry point: build everything once, then serve invocations.

use std::convert::Infallible;

use aws_lambda_events::sqs::SqsEvent;
use email_sender::handler::{State, handle};
use email_sender::settings::Settings;
use lambda_runtime::{LambdaEvent, service_fn};
use shared::clients::{AwsClients, load_sdk_config};
use shared::config::{EnvReader, exit_on_error};
use shared::deadline::Deadline;

fn main() -> Result<(), lambda_runtime::Error> {
    // Current-thread unless Lambda runs several invocations at once here (shared::runtime).
    shared::runtime::block_on(async {
        shared::telemetry::init();
        let settings = exit_on_error(Settings::from_env(EnvReader::from_env()));
        let aws = AwsClients::new(&load_sdk_config().await, false);
        let state = State::new(&settings, &aws)?;
        let state = &state;
        lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
            let deadline = Deadline::from_epoch_ms(event.context.deadline);
            Ok::<_, Infallible>(handle(state, event.payload, deadline).await)
        }))
        .await
    })
}
