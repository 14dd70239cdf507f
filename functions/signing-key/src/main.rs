//! Lambda entry point: the custom resource's state built once, then each CloudFormation request
//! answered by [`handle`] (the answer goes to CloudFormation's presigned URL).

use aws_lambda_events::cloudformation::CloudFormationCustomResourceRequest;
use lambda_runtime::LambdaEvent;
use signing_key::{KeyProperties, State, handle};

fn main() -> Result<(), lambda_runtime::Error> {
    shared::runtime::run_events(
        |state: &'static State,
         event: LambdaEvent<CloudFormationCustomResourceRequest<KeyProperties, KeyProperties>>| {
            handle(state, event.payload)
        },
    )
}
