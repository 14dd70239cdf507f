//! X-Ray subsegments from the real posts-read bootstrap under the local Runtime API: the test
//! binds a UDP socket on loopback as the X-Ray daemon's receiving end and points the function at
//! it with `AWS_XRAY_DAEMON_ADDRESS`, as Lambda does with active tracing on.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::ORIGIN;
use posts_read::settings::Settings;
use serde_json::Value;
use shared::clock::timestamp_now;
use shared::config::FromEnv;
use shared::posts::{Post, PostId, PostsRepo, post_key};
use shared::xray::TraceHeader;
use testkit::RedisServer;
use tokio::net::UdpSocket;

const DATAGRAM_HEADER: &str = "{\"format\":\"json\",\"version\":1}\n";

/// `GET /posts/{id}` as an HTTP API (payload 2.0) event.
fn get_post_event(id: &str) -> Value {
    let path = format!("/posts/{id}");
    serde_json::json!({
        "version": "2.0",
        "routeKey": "GET /posts/{id}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"accept": "application/json", "origin": ORIGIN, "host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "pathParameters": {"id": id},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "test"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "routeKey": "GET /posts/{id}", "stage": "$default",
            "time": "26/Nov/2026:12:00:00 +0000", "timeEpoch": 1795694400000u64
        },
        "isBase64Encoded": false
    })
}

/// Every document that arrives until the socket has been quiet for `quiet`, checked to be one
/// daemon datagram each (the header line, then one JSON document).
async fn receive_until_quiet(daemon: &UdpSocket, quiet: Duration) -> Vec<Value> {
    let mut documents = Vec::new();
    let mut buffer = vec![0; 65_536];
    while let Ok(received) = tokio::time::timeout(quiet, daemon.recv(&mut buffer)).await {
        let n = received.expect("recv");
        let datagram = std::str::from_utf8(&buffer[..n]).expect("UTF-8");
        let document = datagram.strip_prefix(DATAGRAM_HEADER).unwrap_or_else(|| panic!("no header: {datagram}"));
        documents.push(serde_json::from_str(document).unwrap_or_else(|e| panic!("{e}: {document}")));
    }
    documents
}

/// A sampled posts-read cache miss (its Redis key deleted first) records a DynamoDB `GetItem`
/// subsegment and the Redis round trips as subsegments, all under the invocation's trace id and
/// parent id; the same miss unsampled (`Sampled=0`, the harness's default) sends nothing.
#[tokio::test]
async fn a_sampled_cache_miss_sends_dynamodb_and_redis_subsegments_and_an_unsampled_one_nothing() {
    let redis = RedisServer::start();
    let provisioned = testkit::provision(&[
        ("REDIS_URL", &redis.url()),
        ("REDIS_CLUSTER", "false"),
        ("ALLOWED_ORIGINS", ORIGIN),
        ("POSTS_CURSOR_SECRET", "test-only-posts-cursor-secret-0123456789"),
    ]);
    let env: HashMap<String, String> = provisioned.env("posts-read");
    let settings = Settings::from_env(testkit::env_reader(env.clone())).expect("settings");
    let table = settings.posts.table.clone();
    let repo = PostsRepo::new(testkit::aws_clients().await.dynamodb().clone(), &table);
    let id = PostId::parse("traced-1").unwrap();
    let now = timestamp_now();
    let post = Post {
        id: id.clone(),
        title: "traced".into(),
        body: "body".into(),
        author_id: "user-1".into(),
        published: true,
        created_at: now.clone(),
        updated_at: now,
        version: 1,
    };
    repo.put(&post).await.unwrap();

    let daemon = UdpSocket::bind("127.0.0.1:0").await.expect("bind the daemon's socket");
    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.extend(
        [
            ("AWS_ENDPOINT_URL", testkit::aws_endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_XRAY_DAEMON_ADDRESS", daemon.local_addr().unwrap().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let options = lambda_harness::SpawnOptions { env, ..Default::default() };
    let function = lambda_harness::Function::start(env!("CARGO_BIN_EXE_posts-read"), &options).await.expect("spawn");
    if let Err(e) = function.wait_ready(Duration::from_secs(60)).await {
        panic!("init failed: {e}\n{}", function.logs());
    }
    // Init's calls (if any) ran outside an invocation: nothing may have arrived from them.
    assert_eq!(receive_until_quiet(&daemon, Duration::from_millis(300)).await, Vec::<Value>::new());

    // Sampled: a miss reads DynamoDB and fills the cache.
    function.api().set_sampled(true);
    redis.cli(&["DEL", &post_key(&id)]);
    let answer = function.invoke(&get_post_event(id.as_str()), Duration::from_secs(30)).await.expect("invoke");
    assert_eq!(answer.status_code(), Some(200), "{:?}\n{}", answer.json(), function.logs());
    let header = TraceHeader::parse(&answer.trace_id);
    assert_eq!(header.sampled, Some(true), "{}", answer.trace_id);
    let (root, parent) = (header.root.unwrap(), header.parent.unwrap());
    let documents = receive_until_quiet(&daemon, Duration::from_millis(1000)).await;
    for document in &documents {
        assert_eq!(document["type"], "subsegment", "{document}");
        assert_eq!(document["trace_id"], root, "{document}");
        assert_eq!(document["parent_id"], parent, "{document}");
        let id = document["id"].as_str().unwrap_or_default();
        assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{document}");
        let (start, end) = (document["start_time"].as_f64().unwrap(), document["end_time"].as_f64().unwrap());
        assert!(end >= start && start > 1.7e9, "{document}");
        for flag in ["error", "fault", "throttle"] {
            assert_eq!(document.get(flag), None, "a successful call has no {flag}: {document}");
        }
    }
    let get_item = documents
        .iter()
        .find(|d| d["name"] == "DynamoDB" && d["aws"]["operation"] == "GetItem")
        .unwrap_or_else(|| panic!("no DynamoDB GetItem subsegment in {documents:#?}"));
    assert_eq!(get_item["namespace"], "aws");
    assert_eq!(get_item["aws"]["table_name"], table.as_str());
    assert_eq!(get_item["aws"]["region"], "us-east-1");
    assert_eq!(get_item["aws"]["retries"], 0);
    assert_eq!(get_item["http"]["response"]["status"], 200);
    assert!(get_item["aws"]["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{get_item}");
    // The cache lookup before the read, the fill after it.
    let redis_trips: Vec<&Value> = documents.iter().filter(|d| d["name"] == "ElastiCache").collect();
    assert!(redis_trips.iter().all(|d| d["namespace"] == "remote"), "{redis_trips:#?}");
    let time = |d: &Value, field: &str| d[field].as_f64().unwrap();
    assert!(
        redis_trips.iter().any(|d| time(d, "end_time") <= time(get_item, "start_time")),
        "no Redis round trip before GetItem: {documents:#?}"
    );
    assert!(
        redis_trips.iter().any(|d| time(d, "start_time") >= time(get_item, "end_time")),
        "no Redis round trip after GetItem: {documents:#?}"
    );

    // Not sampled: the same miss sends nothing.
    function.api().set_sampled(false);
    redis.cli(&["DEL", &post_key(&id)]);
    let answer = function.invoke(&get_post_event(id.as_str()), Duration::from_secs(30)).await.expect("invoke");
    assert_eq!(answer.status_code(), Some(200));
    assert_eq!(TraceHeader::parse(&answer.trace_id).sampled, Some(false));
    assert_eq!(receive_until_quiet(&daemon, Duration::from_millis(1000)).await, Vec::<Value>::new());

    let report = function.stop().await;
    assert!(!report.logs.contains("panicked"), "{}", report.logs);
    assert!(!report.logs.contains("X-Ray daemon"), "no send failed: {}", report.logs);
}
