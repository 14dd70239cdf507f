//! Request in, authenticated author and validated input, conditional write, response out.

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use shared::auth::{self, AccessTokens, UserId};
use shared::clients::{AwsClients, RedisStoreError};
use shared::deadline::Deadline;
use shared::http::{self, Cors, Problem, Route, Routes};
use shared::posts::{CachedPosts, NewPost, Post, PostId, PostWriter, parse_changes};

use crate::settings::Settings;

/// The largest JSON body accepted: a 50 KB post body plus JSON escaping and the other fields.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The deadline of a request that carries no Lambda context (a test calling `handle`): the
/// template's function Timeout.
pub const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct State {
    pub writer: PostWriter,
    pub tokens: AccessTokens,
    pub cors: Cors,
}

impl State {
    pub fn new(settings: &Settings, aws: &AwsClients) -> Result<Self, RedisStoreError> {
        let posts = CachedPosts::connect(&settings.posts, aws.dynamodb().clone())?;
        Ok(Self {
            writer: PostWriter::new(posts, settings.index_wait),
            tokens: AccessTokens::new(&settings.access_tokens),
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

pub async fn handle(state: &State, req: Request) -> Response<Body> {
    http::respond(&state.cors, req, |req| route(state, req)).await
}

/// What posts-write serves (`template.yaml` declares the same routes; `tools/e2e` checks it).
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Create,
    Update,
    Delete,
}

pub const ROUTES: Routes<Op> = Routes(&[
    Route { method: Method::POST, path: "/posts", op: Op::Create },
    Route { method: Method::PATCH, path: "/posts/{id}", op: Op::Update },
    Route { method: Method::DELETE, path: "/posts/{id}", op: Op::Delete },
]);

async fn route(state: &State, req: Request) -> Result<Response<Body>, Problem> {
    let matched = ROUTES.find(&req)?;
    match (matched.op, matched.params.as_slice()) {
        (Op::Create, _) => create(state, &req).await,
        (Op::Update, [id]) => update(state, &req, id).await,
        (Op::Delete, [id]) => delete(state, &req, id).await,
        (Op::Update | Op::Delete, _) => Err(Problem::not_found("no such route")),
    }
}

/// The authenticated author. Authentication comes before any look at the body or the id, so
/// an anonymous caller learns nothing about either.
fn author(state: &State, req: &Request) -> Result<UserId, Problem> {
    auth::bearer_user(&state.tokens, req)
}

/// `If-Match: "7"` → `Some(7)`; absent or `*` → `None`.
fn if_match(req: &Request) -> Result<Option<u64>, Problem> {
    let Some(raw) = req.headers().get(header::IF_MATCH) else { return Ok(None) };
    let text = raw.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).and_then(|t| t.parse::<u64>().ok()).map(Some).ok_or_else(
        || {
            Problem::bad_request(
                "invalid-if-match",
                "Invalid If-Match",
                "If-Match must be an ETag this API sent, like \"3\"",
            )
        },
    )
}

fn deadline(req: &Request) -> Deadline {
    match req.lambda_context_ref() {
        Some(context) => Deadline::from_epoch_ms(context.deadline),
        None => Deadline::after(DEFAULT_DEADLINE),
    }
}

fn with_etag(mut response: Response<Body>, post: &Post) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", post.version)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

async fn create(state: &State, req: &Request) -> Result<Response<Body>, Problem> {
    let author = author(state, req)?;
    let body: serde_json::Value = http::json_body(req, MAX_BODY_BYTES)?;
    let new = NewPost::parse(&body)?;
    let post = state.writer.create(&author, new, deadline(req)).await?;
    let mut response = with_etag(http::json(StatusCode::CREATED, &post), &post);
    if let Ok(location) = HeaderValue::from_str(&format!("/posts/{}", post.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn update(state: &State, req: &Request, raw_id: &str) -> Result<Response<Body>, Problem> {
    let author = author(state, req)?;
    let id = PostId::parse(raw_id)?;
    let expected = if_match(req)?;
    let body: serde_json::Value = http::json_body(req, MAX_BODY_BYTES)?;
    let changes = parse_changes(&body)?;
    let post = state.writer.update(&author, &id, expected, &changes, deadline(req)).await?;
    Ok(with_etag(http::json(StatusCode::OK, &post), &post))
}

async fn delete(state: &State, req: &Request, raw_id: &str) -> Result<Response<Body>, Problem> {
    let author = author(state, req)?;
    let id = PostId::parse(raw_id)?;
    let expected = if_match(req)?;
    state.writer.delete(&author, &id, expected, deadline(req)).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}
