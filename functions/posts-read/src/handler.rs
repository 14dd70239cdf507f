//! Request in, typed query, cached read, response out.

use std::time::Duration;

use lambda_http::http::{HeaderName, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use shared::cache::CacheStatus;
use shared::clients::AwsClients;
use shared::deadline::Deadline;
use shared::http::{self, Cors, Problem, Route, Routes};
use shared::posts::CachedPosts;
use shared::posts::PostId;
use shared::posts::{Cursors, PUBLISHED_LIST};

use crate::settings::Settings;

pub const DEFAULT_LIMIT: u32 = 20;
/// A few page sizes only: with the cursor and the generation they make the cache key, and a
/// small set keeps the keys a caller can make (and the pages cached) few.
pub const ALLOWED_LIMITS: [u32; 4] = [10, 20, 50, 100];
// A page's payload bound (`shared::posts::PAGE_MAX_PAYLOAD_BYTES`) counts this many items.
const _: () = assert!(ALLOWED_LIMITS[3] as usize <= shared::posts::MAX_LIST_LIMIT);
/// `page × limit` at most this: pages by number are for the first screens; deeper, use cursors.
pub const MAX_PAGE_ITEMS: u32 = 1000;
/// The deadline of a request that carries no Lambda context (a test calling `handle`): the
/// template's function Timeout.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Built once per execution environment.
#[derive(Clone, Debug)]
pub struct State {
    pub posts: CachedPosts,
    pub cursors: Cursors,
    pub cors: Cors,
}

impl State {
    pub fn new(settings: &Settings, aws: &AwsClients) -> Result<Self, shared::clients::RedisStoreError> {
        Ok(Self {
            posts: CachedPosts::connect(&settings.posts, aws.dynamodb().clone())?,
            cursors: settings.cursors.clone(),
            cors: settings.cors.clone(),
        })
    }
}

impl shared::runtime::Function for State {
    type Settings = Settings;

    async fn init(settings: &Settings) -> Result<Self, lambda_http::Error> {
        Ok(Self::new(settings, &AwsClients::load(false).await)?)
    }
}

/// Every answer carries `x-cache`: `hit` only when the body came from the cache, `miss` for
/// everything else (a 404 read from DynamoDB, a refused request, a 503).
pub async fn handle(state: &State, req: Request) -> Response<Body> {
    let mut response = http::respond(&state.cors, req, |req| route(state, req)).await;
    if !response.headers().contains_key("x-cache") {
        response.headers_mut().insert("x-cache", HeaderValue::from_static(CacheStatus::Miss.as_str()));
    }
    response
}

fn deadline(req: &Request) -> Deadline {
    match req.lambda_context_ref() {
        Some(context) => Deadline::from_epoch_ms(context.deadline),
        None => Deadline::after(DEFAULT_DEADLINE),
    }
}

/// What posts-read serves (`template.yaml` declares the same routes; `tools/e2e` checks it).
#[derive(Clone, Copy, Debug)]
pub enum Op {
    List,
    Get,
}

pub const ROUTES: Routes<Op> = Routes(&[
    Route { method: Method::GET, path: "/posts", op: Op::List },
    Route { method: Method::GET, path: "/posts/{id}", op: Op::Get },
]);

async fn route(state: &State, req: Request) -> Result<Response<Body>, Problem> {
    let matched = ROUTES.find(&req)?;
    match (matched.op, matched.params.as_slice()) {
        (Op::Get, [id]) => get_post(state, id, deadline(&req)).await,
        (Op::List, _) => list_posts(state, &req).await,
        (Op::Get, _) => Err(Problem::not_found("no such route")),
    }
}

async fn get_post(state: &State, raw_id: &str, deadline: Deadline) -> Result<Response<Body>, Problem> {
    let id = PostId::parse(raw_id)?;
    let (post, status) = state.posts.published_post(&id, deadline).await?;
    match post {
        Some(post) => Ok(with_cache_status(http::json(StatusCode::OK, &post), status)),
        // The 404 says whether the absence itself came from the cache.
        None => Err(Problem::not_found(format!("post {id} does not exist"))
            .with_header(HeaderName::from_static("x-cache"), HeaderValue::from_static(status.as_str()))),
    }
}

fn limit_param(req: &Request) -> Result<u32, Problem> {
    let invalid = || {
        Problem::bad_request(
            "invalid-parameter",
            "Invalid query parameter",
            format!("limit must be one of {ALLOWED_LIMITS:?}"),
        )
        .with_extra(serde_json::json!({ "parameter": "limit", "allowed": ALLOWED_LIMITS }))
    };
    match http::query_param(req, "limit")? {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => raw.parse::<u32>().ok().filter(|l| ALLOWED_LIMITS.contains(l)).ok_or_else(invalid),
    }
}

async fn list_posts(state: &State, req: &Request) -> Result<Response<Body>, Problem> {
    let limit = limit_param(req)?;
    let cursor = http::query_param(req, "cursor")?;
    let has_page = http::query_param(req, "page")?.is_some();
    let deadline = deadline(req);
    let (page, status) = match cursor {
        Some(_) if has_page => {
            return Err(Problem::bad_request(
                "invalid-parameter",
                "Invalid query parameter",
                "give either page or cursor, not both",
            )
            .with_extra(serde_json::json!({ "parameter": "page" })));
        }
        Some(cursor) => {
            let position = state.cursors.open(cursor, PUBLISHED_LIST, limit)?;
            state.posts.page_after(&state.cursors, cursor, &position, limit, deadline).await?
        }
        None => {
            let max_page = MAX_PAGE_ITEMS / limit;
            let page = match http::query_param(req, "page")? {
                None => 1,
                Some(raw) => raw.parse::<u64>().ok().filter(|p| *p >= 1).ok_or_else(|| {
                    Problem::bad_request(
                        "invalid-parameter",
                        "Invalid query parameter",
                        "page must be an integer from 1",
                    )
                    .with_extra(serde_json::json!({ "parameter": "page" }))
                })?,
            };
            if page > u64::from(max_page) {
                return Err(Problem::bad_request(
                    "page-too-deep",
                    "Page too deep",
                    format!(
                        "page × limit may be at most {MAX_PAGE_ITEMS} (page {max_page} at limit={limit}); \
                         deeper pages are reached with cursor=<nextCursor of the page before>"
                    ),
                )
                .with_extra(serde_json::json!({ "parameter": "page", "maxPage": max_page, "use": "cursor" })));
            }
            let page = u32::try_from(page).unwrap_or(max_page);
            state.posts.page_by_number(&state.cursors, page, limit, deadline).await?
        }
    };
    Ok(with_cache_status(http::json(StatusCode::OK, &page), status))
}

fn with_cache_status(mut response: Response<Body>, status: CacheStatus) -> Response<Body> {
    response.headers_mut().insert("x-cache", HeaderValue::from_static(status.as_str()));
    response
}
