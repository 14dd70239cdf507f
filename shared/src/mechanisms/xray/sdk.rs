//! The AWS SDK side: one interceptor, installed on every client by `clients::aws`, that sends the
//! invocation's trace header with each request and records each operation as a subsegment.
//!
//! An operation is timed from `read_before_execution` to `read_after_execution` (serialization,
//! signing, every attempt and the backoff between them, deserialization). The state between the
//! two hooks lives in the operation's own config bag, so concurrent operations never share it.
//! Smithy names the service and operation in the bag (`Metadata`, put there by the operation's
//! runtime plugin after the client's `read_before_execution`, so it is read at the end), along
//! with the client's `Region` and the attempt count (`RequestAttempts`). An operation whose future
//! is dropped before it ends (a caller's own timeout around it) never reaches the second hook and
//! sends nothing; the SDK's own timeouts do reach it, as faults.

use aws_sdk_dynamodb::config::Region;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextMut, FinalizerInterceptorContextRef,
    Input,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use http::HeaderValue;

use super::subsegment::{AwsCall, Outcome, Started, Subsegment};

/// The header AWS services read the trace from.
pub const TRACE_HEADER: &str = "x-amzn-trace-id";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sends the current invocation's trace header with every AWS request that has none (as the
/// SDK's recursion-detection interceptor does from `_X_AMZN_TRACE_ID`, which is no longer set),
/// and, when that invocation is sampled and the X-Ray daemon is there, sends one subsegment per
/// operation (`namespace: "aws"`, named after the service).
#[derive(Debug, Default)]
pub struct XrayInterceptor;

/// The per-operation state: when it started and which resource it names.
#[derive(Debug)]
struct SdkCall {
    started: Started,
    resource: AwsCall,
}

impl Storable for SdkCall {
    type Storer = StoreReplace<Self>;
}

impl Intercept for XrayInterceptor {
    fn name(&self) -> &'static str {
        "XrayInterceptor"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(started) = Started::now() {
            // The input is only available here: serialization consumes it.
            cfg.interceptor_state().store_put(SdkCall { started, resource: resource(context.input()) });
        }
        Ok(())
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let headers = context.request_mut().headers_mut();
        if headers.contains_key(TRACE_HEADER) {
            return Ok(());
        }
        // What Lambda sent is a valid header value; anything else is left out (`insert` would
        // panic on it), never an error of the AWS call.
        if let Some(trace) = super::current().filter(|t| HeaderValue::from_str(t).is_ok()) {
            headers.insert(TRACE_HEADER, trace);
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(call) = cfg.load::<SdkCall>() else { return Ok(()) };
        let metadata = cfg.load::<Metadata>();
        let response = context.response();
        let status = response.map(|r| r.status().as_u16());
        let failed = matches!(context.output_or_error(), Some(Err(_)) | None);
        let mut outcome = Outcome::of_status(status, response.is_some_and(throttled));
        if failed && outcome == Outcome::OK {
            // An answer that could not be read (a 2xx that did not deserialize).
            outcome = Outcome::FAULT;
        }
        let aws = AwsCall {
            operation: metadata.map(|m| m.name().to_owned()).unwrap_or_default(),
            region: cfg.load::<Region>().map(ToString::to_string),
            request_id: response.and_then(request_id).map(str::to_owned),
            retries: cfg.load::<RequestAttempts>().map_or(0, |a| a.attempts().saturating_sub(1)),
            ..call.resource.clone()
        };
        let name = metadata.map_or("AWS", Metadata::service).to_owned();
        let subsegment = Subsegment {
            name: name.into(),
            namespace: "aws",
            aws: Some(aws),
            http_status: status,
            outcome,
            metadata: None,
        };
        call.started.finish(&subsegment);
        Ok(())
    }
}

/// The service's id of the request: `x-amzn-requestid` (JSON and query protocols) or
/// `x-amz-request-id` (S3).
fn request_id(response: &HttpResponse) -> Option<&str> {
    let headers = response.headers();
    headers.get("x-amzn-requestid").or_else(|| headers.get("x-amz-request-id"))
}

/// Error codes that mean "slow down", as the services spell them in the error's code.
const THROTTLING_CODES: &[&[u8]] =
    &[b"Throttl", b"ProvisionedThroughputExceeded", b"RequestLimitExceeded", b"TooManyRequests", b"SlowDown"];

/// Whether an error response says it was throttled: its error-type header or the start of its
/// body (already read into memory by then) names a throttling code. 429 is handled by status.
fn throttled(response: &HttpResponse) -> bool {
    if response.status().as_u16() < 400 {
        return false;
    }
    let header = response.headers().get("x-amzn-errortype").or_else(|| response.headers().get("x-amzn-query-error"));
    let body = response.body().bytes().map(|b| &b[..b.len().min(1024)]);
    [header.map(str::as_bytes), body].into_iter().flatten().any(names_throttling)
}

fn names_throttling(text: &[u8]) -> bool {
    THROTTLING_CODES.iter().any(|code| text.windows(code.len()).any(|w| w == *code))
}

/// The table, bucket or queue the operation's input names, for the operations the bundle uses
/// (a type check each; other operations name none).
fn resource(input: &Input) -> AwsCall {
    use aws_sdk_dynamodb::operation as ddb;
    use aws_sdk_s3::operation as s3;
    use aws_sdk_sqs::operation as sqs;
    let owned = |name: Option<&str>| name.map(str::to_owned);
    macro_rules! named_by {
        ($field:ident <- $accessor:ident: $($ty:ty),+) => {
            $(if let Some(input) = input.downcast_ref::<$ty>() {
                return AwsCall { $field: owned(input.$accessor()), ..AwsCall::default() };
            })+
        };
    }
    named_by!(table_name <- table_name:
        ddb::get_item::GetItemInput, ddb::put_item::PutItemInput, ddb::update_item::UpdateItemInput,
        ddb::delete_item::DeleteItemInput, ddb::query::QueryInput);
    named_by!(bucket_name <- bucket:
        s3::get_object::GetObjectInput, s3::put_object::PutObjectInput, s3::head_object::HeadObjectInput,
        s3::delete_object::DeleteObjectInput, s3::copy_object::CopyObjectInput);
    named_by!(queue_url <- queue_url:
        sqs::send_message::SendMessageInput, sqs::receive_message::ReceiveMessageInput,
        sqs::delete_message::DeleteMessageInput);
    AwsCall::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::body::SdkBody;

    fn response(status: u16, headers: &[(&'static str, &'static str)], body: &'static str) -> HttpResponse {
        let mut response = HttpResponse::new(status.try_into().unwrap(), SdkBody::from(body));
        for (name, value) in headers {
            response.headers_mut().insert(*name, *value);
        }
        response
    }

    #[test]
    fn throttling_is_read_from_the_error_code() {
        let dynamo = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}"#;
        assert!(throttled(&response(400, &[], dynamo)));
        assert!(throttled(&response(400, &[("x-amzn-errortype", "ThrottlingException:http://")], "")));
        assert!(throttled(&response(503, &[], "<Error><Code>SlowDown</Code></Error>")));
        assert!(!throttled(&response(400, &[], r#"{"__type":"ConditionalCheckFailedException"}"#)));
        assert!(!throttled(&response(200, &[], "Throttling is a word in this item")));
    }

    #[test]
    fn the_request_id_is_either_header() {
        assert_eq!(request_id(&response(200, &[("x-amzn-RequestId", "A1")], "")), Some("A1"));
        assert_eq!(request_id(&response(200, &[("x-amz-request-id", "S3")], "")), Some("S3"));
        assert_eq!(request_id(&response(200, &[], "")), None);
    }

    #[test]
    fn the_resource_is_read_from_the_input() {
        let get = aws_sdk_dynamodb::operation::get_item::GetItemInput::builder().table_name("posts").build().unwrap();
        assert_eq!(resource(&Input::erase(get)).table_name.as_deref(), Some("posts"));
        let put = aws_sdk_s3::operation::put_object::PutObjectInput::builder().bucket("uploads").build().unwrap();
        assert_eq!(resource(&Input::erase(put)).bucket_name.as_deref(), Some("uploads"));
        let other = aws_sdk_sqs::operation::get_queue_url::GetQueueUrlInput::builder().queue_name("q").build().unwrap();
        assert_eq!(resource(&Input::erase(other)), AwsCall::default());
    }
}
