//! The template's cache users on a real redis-server (and a cluster): each function's user reaches
//! only its own keys and commands. A compromised posts-read cannot read or forge a session.

use std::time::Duration;

use redis::{ErrorKind, ServerErrorKind};
use shared::clients::{RedisSettings, RedisStore, RedisStoreError, Retry};
use testkit::{RedisCluster, RedisServer};

fn store(url: String, cluster: bool) -> RedisStore {
    RedisStore::new(RedisSettings {
        url,
        cluster,
        username: None,
        password: None,
        connect_timeout: Duration::from_millis(1000),
        response_timeout: Duration::from_millis(1000),
        reconnect_backoff: Duration::from_millis(100),
        ca_bundle: None,
    })
    .expect("settings")
}

async fn run(store: &RedisStore, args: &[&str]) -> Result<redis::Value, RedisStoreError> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    store.query::<redis::Value>(Retry::Idempotent, &cmd).await
}

fn is_noperm(result: &Result<redis::Value, RedisStoreError>) -> bool {
    matches!(result, Err(RedisStoreError::Command(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm))
}

const SESSION_KEY: &str = "auth:{user-1}:sessions";

async fn posts_read_cannot_touch_sessions(as_posts_read: &RedisStore) {
    assert!(run(as_posts_read, &["SET", "post:1", "v", "PX", "10000"]).await.is_ok(), "its own keys work");
    assert!(run(as_posts_read, &["GET", "post:1"]).await.is_ok());
    for (name, args) in [
        ("read a session", vec!["HGETALL", SESSION_KEY]),
        ("forge a session", vec!["HSET", SESSION_KEY, "fam", "0:0:9999999999999:9999999999999"]),
        ("delete a session", vec!["DEL", SESSION_KEY]),
        ("a string command on it", vec!["GET", SESSION_KEY]),
        ("a script on it", vec!["EVAL", "return redis.call('HGETALL', KEYS[1])", "1", SESSION_KEY]),
    ] {
        let result = run(as_posts_read, &args).await;
        assert!(is_noperm(&result), "posts-read could {name}: {result:?}");
    }
}

#[tokio::test]
async fn each_function_reaches_only_its_own_keys_and_commands() {
    let server = RedisServer::start();
    // The session that must stay out of posts-read's reach.
    assert_eq!(server.cli(&["HSET", SESSION_KEY, "fam", "0:0:1:1"]), "(integer) 1");

    let posts_read = store(server.url_as("posts-read"), false);
    posts_read_cannot_touch_sessions(&posts_read).await;
    let posts_write = store(server.url_as("posts-write"), false);
    assert!(run(&posts_write, &["INCR", "posts:list:gen"]).await.is_ok());
    assert!(is_noperm(&run(&posts_write, &["HGETALL", SESSION_KEY]).await), "posts-write on a session");
    assert!(is_noperm(&run(&posts_read, &["INCR", "posts:list:gen"]).await), "posts-read bumps no generation");

    let auth = store(server.url_as("auth-refresh"), false);
    assert!(run(&auth, &["HGETALL", SESSION_KEY]).await.is_ok());
    assert!(is_noperm(&run(&auth, &["GET", "post:1"]).await), "auth-refresh on a post");
    assert!(is_noperm(&run(&auth, &["SET", "auth:{user-1}:x", "v"]).await), "auth-refresh writes no strings");

    // Nobody may wipe, enumerate or reconfigure the cache.
    for user in [&posts_read, &posts_write, &auth] {
        for args in [
            vec!["FLUSHALL"],
            vec!["FLUSHDB"],
            vec!["KEYS", "*"],
            vec!["SCAN", "0"],
            vec!["CONFIG", "GET", "*"],
            vec!["ACL", "LIST"],
            vec!["CLIENT", "LIST"],
            vec!["SCRIPT", "FLUSH"],
            vec!["SHUTDOWN", "NOSAVE"],
        ] {
            let result = run(user, &args).await;
            assert!(is_noperm(&result), "{args:?} allowed: {result:?}");
        }
    }
    assert_eq!(server.cli(&["HGET", SESSION_KEY, "fam"]), "\"0:0:1:1\"", "the session is untouched");

    // A wrong password is no way in either.
    let url = server.url_as("posts-read").replace("-0001@", "-9999@");
    assert!(run(&store(url, false), &["GET", "post:1"]).await.is_err());
}

#[tokio::test]
async fn on_the_cluster_posts_read_gets_noperm_on_a_session_too() {
    let cluster = RedisCluster::start(3);
    posts_read_cannot_touch_sessions(&store(cluster.url_as("posts-read"), true)).await;
}
