//! Request in, typed query, cached read, response out.

use std::sync::Arc;

use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use shared::api::{self, Cors, Problem};
use shared::cache::{Cache, CacheStatus};
use shared::cached_posts::CachedPosts;
use shared::clients::{AwsClients, RedisStore};
use shared::posts::{PostId, PostsRepo};

use crate::settings::Settings;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;
/// Pages are read from the start of the index, so the deepest page is bounded.
pub const MAX_PAGE: u32 = 1000;

/// Built once per execution environment.
#[derive(Clone, Debug)]
pub struct State {
    pub posts: CachedPosts,
    pub cors: Cors,
}

impl State {
    pub fn new(settings: &Settings, aws: &AwsClients) -> Result<Self, shared::clients::RedisStoreError> {
        let redis = Arc::new(RedisStore::new(settings.redis.clone())?);
        Ok(Self {
            posts: CachedPosts::new(
                PostsRepo::new(aws.dynamodb.clone(), &settings.posts_table),
                Cache::new(redis, settings.cache),
            ),
            cors: settings.cors.clone(),
        })
    }
}

pub async fn handle(state: &State, req: Request) -> Response<Body> {
    api::respond(&state.cors, req, |req| route(state, req)).await
}

async fn route(state: &State, req: Request) -> Result<Response<Body>, Problem> {
    let segments = api::path_segments(&req);
    let is_get = req.method() == lambda_http::http::Method::GET;
    match segments.as_slice() {
        [.., "posts", id] if is_get => get_post(state, id).await,
        [.., "posts"] if is_get => list_posts(state, &req).await,
        [.., "posts", _] | [.., "posts"] => Err(Problem::method_not_allowed("GET, OPTIONS")),
        _ => Err(Problem::not_found("no such route")),
    }
}

async fn get_post(state: &State, raw_id: &str) -> Result<Response<Body>, Problem> {
    let id = PostId::parse(raw_id)?;
    let (post, status) = state.posts.published_post(&id).await?;
    let post = post.ok_or_else(|| Problem::not_found(format!("post {id} does not exist")))?;
    Ok(with_cache_status(api::json(StatusCode::OK, &post), status))
}

async fn list_posts(state: &State, req: &Request) -> Result<Response<Body>, Problem> {
    let page = api::int_param(req, "page", 1, 1..=MAX_PAGE)?;
    let limit = api::int_param(req, "limit", DEFAULT_LIMIT, 1..=MAX_LIMIT)?;
    let (page, status) = state.posts.page(page, limit).await?;
    Ok(with_cache_status(api::json(StatusCode::OK, &page), status))
}

fn with_cache_status(mut response: Response<Body>, status: CacheStatus) -> Response<Body> {
    response.headers_mut().insert("x-cache", HeaderValue::from_static(status.as_str()));
    response
}
