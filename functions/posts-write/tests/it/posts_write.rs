//! posts-write against a real redis-server and moto's DynamoDB, read back through posts-read:
//! writes are visible on the next read, the author rule, conditional writes, the stale-fill race
//! and the stampede guard.

use shared::config::FromEnv;
use std::collections::HashMap;
use std::sync::Arc;

use crate::common;
use lambda_http::{Body, Response};
use serde_json::{Value, json};
use shared::auth::AccessTokenSigner;
use shared::cache::{Cache, CacheSettings, CacheStatus};
use shared::clients::{RedisSettings, RedisStore};
use shared::clock::timestamp_now;
use shared::config::EnvReader;
use shared::deadline::Deadline;
use shared::posts::{CachedPosts, LIST_GENERATION_KEY, POST_TTLS, post_key};
use shared::posts::{Post, PostId, PostsRepo};
use testkit::http::{ids, json as json_of};
use testkit::{Provisioned, RedisServer};

struct Fixture {
    write: posts_write::handler::State,
    read: posts_read::handler::State,
    env: HashMap<String, String>,
    tokens: AccessTokenSigner,
    repo: PostsRepo,
    redis: RedisServer,
    _provisioned: Provisioned,
}

async fn fixture() -> Fixture {
    fixture_on(&testkit::aws_endpoint()).await
}

/// A fixture whose AWS calls go to `endpoint` (for example a [`testkit::SerialMoto`]).
async fn fixture_on(endpoint: &str) -> Fixture {
    let redis = RedisServer::start();
    let provisioned = testkit::provision_at(
        endpoint,
        &[
            ("REDIS_URL", &redis.url()),
            ("REDIS_CLUSTER", "false"),
            ("JWT_PUBLIC_KEYS", &testkit::test_public_keys()),
            ("POSTS_CURSOR_SECRET", "test-only-posts-cursor-secret-0123456789"),
        ],
    );
    let env = provisioned.env("posts-write");
    let aws = testkit::aws_clients_at(endpoint).await;
    let write_settings = posts_write::settings::Settings::from_env(testkit::env_reader(env.clone())).unwrap();
    let read_settings =
        posts_read::settings::Settings::from_env(testkit::env_reader(provisioned.env("posts-read"))).unwrap();
    let tokens = testkit::test_signer();
    Fixture {
        write: posts_write::handler::State::new(&write_settings, &aws).unwrap(),
        read: posts_read::handler::State::new(&read_settings, &aws).unwrap(),
        repo: PostsRepo::new(aws.dynamodb().clone(), &write_settings.posts.table),
        env,
        tokens,
        redis,
        _provisioned: provisioned,
    }
}

impl Fixture {
    fn bearer(&self, user: &str) -> String {
        common::bearer(&self.tokens, user)
    }

    async fn send(&self, method: &str, uri: &str, user: Option<&str>, body: Option<Value>) -> Response<Body> {
        let bearer = user.map(|u| self.bearer(u));
        posts_write::handler::handle(&self.write, common::request(method, uri, bearer.as_deref(), body)).await
    }

    async fn read(&self, uri: &str) -> Response<Body> {
        common::read(&self.read, uri).await
    }

    async fn create(&self, user: &str, title: &str) -> Value {
        let r = self
            .send("POST", "/posts", Some(user), Some(json!({"title": title, "body": "b", "published": true})))
            .await;
        assert_eq!(r.status(), 201);
        json_of(&r)
    }
}

#[tokio::test]
async fn create_returns_201_with_location_and_appears_on_page_one_at_once() {
    let f = fixture().await;
    let first = f.create("user-1", "first").await;
    // Cache page 1 (miss, then hit), then create: the next read of page 1 must show the new post.
    assert_eq!(f.read("/posts").await.headers()["x-cache"], "miss");
    assert_eq!(f.read("/posts").await.headers()["x-cache"], "hit");

    let r = f
        .send("POST", "/posts", Some("user-1"), Some(json!({"title": "second", "body": "b", "published": true})))
        .await;
    assert_eq!(r.status(), 201);
    let second = json_of(&r);
    assert_eq!(r.headers()["location"], format!("/posts/{}", second["id"].as_str().unwrap()));
    assert_eq!(r.headers()["etag"], "\"1\"");
    assert_eq!(second["authorId"], "user-1");

    let page = json_of(&f.read("/posts").await);
    assert_eq!(ids(&page), [second["id"].as_str().unwrap(), first["id"].as_str().unwrap()]);
}

#[tokio::test]
async fn update_and_delete_are_visible_on_the_next_read() {
    let f = fixture().await;
    let post = f.create("user-1", "before").await;
    let uri = format!("/posts/{}", post["id"].as_str().unwrap());
    assert_eq!(f.read(&uri).await.headers()["x-cache"], "miss");
    assert_eq!(f.read(&uri).await.headers()["x-cache"], "hit");

    let r = f.send("PATCH", &uri, Some("user-1"), Some(json!({"title": "after"}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(&r)["version"], 2);
    assert_eq!(json_of(&f.read(&uri).await)["title"], "after");

    // Unpublishing removes it from the list and from single reads.
    let r = f.send("PATCH", &uri, Some("user-1"), Some(json!({"published": false}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(f.read(&uri).await.status(), 404);
    assert!(ids(&json_of(&f.read("/posts").await)).is_empty());

    let r = f.send("DELETE", &uri, Some("user-1"), None).await;
    assert_eq!(r.status(), 204);
    assert_eq!(f.read(&uri).await.status(), 404);
    assert!(f.repo.get(&PostId::parse(post["id"].as_str().unwrap()).unwrap()).await.unwrap().is_none());
    assert_eq!(f.send("DELETE", &uri, Some("user-1"), None).await.status(), 404);
}

#[tokio::test]
async fn only_the_author_may_change_or_delete() {
    let f = fixture().await;
    let post = f.create("user-1", "mine").await;
    let uri = format!("/posts/{}", post["id"].as_str().unwrap());
    let r = f.send("PATCH", &uri, Some("user-2"), Some(json!({"title": "theirs"}))).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(f.send("DELETE", &uri, Some("user-2"), None).await.status(), 403);
    assert_eq!(json_of(&f.read(&uri).await)["title"], "mine");
}

#[tokio::test]
async fn bad_input_gets_precise_problems() {
    let f = fixture().await;
    let r = f.send("POST", "/posts", Some("u"), Some(json!({"title": "", "body": 1, "extra": true}))).await;
    assert_eq!(r.status(), 400);
    let fields: Vec<_> =
        json_of(&r)["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_owned()).collect();
    assert_eq!(fields, ["extra", "title", "body"]);

    assert_eq!(f.send("POST", "/posts", None, Some(json!({"title": "t", "body": "b"}))).await.status(), 401);
    let r = f
        .send(
            "POST",
            "/posts",
            Some("u"),
            Some(json!({"title": "t", "body": "x".repeat(shared::posts::BODY_MAX_BYTES + 1)})),
        )
        .await;
    assert_eq!(r.status(), 400, "over 50 KB of body text is a field error");
    let r = f.send("POST", "/posts", Some("u"), Some(json!({"title": "t", "body": "x".repeat(70 * 1024)}))).await;
    assert_eq!(r.status(), 413, "over the request limit");

    let req = http::Request::builder()
        .method("POST")
        .uri("/posts")
        .header("authorization", f.bearer("u"))
        .header("content-type", "text/plain")
        .body(Body::Text("{}".into()))
        .unwrap();
    assert_eq!(posts_write::handler::handle(&f.write, req).await.status(), 415);
    let req = http::Request::builder()
        .method("POST")
        .uri("/posts")
        .header("authorization", f.bearer("u"))
        .header("content-type", "application/json")
        .body(Body::Text("{\"title\": ".into()))
        .unwrap();
    let r = posts_write::handler::handle(&f.write, req).await;
    assert_eq!((r.status().as_u16(), json_of(&r)["type"].as_str()), (400, Some("/problems/invalid-body")));
    let r = f.send("PATCH", "/posts/..%2Fx", Some("u"), Some(json!({"title": "t"}))).await;
    assert_eq!(r.status(), 400);

    // Bidi overrides and zero-width characters, in titles and bodies, on create and on update.
    let r = f.send("POST", "/posts", Some("u"), Some(json!({"title": "txt.exe\u{202E}", "body": "a\u{200B}b"}))).await;
    assert_eq!(r.status(), 400);
    let errors = json_of(&r)["errors"].clone();
    assert_eq!(errors[0]["field"], "title");
    assert!(errors[0]["message"].as_str().unwrap().contains("U+202E at character 8"), "{errors}");
    assert_eq!(errors[1]["field"], "body");
    assert!(errors[1]["message"].as_str().unwrap().contains("U+200B"), "{errors}");
    let post = f.create("u", "clean").await;
    let uri = format!("/posts/{}", post["id"].as_str().unwrap());
    let r = f.send("PATCH", &uri, Some("u"), Some(json!({"title": "\u{2067}flip"}))).await;
    assert_eq!((r.status().as_u16(), json_of(&r)["errors"][0]["field"].as_str()), (400, Some("title")));
}

fn generation(redis: &RedisServer) -> u64 {
    redis.cli(&["GET", LIST_GENERATION_KEY]).trim().trim_matches('"').parse().unwrap_or(0)
}

/// A write that changes the list bumps the generation twice: right after the write, and again
/// once the index shows it (so a page cached from the lagging index in between is dropped). A
/// draft's edit changes no list and only bumps once.
#[tokio::test]
async fn list_writes_bump_the_generation_again_once_the_index_shows_them() {
    let f = fixture().await;
    let before = generation(&f.redis);
    let post = f.create("user-1", "listed").await;
    assert_eq!(generation(&f.redis), before + 2);
    let uri = format!("/posts/{}", post["id"].as_str().unwrap());
    assert_eq!(f.send("PATCH", &uri, Some("user-1"), Some(json!({"published": false}))).await.status(), 200);
    assert_eq!(generation(&f.redis), before + 4, "unpublishing changes the list");
    assert_eq!(f.send("PATCH", &uri, Some("user-1"), Some(json!({"body": "draft edit"}))).await.status(), 200);
    assert_eq!(generation(&f.redis), before + 5, "a draft edit changes no list");
    assert_eq!(f.send("PATCH", &uri, Some("user-1"), Some(json!({"published": true}))).await.status(), 200);
    assert_eq!(f.send("DELETE", &uri, Some("user-1"), None).await.status(), 204);
    assert_eq!(generation(&f.redis), before + 9);
}

/// The read-back a write waits for: the index shows a post only when it is published there at
/// the written version or later, and shows it absent only when it is gone from the index.
#[tokio::test]
async fn the_index_read_back_tells_a_caught_up_index_from_a_lagging_one() {
    let f = fixture().await;
    let now = timestamp_now();
    let mut post = Post {
        id: PostId::parse("indexed").unwrap(),
        title: "t".into(),
        body: "b".into(),
        author_id: "user-1".into(),
        published: false,
        created_at: now.clone(),
        updated_at: now.clone(),
        version: 1,
    };
    f.repo.put(&post).await.unwrap();
    assert!(!f.repo.index_shows(&post.id, &now, true, 1).await.unwrap(), "a draft is not in the index");
    assert!(f.repo.index_shows(&post.id, &now, false, 1).await.unwrap());
    post.published = true;
    f.repo.put(&post).await.unwrap();
    assert!(f.repo.index_shows(&post.id, &now, true, 1).await.unwrap());
    assert!(!f.repo.index_shows(&post.id, &now, true, 2).await.unwrap(), "version 2 is not there yet");
    assert!(!f.repo.index_shows(&post.id, &now, false, 2).await.unwrap(), "still listed");
}

#[tokio::test]
async fn concurrent_patches_never_overwrite_silently() {
    // DynamoDB applies a conditional write atomically per item; moto's threaded server does not
    // (two racing writers occasionally both pass), so this race runs on a one-request-at-a-time moto.
    let moto = testkit::SerialMoto::start();
    let f = fixture_on(&moto.endpoint).await;
    let post = f.create("user-1", "v1").await;
    let uri = format!("/posts/{}", post["id"].as_str().unwrap());

    // Two clients holding ETag "1": exactly one wins, the other gets 412.
    let patch_at_version_1 = |title: &'static str| {
        let req = http::Request::builder()
            .method("PATCH")
            .uri(&uri)
            .header("authorization", f.bearer("user-1"))
            .header("if-match", "\"1\"")
            .header("content-type", "application/json")
            .body(Body::Text(json!({ "title": title }).to_string()))
            .unwrap();
        async { posts_write::handler::handle(&f.write, req).await.status().as_u16() }
    };
    let (a, b) = tokio::join!(patch_at_version_1("from a"), patch_at_version_1("from b"));
    let mut statuses = [a, b];
    statuses.sort();
    assert_eq!(statuses, [200, 412]);

    // Without If-Match, racing writers either win or get 409; every win is one version step.
    let results = futures::future::join_all(
        (0..8).map(|i| f.send("PATCH", &uri, Some("user-1"), Some(json!({"body": format!("edit {i}")})))),
    )
    .await;
    let wins = results.iter().filter(|r| r.status() == 200).count() as u64;
    assert!(results.iter().all(|r| r.status() == 200 || r.status() == 409));
    assert!(wins >= 1);
    let stored = f.repo.get(&PostId::parse(post["id"].as_str().unwrap()).unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.version, 2 + wins, "each accepted write is exactly one version step");
}

/// The race: a reader misses, loads version N, and before it fills the cache a writer commits
/// N+1 and invalidates. Here the "slow reader" is a loader that lets the write happen between
/// its database read and its return. A naive delete-then-fill cache serves N afterwards; ours
/// must serve N+1.
#[tokio::test]
async fn a_slow_reader_cannot_put_back_a_value_older_than_a_write() {
    let f = fixture().await;
    let created = f.create("user-1", "old").await;
    let id = PostId::parse(created["id"].as_str().unwrap()).unwrap();
    let uri = format!("/posts/{id}");
    let cache = &f.read.posts.cache;

    // Ours: load old, let the write + invalidation happen, then fill.
    let key = post_key(&id);
    let (loaded, status) = cache
        .get_or_load(
            &key,
            POST_TTLS,
            |p: &Post| p.version,
            Deadline::after(std::time::Duration::from_secs(10)),
            || async {
                let old = f.repo.get(&id).await;
                let r = f.send("PATCH", &uri, Some("user-1"), Some(json!({"title": "new"}))).await;
                assert_eq!(r.status(), 200);
                old
            },
        )
        .await
        .unwrap();
    assert_eq!((loaded.unwrap().title.as_str(), status), ("old", CacheStatus::Miss));
    let r = f.read(&uri).await;
    assert_eq!(json_of(&r)["title"], "new", "the stale fill must not land");

    // The naive implementation on the same data: DEL after the write, plain SET on fill.
    let naive = NaiveCache(f.redis.url());
    let old = f.repo.get(&id).await.unwrap().unwrap();
    let r = f.send("PATCH", &uri, Some("user-1"), Some(json!({"title": "newer"}))).await;
    assert_eq!(r.status(), 200);
    naive.del(&key);
    naive.set(&key, &format!("{}|{}", old.version, serde_json::to_string(&old).unwrap()));
    let r = f.read(&uri).await;
    assert_eq!(json_of(&r)["title"], "new", "the naive fill does land: the race is real");
}

/// A deliberately naive cache, for showing that the race test can fail.
struct NaiveCache(String);

impl NaiveCache {
    fn conn(&self) -> redis::Connection {
        redis::Client::open(self.0.as_str()).unwrap().get_connection().unwrap()
    }
    fn del(&self, key: &str) {
        let _: () = redis::cmd("DEL").arg(key).query(&mut self.conn()).unwrap();
    }
    fn set(&self, key: &str, value: &str) {
        let _: () = redis::cmd("SET").arg(key).arg(value).query(&mut self.conn()).unwrap();
    }
}

#[tokio::test]
async fn twenty_cold_instances_missing_one_key_read_the_database_once() {
    let f = fixture().await;
    let post = f.create("user-1", "hot").await;
    let id = PostId::parse(post["id"].as_str().unwrap()).unwrap();
    // The create left a tombstone; clear it so this is a plain cold miss for everyone.
    NaiveCache(f.redis.url()).del(&post_key(&id));

    let aws = testkit::aws_clients().await;
    let mut instances = Vec::new();
    for _ in 0..20 {
        // Each "instance" has its own Redis connection and its own DynamoDB read counter.
        let mut env = EnvReader::from_fn(|k| f.env.get(k).cloned());
        let redis = Arc::new(RedisStore::new(RedisSettings::from_env(&mut env)).unwrap());
        let repo = PostsRepo::new(aws.dynamodb().clone(), f.repo.table());
        instances.push(CachedPosts::new(repo, Cache::new(redis, CacheSettings::default())));
    }
    let deadline = Deadline::after(std::time::Duration::from_secs(10));
    let results = futures::future::join_all(instances.iter().map(|i| i.published_post(&id, deadline))).await;
    for r in &results {
        assert_eq!(r.as_ref().unwrap().0.as_ref().unwrap().title, "hot");
    }
    let reads: u64 = instances.iter().map(|i| i.repo.source_reads()).sum();
    assert_eq!(reads, 1, "one loader, nineteen waiters");
    let misses = results.iter().filter(|r| r.as_ref().unwrap().1 == CacheStatus::Miss).count();
    assert_eq!(misses, 1);
}

#[tokio::test]
async fn posts_written_outside_the_api_are_readable() {
    // Seeding writes directly; readers must handle it like any other post.
    let f = fixture().await;
    let now = timestamp_now();
    let post = Post {
        id: PostId::parse("seeded").unwrap(),
        title: "t".into(),
        body: "b".into(),
        author_id: "user-9".into(),
        published: true,
        created_at: now.clone(),
        updated_at: now,
        version: 1,
    };
    f.repo.put(&post).await.unwrap();
    assert_eq!(f.read("/posts/seeded").await.status(), 200);
}

/// posts-write's largest answer: the whole post after a write. A post written around the API (an
/// import, an older version) may be as large as DynamoDB stores, all control characters; a PATCH
/// answers it whole. Measured where Lambda measures it, the payload the binary posts to the
/// Runtime API: under `POST_MAX_PAYLOAD_BYTES`, so under Lambda's 6 MB.
#[tokio::test]
async fn a_patch_of_the_largest_stored_post_answers_under_its_payload_bound() {
    use shared::posts::POST_MAX_PAYLOAD_BYTES;
    let f = fixture().await;
    let now = timestamp_now();
    let huge = Post {
        id: PostId::parse("huge").unwrap(),
        title: std::iter::repeat_n('\u{1}', 300).collect(),
        body: std::iter::repeat_n('\u{1}', 390_000).collect(),
        author_id: "user-1".into(),
        published: false,
        created_at: now.clone(),
        updated_at: now,
        version: 1,
    };
    f.repo.put(&huge).await.unwrap();

    let mut env: Vec<(String, String)> = f.env.clone().into_iter().collect();
    env.extend([
        ("AWS_ENDPOINT_URL".to_owned(), testkit::aws_endpoint()),
        ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
    ]);
    let options = lambda_harness::SpawnOptions { env, ..Default::default() };
    let function = lambda_harness::Function::start(env!("CARGO_BIN_EXE_posts-write"), &options).await.expect("spawn");
    if let Err(e) = function.wait_ready(std::time::Duration::from_secs(60)).await {
        panic!("init failed: {e}\n{}", function.logs());
    }
    let event = json!({
        "version": "2.0",
        "routeKey": "PATCH /posts/{id}",
        "rawPath": "/posts/huge",
        "rawQueryString": "",
        "headers": {"authorization": f.bearer("user-1"), "content-type": "application/json",
                    "host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "pathParameters": {"id": "huge"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": "PATCH", "path": "/posts/huge", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "test"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "routeKey": "PATCH /posts/{id}", "stage": "$default",
            "time": "26/Nov/2026:12:00:00 +0000", "timeEpoch": 1795694400000u64
        },
        "body": json!({"published": true}).to_string(),
        "isBase64Encoded": false
    });
    let answer = function.invoke(&event, std::time::Duration::from_secs(30)).await.unwrap();
    assert!(!answer.is_error, "{:?}\n{}", answer.error_summary(), function.logs());
    assert_eq!(answer.status_code(), Some(200), "{:?}", answer.json());
    let payload = answer.body.len();
    assert!(payload <= POST_MAX_PAYLOAD_BYTES, "payload {payload} > {POST_MAX_PAYLOAD_BYTES}");
    assert!(payload > 390_000 * 7, "the whole body, escaped twice: {payload}");
    eprintln!("figures: posts-write largest payload {payload} bytes (bound {POST_MAX_PAYLOAD_BYTES})");
    function.stop().await;
}
