//! posts-read against a real redis-server and moto's DynamoDB, through the handler. DynamoDB
//! reads are counted by `testkit::DynamoMeter`, a proxy between the handler's client and moto,
//! never by the code under test.

use shared::config::FromEnv;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{ORIGIN, at, get};
use lambda_http::Body;
use posts_read::handler::{State, handle};
use posts_read::settings::Settings;
use shared::auth::UserId;
use shared::cache::{Cache, CacheSettings};
use shared::clients::{RedisSettings, RedisStore};
use shared::clock::timestamp_now;
use shared::deadline::Deadline;
use shared::posts::{CachedPosts, numbered_page_key};
use shared::posts::{NewPost, PostWriter};
use shared::posts::{Post, PostId, PostsRepo};
use testkit::http::{ids, json, x_cache};
use testkit::{DynamoMeter, Provisioned, RedisServer};

const CURSOR_SECRET: &str = "test-only-posts-cursor-secret-0123456789";

struct Fixture {
    state: State,
    settings: Settings,
    /// Unmetered: seeding and checks, outside what is counted.
    repo: PostsRepo,
    /// Between `state`'s DynamoDB client and moto.
    meter: DynamoMeter,
    redis: RedisServer,
    env: HashMap<String, String>,
    _provisioned: Provisioned,
}

async fn fixture() -> Fixture {
    let redis = RedisServer::start();
    let provisioned = testkit::provision(&[
        ("REDIS_URL", &redis.url()),
        ("REDIS_CLUSTER", "false"),
        ("ALLOWED_ORIGINS", ORIGIN),
        ("POSTS_CURSOR_SECRET", CURSOR_SECRET),
    ]);
    let mut env: HashMap<String, String> = provisioned.env("posts-read");
    // Short backoff so the restart test does not wait long; timeouts stay at their defaults.
    env.insert("REDIS_RECONNECT_BACKOFF_MS".into(), "100".into());
    let settings =
        Settings::from_env(testkit::env_reader(env.clone())).expect("settings from the template's environment");
    let meter = DynamoMeter::start(&testkit::aws_endpoint()).await;
    let metered = testkit::aws_clients_at(&meter.endpoint).await;
    let state = State::new(&settings, &metered).expect("state");
    let repo = PostsRepo::new(testkit::aws_clients().await.dynamodb().clone(), &settings.posts.table);
    Fixture { state, settings, repo, meter, redis, env, _provisioned: provisioned }
}

impl Fixture {
    /// Another posts-read instance (its own Redis connection), reading through the meter.
    async fn instance(&self) -> State {
        State::new(&self.settings, &testkit::aws_clients_at(&self.meter.endpoint).await).expect("state")
    }

    /// The write path posts-write uses (conditional write, tombstone, generation bumps), with an
    /// unmetered client so that its reads are not counted as the reader's.
    async fn writer(&self) -> PostWriter {
        self.writer_on(self.repo.clone(), Duration::from_millis(500))
    }

    /// What posts-write does after a write, signed in to Redis as posts-write's cache user
    /// (posts-read's may not bump the list generation).
    fn writer_on(&self, repo: PostsRepo, index_wait: Duration) -> PostWriter {
        let mut vars = self.env.clone();
        vars.insert("REDIS_USERNAME".into(), "posts-write".into());
        vars.insert("REDIS_PASSWORD".into(), testkit::redis_acl::password("posts-write"));
        let mut env = testkit::env_reader(vars);
        let redis = Arc::new(RedisStore::new(RedisSettings::from_env(&mut env)).unwrap());
        let cache = Cache::new(redis, CacheSettings::default());
        PostWriter::new(CachedPosts::new(repo, cache), index_wait)
    }
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

fn pttl(redis: &RedisServer, key: &str) -> i64 {
    redis.cli(&["PTTL", key]).trim_start_matches("(integer) ").parse().unwrap()
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

    let ttl = pttl(&f.redis, "post:1");
    assert!((270_000..=330_000).contains(&ttl), "post TTL {ttl} ms is not 300 s ± 10 %");
}

#[tokio::test]
async fn missing_and_unpublished_posts_are_404_problems_with_x_cache_and_cached() {
    let f = fixture().await;
    f.repo.put(&post("draft", false, &timestamp_now())).await.unwrap();
    for uri in ["/posts/nope", "/posts/draft"] {
        let r = handle(&f.state, get(uri)).await;
        assert_eq!(r.status(), 404, "{uri}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        assert_eq!(json(&r)["status"], 404);
        assert_eq!(x_cache(&r), "miss", "{uri}");
        f.meter.take();
        let again = handle(&f.state, get(uri)).await;
        assert_eq!((again.status().as_u16(), x_cache(&again)), (404, "hit"), "{uri}");
        assert_eq!(f.meter.take().gets, 0, "{uri}: the second 404 comes from the cache");
    }
    // Absence is kept for the short TTL (30 s ± 10 %), not the post TTL.
    let ttl = pttl(&f.redis, "post:nope");
    assert!((27_000..=33_000).contains(&ttl), "absent TTL {ttl} ms");
}

#[tokio::test]
async fn after_a_delete_the_second_read_is_a_404_hit() {
    let f = fixture().await;
    let writer = f.writer().await;
    let author = UserId::parse("user-1").unwrap();
    let new = NewPost { title: "doomed".into(), body: "b".into(), published: true };
    let created = writer.create(&author, new, Deadline::after(Duration::from_secs(10))).await.unwrap();
    let uri = format!("/posts/{}", created.id);
    assert_eq!(handle(&f.state, get(&uri)).await.status(), 200);
    assert_eq!(x_cache(&handle(&f.state, get(&uri)).await), "hit");

    writer.delete(&author, &created.id, None, Deadline::after(Duration::from_secs(10))).await.unwrap();
    let first = handle(&f.state, get(&uri)).await;
    assert_eq!((first.status().as_u16(), x_cache(&first)), (404, "miss"), "the tombstone is a miss");
    f.meter.take();
    let second = handle(&f.state, get(&uri)).await;
    assert_eq!((second.status().as_u16(), x_cache(&second)), (404, "hit"));
    assert_eq!(second.headers()["content-type"], "application/problem+json");
    assert_eq!(f.meter.take().gets, 0, "no DynamoDB read for the second 404");
}

#[tokio::test]
async fn bad_ids_limits_pages_and_cursors_are_precise_400_problems() {
    let f = fixture().await;
    // Enough for a second page (seeded before any page is cached: direct puts bump nothing).
    for i in 0..12 {
        f.repo.put(&post(&format!("p{i}"), true, &at(i))).await.unwrap();
    }
    for uri in ["/posts/a%2Fb", "/posts/bad.id", &format!("/posts/{}", "x".repeat(65))] {
        let r = handle(&f.state, get(uri)).await;
        assert_eq!(r.status(), 400, "{uri}");
        assert_eq!(json(&r)["type"], "/problems/invalid-id", "{uri}");
        assert_eq!(x_cache(&r), "miss", "{uri}: every answer carries x-cache");
    }
    for uri in [
        "/posts?limit=0",
        "/posts?limit=5",
        "/posts?limit=101",
        "/posts?limit=abc",
        "/posts?page=0",
        "/posts?limit=10&limit=20",
        "/posts?page=-1",
        "/posts?page=1&cursor=abc",
    ] {
        let r = handle(&f.state, get(uri)).await;
        assert_eq!(r.status(), 400, "{uri}");
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{uri}");
        assert_eq!(json(&r)["type"], "/problems/invalid-parameter", "{uri}");
    }
    assert_eq!(json(&handle(&f.state, get("/posts?limit=5")).await)["allowed"], serde_json::json!([10, 20, 50, 100]));

    for (uri, max_page) in
        [("/posts?page=101&limit=10", 100), ("/posts?page=11&limit=100", 10), ("/posts?page=99999999999", 50)]
    {
        let r = handle(&f.state, get(uri)).await;
        assert_eq!(r.status(), 400, "{uri}");
        let body = json(&r);
        assert_eq!(body["type"], "/problems/page-too-deep", "{uri}");
        assert_eq!(body["use"], "cursor", "{uri}");
        assert_eq!(body["maxPage"], max_page, "{uri}");
        assert!(body["detail"].as_str().unwrap().contains("cursor"), "{uri}: {body}");
    }
    // The deepest allowed pages are fine.
    for uri in ["/posts?page=100&limit=10", "/posts?page=10&limit=100", "/posts?page=50"] {
        assert_eq!(handle(&f.state, get(uri)).await.status(), 200, "{uri}");
    }

    // Cursors: a genuine one first.
    let page1 = json(&handle(&f.state, get("/posts?limit=10")).await);
    let cursor = page1["nextCursor"].as_str().expect("a next cursor").to_owned();
    assert_eq!(handle(&f.state, get(&format!("/posts?limit=10&cursor={cursor}"))).await.status(), 200);

    let (payload, tag) = cursor.split_once('.').unwrap();
    let other_key = shared::posts::Cursors::new(shared::config::Secret::new("another-key-0123456789-0123456789"));
    let position = shared::posts::FeedPosition { created_at: at(0), id: PostId::parse("p0").unwrap() };
    let forged_elsewhere = other_key.issue(shared::posts::PUBLISHED_LIST, 10, &position);
    let mut flipped = payload.as_bytes().to_vec();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let altered = format!("{}.{tag}", String::from_utf8(flipped).unwrap());
    f.meter.take();
    for (case, uri, detail) in [
        ("forged with another key", format!("/posts?limit=10&cursor={forged_elsewhere}"), "not issued"),
        ("payload altered", format!("/posts?limit=10&cursor={altered}"), ""),
        ("truncated", format!("/posts?limit=10&cursor={}", &cursor[..cursor.len() - 4]), "malformed"),
        ("not base64", "/posts?limit=10&cursor=%%%.%%%".to_owned(), "malformed"),
        ("empty", "/posts?limit=10&cursor=".to_owned(), "malformed"),
        ("another limit", format!("/posts?limit=20&cursor={cursor}"), "limit=10"),
        ("default limit is another limit", format!("/posts?cursor={cursor}"), "limit=10"),
        ("huge", format!("/posts?limit=10&cursor={}", "A".repeat(5000)), "malformed"),
    ] {
        let r = handle(&f.state, get(&uri)).await;
        assert_eq!(r.status(), 400, "{case}");
        let body = json(&r);
        assert_eq!(body["type"], "/problems/invalid-cursor", "{case}");
        assert_eq!(body["parameter"], "cursor", "{case}");
        assert!(body["detail"].as_str().unwrap().contains(detail), "{case}: {body}");
    }
    assert_eq!(f.meter.take(), testkit::Reads::default(), "no refused cursor reached DynamoDB");
}

#[tokio::test]
async fn list_is_published_only_newest_first_paged_and_cached() {
    let f = fixture().await;
    // 15 posts, every third a draft: 10 published.
    for i in 0..15 {
        f.repo.put(&post(&format!("p{i:02}"), i % 3 != 1, &at(i))).await.unwrap();
    }
    let expected: Vec<String> = (0..15).rev().filter(|i| i % 3 != 1).map(|i| format!("p{i:02}")).collect();
    f.meter.take();
    let r = handle(&f.state, get("/posts?limit=10")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(x_cache(&r), "miss");
    let page1 = json(&r);
    assert_eq!(ids(&page1), expected);
    assert_eq!((page1["limit"].as_u64(), page1["page"].as_u64()), (Some(10), Some(1)));
    assert_eq!((page1["hasMore"].as_bool(), page1["nextCursor"].is_null()), (Some(false), true), "{page1}");
    let reads = f.meter.take();
    assert_eq!(reads.queries, 1);
    assert!(reads.items <= 11, "page 1 read {} items", reads.items);

    let again = handle(&f.state, get("/posts?limit=10")).await;
    assert_eq!(x_cache(&again), "hit");
    assert_eq!(json(&again), page1);
    assert_eq!(f.meter.take().queries, 0);
    let ttl = pttl(&f.redis, &numbered_page_key(0, 10, 1));
    assert!((54_000..=66_000).contains(&ttl), "list TTL {ttl} ms is not 60 s ± 10 %");

    // Past the end: an empty page, no cursor.
    let r = json(&handle(&f.state, get("/posts?limit=10&page=3")).await);
    assert_eq!((ids(&r).len(), r["nextCursor"].is_null(), r["hasMore"].as_bool()), (0, true, Some(false)));
}

/// The walk a client does: first page, then nextCursor until it is null, while other clients
/// create and delete posts. Every post published throughout comes back exactly once, in
/// newest-first order; no request reads more than `limit + 1` items, in one Query.
#[tokio::test]
async fn walking_every_page_by_cursor_returns_each_post_once_while_posts_change() {
    let f = fixture().await;
    let writer = f.writer().await;
    let author = UserId::parse("user-1").unwrap();
    let deadline = || Deadline::after(Duration::from_secs(10));
    const LIMIT: usize = 10;
    let mut published = Vec::new();
    for i in 0..95u32 {
        let p = post(&format!("w{i:03}"), i % 7 != 3, &at(i));
        if p.published {
            published.push(p.id.as_str().to_owned());
        }
        f.repo.put(&p).await.unwrap();
    }
    published.reverse(); // newest first

    let mut seen: Vec<String> = Vec::new();
    let mut created = Vec::new();
    let mut deleted_unseen = HashSet::new();
    let mut uri = format!("/posts?limit={LIMIT}");
    let mut last_created_at: Option<String> = None;
    for round in 0.. {
        f.meter.take();
        let r = handle(&f.state, get(&uri)).await;
        assert_eq!(r.status(), 200, "{uri}");
        let reads = f.meter.take();
        assert!(reads.queries <= 1, "round {round}: {reads:?}");
        assert!(reads.items <= LIMIT as u64 + 1, "round {round}: read {} items", reads.items);
        let page = json(&r);
        for item in page["items"].as_array().unwrap() {
            let created_at = item["createdAt"].as_str().unwrap().to_owned();
            if let Some(last) = &last_created_at {
                assert!(created_at < *last, "newest first: {created_at} after {last}");
            }
            last_created_at = Some(created_at);
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        // Meanwhile: a new post (newer than the walk's start), and a delete of one post the walk
        // has not reached yet and of one it has already returned.
        let new = NewPost { title: format!("new {round}"), body: "b".into(), published: true };
        created.push(writer.create(&author, new, deadline()).await.unwrap().id.as_str().to_owned());
        let ahead = published.iter().rev().find(|id| !seen.contains(id) && !deleted_unseen.contains(*id)).cloned();
        if let Some(id) = ahead.filter(|_| round % 2 == 0) {
            writer.delete(&author, &PostId::parse(&id).unwrap(), None, deadline()).await.unwrap();
            deleted_unseen.insert(id);
        }
        if let Some(id) = seen.first().filter(|_| round == 3) {
            writer.delete(&author, &PostId::parse(id).unwrap(), None, deadline()).await.unwrap();
        }
        match page["nextCursor"].as_str() {
            Some(cursor) => uri = format!("/posts?limit={LIMIT}&cursor={cursor}"),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a post came back twice: {seen:?}");
    let expected: Vec<String> = published.iter().filter(|id| !deleted_unseen.contains(*id)).cloned().collect();
    assert_eq!(seen, expected, "every post published throughout, once, newest first");
    assert!(!deleted_unseen.is_empty() && created.iter().all(|id| !seen.contains(id)));
}

#[tokio::test]
async fn numbered_pages_read_one_page_each_when_walked_and_stay_bounded_when_cold() {
    let f = fixture().await;
    for i in 0..120u32 {
        f.repo.put(&post(&format!("n{i:03}"), true, &at(i))).await.unwrap();
    }
    // Walked in order, every page is one Query of at most limit + 1 items.
    let mut all = Vec::new();
    for page in 1..=12 {
        f.meter.take();
        let r = json(&handle(&f.state, get(&format!("/posts?limit=10&page={page}"))).await);
        let reads = f.meter.take();
        assert_eq!(reads.queries, 1, "page {page}: {reads:?}");
        assert!(reads.items <= 11, "page {page}: {reads:?}");
        assert_eq!(r["page"], page);
        all.extend(ids(&r));
    }
    let expected: Vec<String> = (0..120).rev().map(|i| format!("n{i:03}")).collect();
    assert_eq!(all, expected);

    // A cold deep page (another limit, nothing cached) walks from the top once, then is a hit.
    f.meter.take();
    let r = handle(&f.state, get("/posts?limit=20&page=6")).await;
    let reads = f.meter.take();
    assert_eq!(ids(&json(&r)), expected[100..120]);
    assert!(reads.queries <= 6 && reads.max_query_items <= 21, "{reads:?}");
    assert!(reads.items <= 6 * 21, "bounded by page × (limit + 1): {reads:?}");
    // Its neighbours were filled on the way: page 5 is a hit, page 7 one Query.
    assert_eq!(x_cache(&handle(&f.state, get("/posts?limit=20&page=5")).await), "hit");
    f.meter.take();
    assert_eq!(x_cache(&handle(&f.state, get("/posts?limit=20&page=6")).await), "hit");
    assert_eq!(f.meter.take().queries, 0);
}

/// Twenty instances (their own Redis connections) miss one page at once while its Query takes
/// 1.5 s, longer than any fixed wait the old guard had (1 s): they make one Query.
#[tokio::test]
async fn twenty_concurrent_cold_misses_on_a_slow_page_make_one_read() {
    let f = fixture().await;
    for i in 0..30u32 {
        f.repo.put(&post(&format!("s{i:02}"), true, &at(i))).await.unwrap();
    }
    let page1 = json(&handle(&f.state, get("/posts?limit=10")).await);
    let cursor = page1["nextCursor"].as_str().unwrap().to_owned();
    let mut instances = Vec::new();
    for _ in 0..20 {
        instances.push(f.instance().await);
    }
    f.meter.set_query_delay(Duration::from_millis(1500));
    f.meter.take();
    let uri = format!("/posts?limit=10&cursor={cursor}");
    let results = futures::future::join_all(instances.iter().map(|s| handle(s, get(&uri)))).await;
    f.meter.set_query_delay(Duration::ZERO);
    let reads = f.meter.take();
    assert_eq!(reads.queries, 1, "one loader, nineteen waiters: {reads:?}");
    let expected: Vec<String> = (10..20).rev().map(|i| format!("s{i:02}")).collect();
    for r in &results {
        assert_eq!(r.status(), 200);
        assert_eq!(ids(&json(r)), expected);
    }
    let misses = results.iter().filter(|r| x_cache(r) == "miss").count();
    assert_eq!(misses, 1);
}

/// The index-lag window: the meter makes the index leave out the new post (as a GSI that has not
/// caught up would) while a reader reads page 1 between the write and the index catching up, so
/// the pre-write page is cached under the generation the write's first bump made. The write
/// answers only after the index shows the post and the generation is bumped again: the next read
/// shows the post. (With a single bump, that stale page would be served for its 60 s.)
#[tokio::test]
async fn a_page_cached_while_the_index_lags_a_write_is_dropped_before_the_write_answers() {
    let f = fixture().await;
    for i in 0..3u32 {
        f.repo.put(&post(&format!("l{i}"), true, &at(i))).await.unwrap();
    }
    assert_eq!(ids(&json(&handle(&f.state, get("/posts?limit=10")).await)).len(), 3);
    let generation =
        || -> u64 { f.redis.cli(&["GET", "posts:list:gen"]).trim().trim_matches('"').parse().unwrap_or(0) };
    let before = generation();

    // The writer reads the index through the lagging meter too.
    let metered = PostsRepo::new(testkit::aws_clients_at(&f.meter.endpoint).await.dynamodb().clone(), f.repo.table());
    let writer = f.writer_on(metered, Duration::from_secs(8));
    f.meter.lag_index_after(Some(at(2)));
    let author = UserId::parse("user-1").unwrap();
    let new = NewPost { title: "fresh".into(), body: "b".into(), published: true };
    let write = writer.create(&author, new, Deadline::after(Duration::from_secs(10)));
    let read_in_the_gap = async {
        // Once the first bump is done (the write is in DynamoDB, the index not yet)...
        while generation() == before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stale = json(&handle(&f.state, get("/posts?limit=10")).await);
        // ...the index catches up.
        f.meter.lag_index_after(None);
        stale
    };
    let (created, stale) = tokio::join!(write, read_in_the_gap);
    let created = created.unwrap();
    assert!(!ids(&stale).contains(&created.id.as_str().to_owned()), "the gap read saw the lagging index");
    let after = json(&handle(&f.state, get("/posts?limit=10")).await);
    assert_eq!(ids(&after)[0], created.id.as_str(), "once the write has answered, page 1 shows it");
}

/// A waiter whose own deadline comes before the slow fill answers "retry" (503) and never reads
/// DynamoDB itself; the holder's fill still lands for the next reader.
#[tokio::test]
async fn a_waiter_out_of_time_answers_503_without_reading() {
    let f = fixture().await;
    for i in 0..15u32 {
        f.repo.put(&post(&format!("o{i:02}"), true, &at(i))).await.unwrap();
    }
    let other = f.instance().await;
    f.meter.set_query_delay(Duration::from_millis(1500));
    f.meter.take();
    let holder = f.state.posts.page_by_number(&f.state.cursors, 1, 10, Deadline::after(Duration::from_secs(10)));
    let waiter = async {
        // Start once the holder has the lock, with a deadline shorter than its load.
        while f.redis.cli(&["EXISTS", &format!("{{{}}}:lock", numbered_page_key(0, 10, 1))]).trim() != "(integer) 1" {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        other.posts.page_by_number(&other.cursors, 1, 10, Deadline::after(Duration::from_millis(600))).await
    };
    let (held, waited) = tokio::join!(holder, waiter);
    f.meter.set_query_delay(Duration::ZERO);
    assert_eq!(held.unwrap().1, shared::cache::CacheStatus::Miss);
    let err = waited.unwrap_err();
    assert!(matches!(err, shared::posts::PostsError::OutOfTime(_)), "{err:?}");
    let problem = shared::http::Problem::from(err);
    assert_eq!((problem.status.as_u16(), problem.kind), (503, "unavailable"));
    assert_eq!(f.meter.take().queries, 1, "the waiter read nothing");
    assert_eq!(x_cache(&handle(&f.state, get("/posts?limit=10")).await), "hit");
}

/// A holder that died keeps its lock until its deadline and releases nothing: the next caller
/// waits for the lock to expire, then loads, once.
#[tokio::test]
async fn a_dead_holders_lock_expires_and_the_next_caller_loads_once() {
    let f = fixture().await;
    f.repo.put(&post("1", true, &timestamp_now())).await.unwrap();
    // What a holder with 700 ms left leaves behind when it dies mid-load.
    f.redis.cli(&["SET", "{post:1}:lock", "dead-holder", "PX", "700"]);
    f.meter.take();
    let r = handle(&f.state, get("/posts/1")).await;
    assert_eq!((r.status().as_u16(), x_cache(&r)), (200, "miss"));
    assert_eq!(f.meter.take().gets, 1);
    assert_eq!(x_cache(&handle(&f.state, get("/posts/1")).await), "hit");
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
    for uri in ["/posts/1", "/posts/1", "/posts?limit=10", "/posts?limit=10&page=2"] {
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
    assert_eq!(x_cache(&r), "miss");
    let r = handle(&f.state, get("/nothing/here")).await;
    assert_eq!(r.status(), 404);
}

/// An API Gateway HTTP API (payload 2.0) event for `GET {path}?{query}`.
fn http_api_event(path: &str, query: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "2.0",
        "routeKey": "GET /posts",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"accept": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "queryStringParameters": query.split('&').filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v))).collect::<serde_json::Map<_, _>>(),
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "test"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "routeKey": "GET /posts", "stage": "$default",
            "time": "26/Nov/2026:12:00:00 +0000", "timeEpoch": 1795694400000u64
        },
        "isBase64Encoded": false
    })
}

/// One posts-read process on a Lambda Managed Instances setting (`AWS_LAMBDA_MAX_CONCURRENCY=16`)
/// holds 16 invocations at once (counted by the Runtime API it polls, not by the function): all
/// are answered correctly, their one shared Redis connection and DynamoDB client make one Query
/// for the 16 cold misses (the stampede guard works across concurrent invocations of one
/// process), and each log line keeps its own invocation's request id.
#[tokio::test]
async fn one_process_with_sixteen_invocations_in_flight_answers_every_one() {
    const IN_FLIGHT: usize = 16;
    let f = fixture().await;
    for i in 0..14u32 {
        f.repo.put(&post(&format!("c{i:02}"), true, &at(i))).await.unwrap();
    }
    let mut env: Vec<(String, String)> = f.env.clone().into_iter().collect();
    env.extend(
        [
            ("AWS_ENDPOINT_URL", f.meter.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_LAMBDA_MAX_CONCURRENCY", IN_FLIGHT.to_string()),
            // lambda_runtime's trace line of each event is inside that invocation's span.
            ("RUST_LOG", "info,lambda_runtime::layers=trace".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let options = lambda_harness::SpawnOptions { env, ..Default::default() };
    let function = lambda_harness::Function::start(env!("CARGO_BIN_EXE_posts-read"), &options).await.expect("spawn");
    if let Err(e) = function.wait_ready(Duration::from_secs(60)).await {
        panic!("init failed: {e}\n{}", function.logs());
    }
    // Each cold miss waits on the slow Query long enough for all 16 to be handed out at once.
    f.meter.set_query_delay(Duration::from_millis(1500));
    f.meter.take();
    let event = http_api_event("/posts", "limit=10");
    let answers =
        futures::future::join_all((0..IN_FLIGHT).map(|_| function.invoke(&event, Duration::from_secs(30)))).await;
    f.meter.set_query_delay(Duration::ZERO);
    let expected: Vec<String> = (4..14).rev().map(|i| format!("c{i:02}")).collect();
    let mut request_ids = HashSet::new();
    for answer in &answers {
        let answer = answer.as_ref().unwrap_or_else(|e| panic!("{e}\n{}", function.logs()));
        assert_eq!(answer.status_code(), Some(200), "{:?}", answer.json());
        let body: serde_json::Value = serde_json::from_str(answer.json().unwrap()["body"].as_str().unwrap()).unwrap();
        assert_eq!(ids(&body), expected);
        request_ids.insert(answer.request_id.clone());
    }
    assert_eq!(function.api().max_in_flight(), IN_FLIGHT, "all {IN_FLIGHT} were in the process at once");
    assert_eq!(f.meter.take().queries, 1, "one Query for the {IN_FLIGHT} concurrent misses");

    // And a warm hit after them, at concurrency 16 too.
    let hit = function.invoke(&event, Duration::from_secs(30)).await.unwrap();
    assert_eq!(hit.status_code(), Some(200));
    let report = function.stop().await;
    assert!(!report.logs.contains("panicked"), "{}", report.logs);
    // Every invocation's log lines carry its own request id (a span per invocation, no global).
    let logged: HashSet<String> = report
        .logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| l["requestId"].as_str().map(str::to_owned))
        .collect();
    assert!(request_ids.is_subset(&logged), "request ids in the logs: {logged:?}\n{}", report.logs);
    emf::assert_valid_lines(&report.logs, "posts-read", &["CacheMisses", "CacheHits"]);
}

/// A posts-read process whose cache stays down still answers (it fails open to DynamoDB), and
/// says so: every invocation's EMF line counts `CacheUnavailable`, the metric the template's
/// PostsReadCacheUnavailableAlarm reads, so a silent fail-open becomes a page.
#[tokio::test]
async fn a_process_whose_cache_stays_down_answers_and_emits_cache_unavailable() {
    let mut f = fixture().await;
    f.repo.put(&post("u1", true, &timestamp_now())).await.unwrap();
    f.redis.stop();
    let mut env: Vec<(String, String)> = f.env.clone().into_iter().collect();
    env.extend(
        [
            ("AWS_ENDPOINT_URL", testkit::aws_endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let options = lambda_harness::SpawnOptions { env, ..Default::default() };
    let function = lambda_harness::Function::start(env!("CARGO_BIN_EXE_posts-read"), &options).await.expect("spawn");
    if let Err(e) = function.wait_ready(Duration::from_secs(60)).await {
        panic!("init failed: {e}\n{}", function.logs());
    }
    let event = http_api_event("/posts/u1", "");
    for _ in 0..3 {
        let answer = function.invoke(&event, Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.status_code(), Some(200), "{:?}", answer.json());
        // Past the reconnect backoff, so each invocation tries (and fails) again.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let report = function.stop().await;
    emf::assert_valid_lines(&report.logs, "posts-read", &["CacheUnavailable"]);
    let unavailable: u64 = report
        .logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| l["CacheUnavailable"].as_u64())
        .sum();
    assert!(unavailable >= 3, "CacheUnavailable counted {unavailable} times over 3 invocations\n{}", report.logs);
}

/// CloudWatch Embedded Metric Format: the structure of its JSON schema (the `_aws` root member,
/// `Timestamp`, `CloudWatchMetrics` directives with `Namespace`, `Dimensions` and `Metrics`; the
/// limits CloudWatch enforces), checked on every line that claims to be EMF.
mod emf {
    use serde_json::Value;

    const UNITS: [&str; 27] = [
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];

    fn string_1_to(v: &Value, max: usize, what: &str) -> String {
        let s = v.as_str().unwrap_or_else(|| panic!("{what} is not a string: {v}"));
        assert!((1..=max).contains(&s.len()), "{what} length {} not in 1..={max}", s.len());
        s.to_owned()
    }

    /// Validates one EMF document; returns the metric names it defines.
    pub fn validate(doc: &Value) -> Vec<String> {
        let root = doc.as_object().expect("an EMF document is an object");
        let aws = root.get("_aws").and_then(Value::as_object).expect("_aws is an object");
        let ts = aws.get("Timestamp").expect("_aws.Timestamp is required");
        assert!(ts.as_i64().is_some_and(|t| t >= 0), "Timestamp is a non-negative integer (epoch ms): {ts}");
        let directives = aws.get("CloudWatchMetrics").and_then(Value::as_array).expect("CloudWatchMetrics array");
        assert!(!directives.is_empty(), "at least one metric directive");
        let mut names = Vec::new();
        for d in directives {
            let d = d.as_object().expect("a metric directive is an object");
            string_1_to(d.get("Namespace").expect("Namespace is required"), 1024, "Namespace");
            let dimension_sets = d.get("Dimensions").and_then(Value::as_array).expect("Dimensions array");
            for set in dimension_sets {
                let set = set.as_array().expect("a dimension set is an array");
                assert!(set.len() <= 30, "at most 30 dimensions per set");
                for dim in set {
                    let dim = string_1_to(dim, 250, "dimension name");
                    let value = root.get(&dim).unwrap_or_else(|| panic!("dimension {dim} has no root member"));
                    string_1_to(value, 1024, "dimension value");
                }
            }
            let metrics = d.get("Metrics").and_then(Value::as_array).expect("Metrics array");
            assert!(metrics.len() <= 100, "at most 100 metrics per directive");
            for m in metrics {
                let m = m.as_object().expect("a metric definition is an object");
                let name = string_1_to(m.get("Name").expect("Name is required"), 1024, "metric name");
                if let Some(unit) = m.get("Unit") {
                    assert!(UNITS.contains(&unit.as_str().unwrap_or("")), "unknown unit {unit}");
                }
                let value = root.get(&name).unwrap_or_else(|| panic!("metric {name} has no root member"));
                assert!(value.is_number(), "metric {name} is a number: {value}");
                names.push(name);
            }
        }
        names
    }

    /// Every EMF line in `logs` validates, carries `function` = `function`, and together they
    /// define every name of `expected`.
    pub fn assert_valid_lines(logs: &str, function: &str, expected: &[&str]) {
        let mut defined = Vec::new();
        for line in logs.lines().filter(|l| l.contains("\"_aws\"")) {
            let doc: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("EMF line is not JSON ({e}): {line}"));
            assert_eq!(doc["function"], function, "{line}");
            defined.extend(validate(&doc));
        }
        for name in expected {
            assert!(defined.iter().any(|d| d == name), "no EMF line defines {name}: {defined:?}");
        }
    }
}

/// The worst posts there can be, written straight to DynamoDB as an import, an operator or an
/// older version of the code could (the API refuses most of this now): bodies of 10,900 U+0001
/// (a 6.9 MB `limit=100` page when lists carried bodies), quotes, backslashes, 4-byte
/// characters, titles over the limit. Measured where Lambda measures it: the response payload
/// the binary posts to the Runtime API (the proxy response JSON, the page escaped once more),
/// not the HTTP body. Every page of the walk stays under the list bound, short pages continue
/// by cursor until every post was seen, and the largest whole post stays under its own bound.
#[tokio::test]
async fn worst_case_posts_keep_every_response_payload_under_its_bound() {
    use shared::posts::{PAGE_MAX_PAYLOAD_BYTES, POST_MAX_PAYLOAD_BYTES};
    let f = fixture().await;
    let fillers = ['\u{1}', '"', '\\', '😀', '\u{85}'];
    let mut expected = Vec::new();
    for i in 0..100u32 {
        let c = fillers[i as usize % fillers.len()];
        let mut p = post(&format!("x{i:03}"), true, &at(i));
        p.title = std::iter::repeat_n('\u{1}', 300).collect();
        p.body = std::iter::repeat_n(c, 10_900).collect();
        p.author_id = "\"\\\u{2}😀".repeat(100);
        f.repo.put(&p).await.unwrap();
        expected.push(p.id.as_str().to_owned());
    }
    expected.reverse();
    // One post as large as DynamoDB stores: 390,000 control characters.
    let mut largest = post("largest", false, &at(200));
    largest.body = std::iter::repeat_n('\u{1}', 390_000).collect();
    largest.published = true;
    largest.created_at = at(0).replace("2026", "2025");
    f.repo.put(&largest).await.unwrap();
    expected.push("largest".into());

    let mut env: Vec<(String, String)> = f.env.clone().into_iter().collect();
    env.extend([
        ("AWS_ENDPOINT_URL".to_owned(), testkit::aws_endpoint()),
        ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
    ]);
    let options = lambda_harness::SpawnOptions { env, ..Default::default() };
    let function = lambda_harness::Function::start(env!("CARGO_BIN_EXE_posts-read"), &options).await.expect("spawn");
    if let Err(e) = function.wait_ready(Duration::from_secs(60)).await {
        panic!("init failed: {e}\n{}", function.logs());
    }
    let mut seen = Vec::new();
    let mut query = "limit=100".to_owned();
    let (mut largest_page, mut pages) = (0, 0);
    loop {
        let answer = function.invoke(&http_api_event("/posts", &query), Duration::from_secs(30)).await.unwrap();
        assert!(!answer.is_error, "{:?}\n{}", answer.error_summary(), function.logs());
        assert_eq!(answer.status_code(), Some(200));
        let payload = answer.body.len();
        assert!(payload <= PAGE_MAX_PAYLOAD_BYTES, "page payload {payload} > {PAGE_MAX_PAYLOAD_BYTES}");
        largest_page = largest_page.max(payload);
        pages += 1;
        let page: serde_json::Value = serde_json::from_str(answer.json().unwrap()["body"].as_str().unwrap()).unwrap();
        assert!(page["items"].as_array().is_some_and(|items| items.iter().all(|i| i.get("body").is_none())));
        seen.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(cursor) => {
                assert_eq!(page["hasMore"], true);
                query = format!("limit=100&cursor={cursor}");
            }
            None => break,
        }
        assert!(pages <= 101, "the walk ends");
    }
    assert_eq!(seen, expected, "every post once, newest first, however the pages were cut");

    let answer = function.invoke(&http_api_event("/posts/largest", ""), Duration::from_secs(30)).await.unwrap();
    assert!(!answer.is_error, "{:?}", answer.error_summary());
    assert_eq!(answer.status_code(), Some(200));
    let payload = answer.body.len();
    assert!(payload <= POST_MAX_PAYLOAD_BYTES, "post payload {payload} > {POST_MAX_PAYLOAD_BYTES}");
    assert!(payload > 390_000 * 7, "the body really is escaped twice: {payload}");
    eprintln!(
        "figures: largest list page payload {largest_page} bytes (bound {PAGE_MAX_PAYLOAD_BYTES}, {pages} pages); \
         largest post payload {payload} bytes (bound {POST_MAX_PAYLOAD_BYTES}); Lambda's limit {}",
        lambda_harness::MAX_RESPONSE_BYTES
    );
    function.stop().await;
}

/// The real binary, its cursor key in Secrets Manager (moto): the environment carries only
/// POSTS_CURSOR_SECRET_SECRET_ARN, as template.yaml gives it.
async fn start_with_cursor_secret_arn(f: &Fixture, arn: &str) -> lambda_harness::Function {
    let mut env: Vec<(String, String)> =
        f.env.clone().into_iter().filter(|(k, _)| k != "POSTS_CURSOR_SECRET").collect();
    env.extend(
        [
            ("POSTS_CURSOR_SECRET_SECRET_ARN", arn.to_owned()),
            ("AWS_ENDPOINT_URL", testkit::aws_endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let options = lambda_harness::SpawnOptions { env, ..Default::default() };
    lambda_harness::Function::start(env!("CARGO_BIN_EXE_posts-read"), &options).await.expect("spawn")
}

#[tokio::test]
async fn the_cursor_key_is_read_from_secrets_manager_at_init() {
    let f = fixture().await;
    let arn = testkit::aws_clients()
        .await
        .secretsmanager()
        .create_secret()
        .name(format!("posts-cursor-{}", uuid::Uuid::new_v4()))
        .secret_string(CURSOR_SECRET)
        .send()
        .await
        .expect("secret")
        .arn
        .expect("arn");
    let function = start_with_cursor_secret_arn(&f, &arn).await;
    if let Err(e) = function.wait_ready(Duration::from_secs(60)).await {
        panic!("init failed: {e}\n{}", function.logs());
    }
    let answer = function.invoke(&http_api_event("/posts", "limit=10"), Duration::from_secs(30)).await.expect("answer");
    assert_eq!(answer.status_code(), Some(200), "{:?}", answer.json());
    let report = function.stop().await;
    assert!(!report.logs.contains(CURSOR_SECRET), "the value is never logged");
}

#[tokio::test]
async fn a_cursor_key_it_cannot_read_fails_init_with_one_line_naming_it_and_the_permission() {
    let f = fixture().await;
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:posts-cursor-gone-AbCdEf";
    let function = start_with_cursor_secret_arn(&f, missing).await;
    assert!(function.wait_ready(Duration::from_secs(60)).await.is_err(), "init must fail");
    let report = function.stop().await;
    let lines: Vec<&str> = report.logs.lines().filter(|l| l.contains(missing)).collect();
    assert_eq!(lines.len(), 1, "one line: {}", report.logs);
    assert!(
        lines[0].contains("POSTS_CURSOR_SECRET") && lines[0].contains("secretsmanager:GetSecretValue"),
        "{}",
        lines[0]
    );
    assert!(!report.logs.contains("panicked"), "{}", report.logs);
}
