//! posts-read against a real redis-server and moto's DynamoDB, through the handler.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lambda_http::{Body, Request, Response};
use posts_read::handler::{State, handle};
use posts_read::settings::Settings;
use shared::posts::{Post, PostId, PostsRepo, timestamp_now};
use testkit::{Provisioned, RedisServer};

const ORIGIN: &str = "https://app.example.com";

struct Fixture {
    state: State,
    repo: PostsRepo,
    redis: RedisServer,
    _provisioned: Provisioned,
}

async fn fixture() -> Fixture {
    let redis = RedisServer::start();
    let provisioned =
        testkit::provision(&[("REDIS_URL", &redis.url()), ("REDIS_CLUSTER", "false"), ("ALLOWED_ORIGINS", ORIGIN)]);
    let mut env: HashMap<String, String> = provisioned.env("posts-read");
    // Short backoff so the restart test does not wait long; timeouts stay at their defaults.
    env.insert("REDIS_RECONNECT_BACKOFF_MS".into(), "100".into());
    let settings = Settings::from_env(testkit::env_reader(env)).expect("settings from the template's environment");
    let aws = testkit::aws_clients().await;
    let state = State::new(&settings, &aws).expect("state");
    let repo = PostsRepo::new(aws.dynamodb.clone(), &settings.posts_table);
    Fixture { state, repo, redis, _provisioned: provisioned }
}

fn post(id: &str, published: bool, created_at: &str) -> Post {
    Post {
        id: PostId::parse(id).unwrap(),
        title: format!("title {id}"),
        body: format!("body {id}"),
        author_id: "user-1".into(),
        published,
        created_at: created_at.into(),
        updated_at: created_at.into(),
        version: 1,
    }
}

fn get(uri: &str) -> Request {
    http::Request::builder().method("GET").uri(uri).header("origin", ORIGIN).body(Body::Empty).unwrap()
}

fn json(response: &Response<Body>) -> serde_json::Value {
    match response.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        Body::Binary(b) => serde_json::from_slice(b).unwrap(),
        Body::Empty => serde_json::Value::Null,
        _ => panic!("unexpected body"),
    }
}

fn x_cache(response: &Response<Body>) -> &str {
    response.headers()["x-cache"].to_str().unwrap()
}

#[tokio::test]
async fn a_post_is_a_miss_then_a_hit_and_its_ttl_is_set() {
    let f = fixture().await;
    f.repo.put(&post("1", true, &timestamp_now())).await.unwrap();

    let first = handle(&f.state, get("/posts/1")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(x_cache(&first), "miss");
    let body = json(&first);
    for field in ["id", "title", "body", "authorId", "published", "createdAt", "updatedAt"] {
        assert!(body.get(field).is_some(), "missing {field} in {body}");
    }
    assert_eq!(body["id"], "1");
    assert_eq!(first.headers()["access-control-allow-origin"], ORIGIN);

    let second = handle(&f.state, get("/posts/1")).await;
    assert_eq!(second.status(), 200);
    assert_eq!(x_cache(&second), "hit");
    assert_eq!(json(&second), body);

    let pttl: i64 = f.redis.cli(&["PTTL", "post:1"]).trim_start_matches("(integer) ").parse().unwrap();
    assert!((270_000..=330_000).contains(&pttl), "post TTL {pttl} ms is not 300 s ± 10 %");
}

#[tokio::test]
async fn missing_and_unpublished_posts_are_404_problems() {
    let f = fixture().await;
    f.repo.put(&post("draft", false, &timestamp_now())).await.unwrap();
    for uri in ["/posts/nope", "/posts/draft"] {
        let r = handle(&f.state, get(uri)).await;
        assert_eq!(r.status(), 404, "{uri}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        assert_eq!(json(&r)["status"], 404);
    }
}

#[tokio::test]
async fn bad_ids_and_bad_limits_are_400_problems() {
    let f = fixture().await;
    for uri in ["/posts/a%2Fb", "/posts/bad.id", &format!("/posts/{}", "x".repeat(65))] {
        let r = handle(&f.state, get(uri)).await;
        assert_eq!(r.status(), 400, "{uri}");
        assert_eq!(json(&r)["type"], "/problems/invalid-id", "{uri}");
    }
    for uri in [
        "/posts?limit=0",
        "/posts?limit=101",
        "/posts?limit=abc",
        "/posts?page=0",
        "/posts?limit=5&limit=6",
        "/posts?page=-1",
    ] {
        let r = handle(&f.state, get(uri)).await;
        assert_eq!(r.status(), 400, "{uri}");
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{uri}");
        assert_eq!(json(&r)["type"], "/problems/invalid-parameter", "{uri}");
    }
}

#[tokio::test]
async fn list_is_published_only_newest_first_paged_and_cached() {
    let f = fixture().await;
    for (i, published) in [(1, true), (2, false), (3, true), (4, true)] {
        f.repo.put(&post(&i.to_string(), published, &format!("2026-01-0{i}T00:00:00.000Z"))).await.unwrap();
    }
    let r = handle(&f.state, get("/posts?limit=2")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(x_cache(&r), "miss");
    let page1 = json(&r);
    let ids: Vec<_> = page1["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["4", "3"]);
    assert_eq!(page1["hasMore"], true);
    assert_eq!((page1["page"].as_u64(), page1["limit"].as_u64()), (Some(1), Some(2)));

    let r = handle(&f.state, get("/posts?limit=2&page=2")).await;
    let page2 = json(&r);
    let ids: Vec<_> = page2["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["1"]);
    assert_eq!(page2["hasMore"], false);

    let again = handle(&f.state, get("/posts?limit=2")).await;
    assert_eq!(x_cache(&again), "hit");
    assert_eq!(json(&again), page1);
    let pttl: i64 = f.redis.cli(&["PTTL", "posts:list:0:1:2"]).trim_start_matches("(integer) ").parse().unwrap();
    assert!((54_000..=66_000).contains(&pttl), "list TTL {pttl} ms is not 60 s ± 10 %");
}

#[tokio::test]
async fn redis_down_still_answers_from_dynamodb_and_recovers_after_restart() {
    let mut f = fixture().await;
    f.repo.put(&post("1", true, &timestamp_now())).await.unwrap();
    assert_eq!(x_cache(&handle(&f.state, get("/posts/1")).await), "miss");
    assert_eq!(x_cache(&handle(&f.state, get("/posts/1")).await), "hit");

    f.redis.stop();
    let settings = f.state.posts.cache.redis().settings().clone();
    // Worst case: one connect timeout plus one response timeout per Redis call on the request
    // path, and a little for DynamoDB on loopback. A hang (no timeouts) would blow far past this.
    let bound = (settings.connect_timeout + settings.response_timeout) * 4 + Duration::from_secs(2);
    for uri in ["/posts/1", "/posts/1", "/posts?limit=5"] {
        let start = Instant::now();
        let r = handle(&f.state, get(uri)).await;
        assert_eq!(r.status(), 200, "{uri} while Redis is down");
        assert_eq!(x_cache(&r), "miss");
        assert!(start.elapsed() < bound, "{uri} took {:?} with Redis down (bound {bound:?})", start.elapsed());
    }

    f.redis.restart();
    // Past the reconnect backoff, the same State (no new function instance) reconnects.
    tokio::time::sleep(settings.reconnect_backoff + Duration::from_millis(50)).await;
    assert_eq!(x_cache(&handle(&f.state, get("/posts/1")).await), "miss");
    assert_eq!(x_cache(&handle(&f.state, get("/posts/1")).await), "hit");
}

#[tokio::test]
async fn cors_preflight_passes_for_allowed_origin_only() {
    let f = fixture().await;
    let preflight = |origin: &str| {
        http::Request::builder()
            .method("OPTIONS")
            .uri("/posts/1")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .body(Body::Empty)
            .unwrap()
    };
    let ok = handle(&f.state, preflight(ORIGIN)).await;
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");

    let other = handle(&f.state, preflight("https://evil.example.com")).await;
    assert_eq!(other.status(), 403);
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn other_methods_and_paths_are_problems() {
    let f = fixture().await;
    let r =
        handle(&f.state, http::Request::builder().method("DELETE").uri("/posts/1").body(Body::Empty).unwrap()).await;
    assert_eq!(r.status(), 405);
    let r = handle(&f.state, get("/nothing/here")).await;
    assert_eq!(r.status(), 404);
}
