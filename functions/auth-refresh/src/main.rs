//! Lambda entry point: build everything once, then serve invocations.

use auth_refresh::handler::{State, handle};
use auth_refresh::settings::Settings;
use shared::config::{EnvReader, exit_on_error};

fn main() -> Result<(), lambda_http::Error> {
    // Current-thread unless Lambda runs several invocations at once here (shared::runtime).
    shared::runtime::block_on(async {
        shared::telemetry::init();
        let settings = exit_on_error(Settings::from_env(EnvReader::from_env()));
        let state = State::new(&settings)?;
        shared::runtime::serve_http(&state, handle).await
    })
}
