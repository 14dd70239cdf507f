//! posts-write's cache side (writes visible on the next read, the generation bumps, the
//! stale-fill race, the stampede guard) on Redis as ElastiCache Serverless serves it: a 3-master
//! cluster, in plaintext and over TLS (`rediss://`, the test's CA through `REDIS_CA_BUNDLE`,
//! `REDIS_CLUSTER=true` from template.yaml). `posts_write.rs` runs the full suite on one plaintext
//! server. Redis is read back with redis-cli, never through the code under test.

use std::sync::Arc;
use std::time::Duration;

use crate::common;
use lambda_http::{Body, Response};
use serde_json::{Value, json};
use shared::auth::AccessTokenSigner;
use shared::cache::{Cache, CacheSettings, CacheStatus};
use shared::clients::{RedisSettings, RedisStore};
use shared::config::FromEnv;
use shared::deadline::Deadline;
use shared::posts::{CachedPosts, LIST_GENERATION_KEY, POST_TTLS, post_key};
use shared::posts::{Post, PostId, PostsRepo};
use testkit::http::{ids, json as json_of, x_cache};
use testkit::{Provisioned, Redis, RedisMode};

struct Fixture {
    write: posts_write::handler::State,
    read: posts_read::handler::State,
    env: std::collections::HashMap<String, String>,
    tokens: AccessTokenSigner,
    repo: PostsRepo,
    redis: Redis,
    _provisioned: Provisioned,
}

async fn fixture(mode: RedisMode) -> Fixture {
    assert!(mode.cluster(), "this suite is for cluster modes; posts_write.rs covers one server");
    let redis = Redis::start(mode);
    // REDIS_CLUSTER is left as template.yaml sets it ("true", as deployed).
    let provisioned = testkit::provision(&[
        ("REDIS_URL", &redis.url()),
        ("JWT_PUBLIC_KEYS", &testkit::test_public_keys()),
        ("POSTS_CURSOR_SECRET", "test-only-posts-cursor-secret-0123456789"),
    ]);
    let with_redis = |function: &str| {
        let mut env = provisioned.env(function);
        assert_eq!(env["REDIS_CLUSTER"], "true", "template.yaml deploys {function} in cluster mode");
        env.extend(redis.env().into_iter().map(|(k, v)| (k.to_owned(), v)));
        env
    };
    let env = with_redis("posts-write");
    let aws = testkit::aws_clients().await;
    let write_settings = posts_write::settings::Settings::from_env(testkit::env_reader(env.clone())).unwrap();
    assert_eq!(write_settings.posts.redis.url.starts_with("rediss://"), mode.tls());
    let read_settings =
        posts_read::settings::Settings::from_env(testkit::env_reader(with_redis("posts-read"))).unwrap();
    Fixture {
        write: posts_write::handler::State::new(&write_settings, &aws).unwrap(),
        read: posts_read::handler::State::new(&read_settings, &aws).unwrap(),
        repo: PostsRepo::new(aws.dynamodb().clone(), &write_settings.posts.table),
        tokens: testkit::test_signer(),
        env,
        redis,
        _provisioned: provisioned,
    }
}

impl Fixture {
    async fn send(&self, method: &str, uri: &str, body: Option<Value>) -> Response<Body> {
        let bearer = common::bearer(&self.tokens, "user-1");
        posts_write::handler::handle(&self.write, common::request(method, uri, Some(&bearer), body)).await
    }

    async fn read(&self, uri: &str) -> Response<Body> {
        common::read(&self.read, uri).await
    }

    async fn create(&self, title: &str) -> Value {
        let r = self.send("POST", "/posts", Some(json!({"title": title, "body": "b", "published": true}))).await;
        assert_eq!(r.status(), 201);
        json_of(&r)
    }

    fn generation(&self) -> u64 {
        self.redis.cli(&["GET", LIST_GENERATION_KEY]).parse().unwrap_or(0)
    }
}

async fn writes_are_visible_on_the_next_read(mode: RedisMode) {
    let f = fixture(mode).await;
    let first = f.create("first").await;
    assert_eq!(x_cache(&f.read("/posts").await), "miss");
    assert_eq!(x_cache(&f.read("/posts").await), "hit");
    let before = f.generation();
    let second = f.create("second").await;
    assert_eq!(f.generation(), before + 2, "a list write bumps twice (after the write, after the index)");
    assert_eq!(ids(&json_of(&f.read("/posts").await)), [second["id"].as_str().unwrap(), first["id"].as_str().unwrap()]);

    let uri = format!("/posts/{}", first["id"].as_str().unwrap());
    assert_eq!(x_cache(&f.read(&uri).await), "miss");
    assert_eq!(x_cache(&f.read(&uri).await), "hit");
    assert_eq!(f.send("PATCH", &uri, Some(json!({"title": "edited"}))).await.status(), 200);
    assert_eq!(json_of(&f.read(&uri).await)["title"], "edited");
    assert_eq!(f.send("PATCH", &uri, Some(json!({"published": false}))).await.status(), 200);
    assert_eq!(f.read(&uri).await.status(), 404);
    assert_eq!(ids(&json_of(&f.read("/posts").await)), [second["id"].as_str().unwrap()]);
    assert_eq!(f.send("DELETE", &uri, None).await.status(), 204);
    // The delete leaves a tombstone at its version (4: create, two patches, delete) on the node
    // that owns the key; the next read replaces it with the absence at that version.
    let key = format!("post:{}", first["id"].as_str().unwrap());
    assert_eq!(f.redis.cli(&["GET", &key]), "4|");
    assert_eq!(f.read(&uri).await.status(), 404);
    assert_eq!(f.redis.cli(&["GET", &key]), "4|null");
}

/// A reader that loaded version N before a write of N+1 cannot put N back.
async fn a_slow_reader_cannot_put_back_a_value_older_than_a_write(mode: RedisMode) {
    let f = fixture(mode).await;
    let created = f.create("old").await;
    let id = PostId::parse(created["id"].as_str().unwrap()).unwrap();
    let uri = format!("/posts/{id}");
    let (loaded, status) = f
        .read
        .posts
        .cache
        .get_or_load(
            &post_key(&id),
            POST_TTLS,
            |p: &Post| p.version,
            Deadline::after(Duration::from_secs(10)),
            || async {
                let old = f.repo.get(&id).await;
                assert_eq!(f.send("PATCH", &uri, Some(json!({"title": "new"}))).await.status(), 200);
                old
            },
        )
        .await
        .unwrap();
    assert_eq!((loaded.unwrap().title.as_str(), status), ("old", CacheStatus::Miss));
    assert_eq!(json_of(&f.read(&uri).await)["title"], "new", "the stale fill must not land");
}

/// Twenty cold instances (their own connections) missing one key read DynamoDB once.
async fn twenty_cold_instances_missing_one_key_read_the_database_once(mode: RedisMode) {
    let f = fixture(mode).await;
    let post = f.create("hot").await;
    let id = PostId::parse(post["id"].as_str().unwrap()).unwrap();
    // The create left a tombstone; clear it so this is a plain cold miss for everyone.
    assert_eq!(f.redis.cli(&["DEL", &post_key(&id)]), "1");
    let aws = testkit::aws_clients().await;
    let mut instances = Vec::new();
    for _ in 0..20 {
        let mut env = testkit::env_reader(f.env.clone());
        let redis = Arc::new(RedisStore::new(RedisSettings::from_env(&mut env)).unwrap());
        let repo = PostsRepo::new(aws.dynamodb().clone(), f.repo.table());
        instances.push(CachedPosts::new(repo, Cache::new(redis, CacheSettings::default())));
    }
    let deadline = Deadline::after(Duration::from_secs(10));
    let results = futures::future::join_all(instances.iter().map(|i| i.published_post(&id, deadline))).await;
    for r in &results {
        assert_eq!(r.as_ref().unwrap().0.as_ref().unwrap().title, "hot");
    }
    let reads: u64 = instances.iter().map(|i| i.repo.source_reads()).sum();
    assert_eq!(reads, 1, "one loader, nineteen waiters");
    assert_eq!(results.iter().filter(|r| r.as_ref().unwrap().1 == CacheStatus::Miss).count(), 1);
}

macro_rules! cache_suite {
    ($($mode:ident),+) => {
        $(
            #[allow(non_snake_case)]
            mod $mode {
                use super::*;

                #[tokio::test]
                async fn writes_are_visible_on_the_next_read() {
                    super::writes_are_visible_on_the_next_read(RedisMode::$mode).await;
                }

                #[tokio::test]
                async fn a_slow_reader_cannot_put_back_a_value_older_than_a_write() {
                    super::a_slow_reader_cannot_put_back_a_value_older_than_a_write(RedisMode::$mode).await;
                }

                #[tokio::test]
                async fn twenty_cold_instances_missing_one_key_read_the_database_once() {
                    super::twenty_cold_instances_missing_one_key_read_the_database_once(RedisMode::$mode).await;
                }
            }
        )+
    };
}

cache_suite!(Cluster, ClusterTls);
