//! Where the posts live, as posts-read and posts-write both configure it: the DynamoDB table
//! (`POSTS_TABLE`) and the Redis cache in front of it (`REDIS_*`). The cache's own settings read no
//! variable: its TTLs are the posts' constants and its waits follow the invocation's deadline.

use std::sync::Arc;

use crate::cache::{Cache, CacheSettings};
use crate::clients::{RedisSettings, RedisStore, RedisStoreError};
use crate::config::EnvReader;
use crate::posts::{CachedPosts, PostsRepo};

/// What posts-read and posts-write read from the environment to reach the posts.
#[derive(Clone, Debug)]
pub struct PostsSettings {
    /// The DynamoDB table (`POSTS_TABLE`).
    pub table: String,
    /// The Redis cache's connection (`REDIS_*`).
    pub redis: RedisSettings,
    /// How the cache's waiters poll for a fill (fixed defaults; no variable).
    pub cache: CacheSettings,
}

impl PostsSettings {
    /// Reads `POSTS_TABLE` and `REDIS_*`; each bad one is recorded on `env`.
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        Self {
            table: env.required("POSTS_TABLE", "the DynamoDB posts table name"),
            redis: RedisSettings::from_env(env),
            cache: CacheSettings::from_env(env),
        }
    }
}

impl CachedPosts {
    /// The table and its cache, built once per execution environment. Connecting to Redis is
    /// lazy (the first command connects), so this does no I/O.
    pub fn connect(settings: &PostsSettings, dynamodb: aws_sdk_dynamodb::Client) -> Result<Self, RedisStoreError> {
        let redis = Arc::new(RedisStore::new(settings.redis.clone())?);
        Ok(Self::new(PostsRepo::new(dynamodb, &settings.table), Cache::new(redis, settings.cache)))
    }
}
