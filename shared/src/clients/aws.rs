//! One `aws_config` load shared by every AWS client.
//!
//! Endpoints are the SDK's own business: `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` point
//! the clients at moto locally, and are unset in AWS. The only extra knob is S3 path-style
//! addressing, which S3-compatible stores (moto, MinIO, Cloudflare R2 with some setups) need.

use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig, timeout::TimeoutConfig};

/// Timeouts far below any function timeout, so a slow AWS call surfaces as an error the handler
/// can map, not as a Lambda timeout with nothing in the log.
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build()
}

/// Loads region, credentials and endpoints from the environment, once.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts()).load().await
}

/// The AWS clients a function may use; each is cheap to clone (an `Arc` inside).
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sesv2: aws_sdk_sesv2::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl AwsClients {
    /// Builds every client from one `SdkConfig`. Building a client does no I/O.
    pub fn new(sdk: &SdkConfig, s3_force_path_style: bool) -> Self {
        let s3_config = aws_sdk_s3::config::Builder::from(sdk).force_path_style(s3_force_path_style).build();
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sesv2: aws_sdk_sesv2::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
        }
    }
}
