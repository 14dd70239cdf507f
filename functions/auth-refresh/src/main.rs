//! Lambda entry point: build everything once, then serve invocations.

use std::convert::Infallible;

use auth_refresh::handler::{State, handle};
use auth_refresh::settings::Settings;
use lambda_http::{Request, service_fn};
use shared::config::{EnvReader, exit_on_error};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let settings = exit_on_error(Settings::from_env(EnvReader::from_env()));
    let state = State::new(&settings)?;
    let state = &state;
    lambda_http::run(service_fn(move |req: Request| async move { Ok::<_, Infallible>(handle(state, req).await) })).await
}
