//! Lambda entry point: build everything once, then serve invocations.

use shared::clients::{AwsClients, load_sdk_config};
use shared::config::{EnvReader, exit_on_error};
use stripe_webhook::handler::{State, handle};
use stripe_webhook::settings::Settings;

fn main() -> Result<(), lambda_http::Error> {
    // Current-thread unless Lambda runs several invocations at once here (shared::runtime).
    shared::runtime::block_on(async {
        shared::telemetry::init();
        let settings = exit_on_error(Settings::from_env(EnvReader::from_env()));
        let aws = AwsClients::new(&load_sdk_config().await, false);
        let state = State::new(&settings, &aws);
        shared::runtime::serve_http(&state, handle).await
    })
}
