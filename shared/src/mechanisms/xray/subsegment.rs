//! One downstream call as an X-Ray subsegment: timed from [`Started::now`] to
//! [`Started::finish`], then sent to the daemon as an independent subsegment document (`type`,
//! `trace_id`, `parent_id`), which X-Ray attaches to the function's segment.

use std::borrow::Cow;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::daemon::{Daemon, daemon};
use super::header::{Parent, TraceHeader};

/// How a call ended, as X-Ray's flags say it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// A client error (4xx, a refused command).
    pub error: bool,
    /// A server error, a timeout, no answer at all.
    pub fault: bool,
    /// Throttled (429, a throttling error code); comes with `error` or `fault`.
    pub throttle: bool,
}

impl Outcome {
    /// A call that succeeded.
    pub const OK: Self = Self { error: false, fault: false, throttle: false };
    /// A call that got no usable answer (connect failure, timeout, 5xx).
    pub const FAULT: Self = Self { error: false, fault: true, throttle: false };
    /// A call the other side refused (4xx, a command error).
    pub const ERROR: Self = Self { error: true, fault: false, throttle: false };

    /// The outcome of an HTTP status (`None`: no response arrived, a fault); `throttled` when the
    /// answer said so (429 is throttling by itself).
    pub fn of_status(status: Option<u16>, throttled: bool) -> Self {
        match status {
            None => Self::FAULT,
            Some(s) if s >= 500 => Self { throttle: throttled, ..Self::FAULT },
            Some(s) if s >= 400 => Self { throttle: throttled || s == 429, ..Self::ERROR },
            Some(_) => Self::OK,
        }
    }
}

/// The `aws` object of an AWS SDK call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AwsCall {
    /// The operation's name (`GetItem`).
    pub operation: String,
    /// The client's region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The service's id of the request (`x-amzn-requestid` / `x-amz-request-id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Attempts after the first.
    pub retries: u32,
    /// DynamoDB: the table of a single-table operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_name: Option<String>,
    /// S3: the bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    /// SQS: the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
}

/// What a subsegment says about its call, beyond ids and times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subsegment {
    /// The downstream service (`DynamoDB`, `S3`, `ElastiCache`).
    pub name: Cow<'static, str>,
    /// `aws` for AWS services (X-Ray then draws them as their service), `remote` for others.
    pub namespace: &'static str,
    /// The `aws` object, for an AWS SDK call.
    pub aws: Option<AwsCall>,
    /// The HTTP status of the (last) response, if there was one.
    pub http_status: Option<u16>,
    /// How it ended.
    pub outcome: Outcome,
    /// Free-form `metadata` (not indexed), e.g. `{"redis": {"command": "GET"}}`.
    pub metadata: Option<serde_json::Value>,
}

impl Subsegment {
    /// A subsegment named `name` in the `remote` namespace, succeeded, with nothing else.
    pub fn remote(name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            name: name.into(),
            namespace: "remote",
            aws: None,
            http_status: None,
            outcome: Outcome::OK,
            metadata: None,
        }
    }
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    trace_id: &'a str,
    parent_id: &'a str,
    name: &'a str,
    namespace: &'static str,
    start_time: f64,
    end_time: f64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    error: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    fault: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    throttle: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    aws: Option<&'a AwsCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<Http>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
struct Http {
    response: HttpResponse,
}

#[derive(Serialize)]
struct HttpResponse {
    status: u16,
}

/// A call being timed for a subsegment of the current, sampled invocation.
#[derive(Clone, Debug)]
pub struct Started {
    parent: Parent,
    /// Epoch seconds at the start.
    start_time: f64,
    start: Instant,
    daemon: &'static Daemon,
}

impl Started {
    /// Starts timing a call, if it will be recorded: a daemon is configured
    /// (`AWS_XRAY_DAEMON_ADDRESS`), the call runs inside an invocation, and that invocation's
    /// trace is sampled. Otherwise `None`, and the call costs nothing more: without a daemon this
    /// is one check of a value read once per process.
    pub fn now() -> Option<Self> {
        let daemon = daemon()?;
        let parent = super::with_current(|header| TraceHeader::parse(header).sampled_parent())??;
        Some(Self { parent, start_time: epoch_seconds(SystemTime::now()), start: Instant::now(), daemon })
    }

    /// Ends the call now and sends its subsegment (never waits, never fails).
    pub fn finish(&self, subsegment: &Subsegment) {
        let end_time = self.start_time + self.start.elapsed().as_secs_f64();
        let document = document(&self.parent, &new_id(), self.start_time, end_time, subsegment);
        self.daemon.send(&document);
    }
}

/// The subsegment document (JSON) of `subsegment` under `parent`.
pub fn document(parent: &Parent, id: &str, start_time: f64, end_time: f64, subsegment: &Subsegment) -> Vec<u8> {
    let document = Document {
        kind: "subsegment",
        id,
        trace_id: &parent.trace_id,
        parent_id: &parent.parent_id,
        name: &subsegment.name,
        namespace: subsegment.namespace,
        start_time,
        end_time,
        error: subsegment.outcome.error,
        fault: subsegment.outcome.fault,
        throttle: subsegment.outcome.throttle,
        aws: subsegment.aws.as_ref(),
        http: subsegment.http_status.map(|status| Http { response: HttpResponse { status } }),
        metadata: subsegment.metadata.as_ref(),
    };
    // Serializing plain fields into memory cannot fail.
    serde_json::to_vec(&document).unwrap_or_default()
}

/// A new subsegment id: 64 random bits in 16 hex digits.
pub fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn epoch_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parent() -> Parent {
        Parent { trace_id: "1-5759e988-bd862e3fe1be46a994272793".into(), parent_id: "53995c3f42cd8ad8".into() }
    }

    #[test]
    fn an_aws_call_is_a_complete_independent_subsegment() {
        let subsegment = Subsegment {
            name: "DynamoDB".into(),
            namespace: "aws",
            aws: Some(AwsCall {
                operation: "GetItem".into(),
                region: Some("eu-west-1".into()),
                request_id: Some("R1".into()),
                retries: 1,
                table_name: Some("posts".into()),
                ..AwsCall::default()
            }),
            http_status: Some(200),
            outcome: Outcome::OK,
            metadata: None,
        };
        let document: Value =
            serde_json::from_slice(&document(&parent(), "70de5b6f19ff9a0a", 1.5, 1.75, &subsegment)).unwrap();
        assert_eq!(
            document,
            json!({
                "type": "subsegment",
                "id": "70de5b6f19ff9a0a",
                "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
                "parent_id": "53995c3f42cd8ad8",
                "name": "DynamoDB",
                "namespace": "aws",
                "start_time": 1.5,
                "end_time": 1.75,
                "aws": {"operation": "GetItem", "region": "eu-west-1", "request_id": "R1", "retries": 1, "table_name": "posts"},
                "http": {"response": {"status": 200}},
            })
        );
    }

    #[test]
    fn a_failed_remote_call_carries_its_flags_and_metadata() {
        let subsegment = Subsegment {
            outcome: Outcome::FAULT,
            metadata: Some(json!({"redis": {"command": "GET"}})),
            ..Subsegment::remote("ElastiCache")
        };
        let document: Value =
            serde_json::from_slice(&document(&parent(), "0000000000000001", 2.0, 2.0, &subsegment)).unwrap();
        assert_eq!(document["namespace"], "remote");
        assert_eq!(document["fault"], true);
        assert_eq!(document.get("error"), None);
        assert_eq!(document.get("aws"), None);
        assert_eq!(document.get("http"), None);
        assert_eq!(document["metadata"]["redis"]["command"], "GET");
    }

    #[test]
    fn statuses_map_to_xrays_flags() {
        assert_eq!(Outcome::of_status(Some(200), false), Outcome::OK);
        assert_eq!(Outcome::of_status(Some(404), false), Outcome::ERROR);
        assert_eq!(Outcome::of_status(Some(429), false), Outcome { throttle: true, ..Outcome::ERROR });
        assert_eq!(Outcome::of_status(Some(400), true), Outcome { throttle: true, ..Outcome::ERROR });
        assert_eq!(Outcome::of_status(Some(503), true), Outcome { throttle: true, ..Outcome::FAULT });
        assert_eq!(Outcome::of_status(Some(500), false), Outcome::FAULT);
        assert_eq!(Outcome::of_status(None, false), Outcome::FAULT);
    }

    #[test]
    fn ids_are_16_hex_digits_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert!(a.len() == 16 && a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn nothing_is_timed_outside_a_sampled_invocation() {
        // Whether or not this process has a daemon, these never record.
        assert!(Started::now().is_none());
        let unsampled = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0";
        assert!(super::super::scope(Some(unsampled.into()), async { Started::now() }).await.is_none());
        assert!(super::super::scope(None, async { Started::now() }).await.is_none());
    }
}
