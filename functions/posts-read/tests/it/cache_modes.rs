//! posts-read's cache paths (reads, absence, lists, the stampede guard, invalidation by writes,
//! an expired lock) on Redis as ElastiCache Serverless serves it: a 3-master cluster, in
//! plaintext and over TLS (`rediss://`, the test's CA through `REDIS_CA_BUNDLE`,
//! `REDIS_CLUSTER=true`). `posts_read.rs` runs the full suite on one plaintext server.
//! DynamoDB reads are counted by `testkit::DynamoMeter`, Redis is read back with redis-cli.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{ORIGIN, at, get};
use posts_read::handler::{State, handle};
use posts_read::settings::Settings;
use shared::auth::UserId;
use shared::cache::{Cache, CacheSettings};
use shared::clients::{RedisSettings, RedisStore};
use shared::clock::timestamp_now;
use shared::config::FromEnv;
use shared::deadline::Deadline;
use shared::posts::{CachedPosts, LIST_GENERATION_KEY, numbered_page_key};
use shared::posts::{NewPost, PostWriter};
use shared::posts::{Post, PostChanges, PostId, PostsRepo};
use testkit::http::{ids, json, x_cache};
use testkit::{DynamoMeter, Provisioned, Redis, RedisMode};

struct Fixture {
    state: State,
    settings: Settings,
    repo: PostsRepo,
    meter: DynamoMeter,
    redis: Redis,
    env: HashMap<String, String>,
    _provisioned: Provisioned,
}

async fn fixture(mode: RedisMode) -> Fixture {
    let redis = Redis::start(mode);
    // REDIS_CLUSTER is left as template.yaml sets it ("true", as deployed).
    let provisioned = testkit::provision(&[
        ("REDIS_URL", &redis.url()),
        ("ALLOWED_ORIGINS", ORIGIN),
        ("POSTS_CURSOR_SECRET", "test-only-posts-cursor-secret-0123456789"),
    ]);
    let mut env = provisioned.env("posts-read");
    assert_eq!(env["REDIS_CLUSTER"], "true", "template.yaml deploys cluster mode");
    assert!(mode.cluster(), "this suite is for cluster modes; posts_read.rs covers one server");
    env.extend(redis.env().into_iter().map(|(k, v)| (k.to_owned(), v)));
    let settings = Settings::from_env(testkit::env_reader(env.clone())).expect("settings");
    assert_eq!(settings.posts.redis.url.starts_with("rediss://"), mode.tls());
    let meter = DynamoMeter::start(&testkit::aws_endpoint()).await;
    let state = State::new(&settings, &testkit::aws_clients_at(&meter.endpoint).await).expect("state");
    let repo = PostsRepo::new(testkit::aws_clients().await.dynamodb().clone(), &settings.posts.table);
    Fixture { state, settings, repo, meter, redis, env, _provisioned: provisioned }
}

impl Fixture {
    /// Another posts-read instance (its own Redis connection), reading through the meter.
    async fn instance(&self) -> State {
        State::new(&self.settings, &testkit::aws_clients_at(&self.meter.endpoint).await).expect("state")
    }

    /// posts-write's write path (conditional write, tombstone, generation bumps), unmetered.
    /// The write path posts-write uses, signed in to Redis as posts-write's cache user (the
    /// posts-read user may not bump the list generation).
    fn writer(&self) -> PostWriter {
        let mut vars = self.env.clone();
        vars.insert("REDIS_USERNAME".into(), "posts-write".into());
        vars.insert("REDIS_PASSWORD".into(), testkit::redis_acl::password("posts-write"));
        let mut env = testkit::env_reader(vars);
        let redis = Arc::new(RedisStore::new(RedisSettings::from_env(&mut env)).unwrap());
        PostWriter::new(
            CachedPosts::new(self.repo.clone(), Cache::new(redis, CacheSettings::default())),
            Duration::ZERO,
        )
    }

    fn generation(&self) -> u64 {
        self.redis.cli(&["GET", LIST_GENERATION_KEY]).parse().unwrap_or(0)
    }
}

fn post(id: &str, created_at: &str) -> Post {
    Post {
        id: PostId::parse(id).unwrap(),
        title: format!("title {id}"),
        body: format!("body {id}"),
        author_id: "user-1".into(),
        published: true,
        created_at: created_at.into(),
        updated_at: created_at.into(),
        version: 1,
    }
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(10))
}

async fn a_post_is_a_miss_then_a_hit_and_absence_is_cached(mode: RedisMode) {
    let f = fixture(mode).await;
    f.repo.put(&post("1", &timestamp_now())).await.unwrap();
    let first = handle(&f.state, get("/posts/1")).await;
    assert_eq!((first.status().as_u16(), x_cache(&first)), (200, "miss"));
    f.meter.take();
    let second = handle(&f.state, get("/posts/1")).await;
    assert_eq!((second.status().as_u16(), x_cache(&second)), (200, "hit"));
    assert_eq!(json(&second), json(&first));
    assert_eq!(f.meter.take().gets, 0, "the hit read nothing from DynamoDB");
    let ttl = f.redis.pttl("post:1");
    assert!((270_000..=330_000).contains(&ttl), "post TTL {ttl} ms");
    assert_eq!(f.redis.cli(&["EXISTS", "{post:1}:lock"]), "0", "the fill released its lock");

    let missing = handle(&f.state, get("/posts/nope")).await;
    assert_eq!((missing.status().as_u16(), x_cache(&missing)), (404, "miss"));
    f.meter.take();
    let again = handle(&f.state, get("/posts/nope")).await;
    assert_eq!((again.status().as_u16(), x_cache(&again)), (404, "hit"));
    assert_eq!(f.meter.take().gets, 0);
}

async fn a_list_page_is_a_miss_then_a_hit_under_its_generation(mode: RedisMode) {
    let f = fixture(mode).await;
    for i in 0..12 {
        f.repo.put(&post(&format!("p{i:02}"), &at(i))).await.unwrap();
    }
    let page1 = handle(&f.state, get("/posts?limit=10")).await;
    assert_eq!(x_cache(&page1), "miss");
    f.meter.take();
    let again = handle(&f.state, get("/posts?limit=10")).await;
    assert_eq!(x_cache(&again), "hit");
    assert_eq!(json(&again), json(&page1));
    assert_eq!(f.meter.take().queries, 0);
    let ttl = f.redis.pttl(&numbered_page_key(f.generation(), 10, 1));
    assert!((54_000..=66_000).contains(&ttl), "list TTL {ttl} ms");
    // The cursor page of the same walk.
    let cursor = json(&page1)["nextCursor"].as_str().unwrap().to_owned();
    let page2 = handle(&f.state, get(&format!("/posts?limit=10&cursor={cursor}"))).await;
    assert_eq!(ids(&json(&page2)), ["p01", "p00"]);
    assert_eq!(x_cache(&handle(&f.state, get(&format!("/posts?limit=10&cursor={cursor}"))).await), "hit");
}

/// Twenty instances miss one page at once while its Query takes 1.5 s: one Query.
async fn twenty_concurrent_cold_misses_make_one_read(mode: RedisMode) {
    let f = fixture(mode).await;
    for i in 0..15 {
        f.repo.put(&post(&format!("s{i:02}"), &at(i))).await.unwrap();
    }
    let mut instances = Vec::new();
    for _ in 0..20 {
        instances.push(f.instance().await);
    }
    f.meter.set_query_delay(Duration::from_millis(1500));
    f.meter.take();
    let results = futures::future::join_all(instances.iter().map(|s| handle(s, get("/posts?limit=10")))).await;
    f.meter.set_query_delay(Duration::ZERO);
    assert_eq!(f.meter.take().queries, 1, "one loader, nineteen waiters");
    let expected: Vec<String> = (5..15).rev().map(|i| format!("s{i:02}")).collect();
    for r in &results {
        assert_eq!(r.status(), 200);
        assert_eq!(ids(&json(r)), expected);
    }
    assert_eq!(results.iter().filter(|r| x_cache(r) == "miss").count(), 1);
}

/// Writes through posts-write's path: an update and a delete are visible on the next read, and
/// every list write moves the generation, so a cached page 1 is not served again.
async fn writes_invalidate_posts_and_pages(mode: RedisMode) {
    let f = fixture(mode).await;
    let writer = f.writer();
    let author = UserId::parse("user-1").unwrap();
    let new = NewPost { title: "before".into(), body: "b".into(), published: true };
    let created = writer.create(&author, new, deadline()).await.unwrap();
    let uri = format!("/posts/{}", created.id);
    assert_eq!(x_cache(&handle(&f.state, get(&uri)).await), "miss");
    assert_eq!(x_cache(&handle(&f.state, get(&uri)).await), "hit");
    assert_eq!(ids(&json(&handle(&f.state, get("/posts?limit=10")).await)), [created.id.as_str()]);
    assert_eq!(x_cache(&handle(&f.state, get("/posts?limit=10")).await), "hit");

    let generation = f.generation();
    let changes = PostChanges { title: Some("after".into()), ..Default::default() };
    writer.update(&author, &created.id, None, &changes, deadline()).await.unwrap();
    assert!(f.generation() > generation, "a published post's edit moves the list generation");
    let read = handle(&f.state, get(&uri)).await;
    assert_eq!((x_cache(&read), json(&read)["title"].as_str()), ("miss", Some("after")));
    let page = json(&handle(&f.state, get("/posts?limit=10")).await);
    assert_eq!(page["items"][0]["title"], "after");

    writer.delete(&author, &created.id, None, deadline()).await.unwrap();
    let gone = handle(&f.state, get(&uri)).await;
    assert_eq!((gone.status().as_u16(), x_cache(&gone)), (404, "miss"), "the tombstone is a miss");
    f.meter.take();
    let gone = handle(&f.state, get(&uri)).await;
    assert_eq!((gone.status().as_u16(), x_cache(&gone)), (404, "hit"));
    assert_eq!(f.meter.take().gets, 0);
    assert!(ids(&json(&handle(&f.state, get("/posts?limit=10")).await)).is_empty());
}

/// What a holder that died mid-load leaves behind expires, and the next caller loads once.
async fn a_dead_holders_lock_expires_and_the_next_caller_loads_once(mode: RedisMode) {
    let f = fixture(mode).await;
    f.repo.put(&post("1", &timestamp_now())).await.unwrap();
    assert_eq!(f.redis.cli(&["SET", "{post:1}:lock", "dead-holder", "PX", "700"]), "OK");
    f.meter.take();
    let r = handle(&f.state, get("/posts/1")).await;
    assert_eq!((r.status().as_u16(), x_cache(&r)), (200, "miss"));
    assert_eq!(f.meter.take().gets, 1);
    assert_eq!(x_cache(&handle(&f.state, get("/posts/1")).await), "hit");
}

macro_rules! cache_suite {
    ($($mode:ident),+) => {
        $(
            #[allow(non_snake_case)]
            mod $mode {
                use super::*;

                #[tokio::test]
                async fn a_post_is_a_miss_then_a_hit_and_absence_is_cached() {
                    super::a_post_is_a_miss_then_a_hit_and_absence_is_cached(RedisMode::$mode).await;
                }

                #[tokio::test]
                async fn a_list_page_is_a_miss_then_a_hit_under_its_generation() {
                    super::a_list_page_is_a_miss_then_a_hit_under_its_generation(RedisMode::$mode).await;
                }

                #[tokio::test]
                async fn twenty_concurrent_cold_misses_make_one_read() {
                    super::twenty_concurrent_cold_misses_make_one_read(RedisMode::$mode).await;
                }

                #[tokio::test]
                async fn writes_invalidate_posts_and_pages() {
                    super::writes_invalidate_posts_and_pages(RedisMode::$mode).await;
                }

                #[tokio::test]
                async fn a_dead_holders_lock_expires_and_the_next_caller_loads_once() {
                    super::a_dead_holders_lock_expires_and_the_next_caller_loads_once(RedisMode::$mode).await;
                }
            }
        )+
    };
}

cache_suite!(Cluster, ClusterTls);
