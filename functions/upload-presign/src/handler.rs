//! Request in, authenticated user and validated request, presigned PUT or recorded avatar out.

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use shared::auth::{self, AccessTokens, UserId};
use shared::clients::AwsClients;
use shared::http::{self, Cors, Problem, Route, Routes};
use shared::uploads::{Avatars, RecordRequest, UploadRequest, Uploads};

use crate::settings::Settings;

/// The largest JSON body accepted: three short fields and a filename of at most 1 KiB.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

#[derive(Clone, Debug)]
pub struct State {
    pub uploads: Uploads,
    pub avatars: Avatars,
    pub tokens: AccessTokens,
    pub cors: Cors,
}

impl State {
    pub fn new(settings: &Settings, aws: &AwsClients) -> Self {
        Self {
            uploads: Uploads::new(aws.s3().clone(), settings.uploads.clone()),
            avatars: Avatars::new(
                aws.s3().clone(),
                aws.dynamodb().clone(),
                settings.uploads.clone(),
                settings.avatars.clone(),
            ),
            tokens: AccessTokens::new(&settings.access_tokens),
            cors: settings.cors.clone(),
        }
    }
}

impl shared::runtime::Function for State {
    type Settings = Settings;

    async fn init(settings: &Settings) -> Result<Self, lambda_http::Error> {
        Ok(Self::new(settings, &AwsClients::load(settings.uploads.force_path_style).await))
    }
}

pub async fn handle(state: &State, req: Request) -> Response<Body> {
    http::respond(&state.cors, req, |req| route(state, req)).await
}

/// What upload-presign serves (`template.yaml` declares the same routes; `tools/e2e` checks it).
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Presign,
    RecordAvatar,
    Profile,
}

pub const ROUTES: Routes<Op> = Routes(&[
    Route { method: Method::POST, path: "/uploads", op: Op::Presign },
    Route { method: Method::PUT, path: "/users/me/avatar", op: Op::RecordAvatar },
    Route { method: Method::GET, path: "/users/{id}", op: Op::Profile },
]);

async fn route(state: &State, req: Request) -> Result<Response<Body>, Problem> {
    let matched = ROUTES.find(&req)?;
    match (matched.op, matched.params.as_slice()) {
        (Op::Presign, _) => create(state, &req).await,
        (Op::RecordAvatar, _) => record(state, &req).await,
        (Op::Profile, [id]) => profile(state, id).await,
        (Op::Profile, _) => Err(Problem::not_found("no such route")),
    }
}

/// Authentication comes before any look at the body, so an anonymous caller learns nothing
/// about the limits.
fn user(state: &State, req: &Request) -> Result<UserId, Problem> {
    auth::bearer_user(&state.tokens, req)
}

fn no_store(mut response: Response<Body>) -> Response<Body> {
    // Presigned URLs are capabilities for their lifetime: no shared cache may keep them.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn create(state: &State, req: &Request) -> Result<Response<Body>, Problem> {
    let user = user(state, req)?;
    let body: UploadRequest = http::json_body(req, MAX_BODY_BYTES)?;
    let plan = state.uploads.plan(&user, &body)?;
    let upload = state.uploads.presign(plan).await?;
    tracing::info!(user = %user, key = %upload.key, filename = %upload.filename, "upload presigned");
    Ok(no_store(http::json(StatusCode::OK, &upload)))
}

/// `PUT /users/me/avatar` `{"key"}`: 200 with the caller's profile.
async fn record(state: &State, req: &Request) -> Result<Response<Body>, Problem> {
    let user = user(state, req)?;
    let body: RecordRequest = http::json_body(req, MAX_BODY_BYTES)?;
    let profile = state.avatars.record(&user, &body.key).await?;
    Ok(no_store(http::json(StatusCode::OK, &profile)))
}

/// `GET /users/{id}`: the public profile, anonymous.
async fn profile(state: &State, raw_id: &str) -> Result<Response<Body>, Problem> {
    let id =
        UserId::parse(raw_id).map_err(|e| Problem::bad_request("invalid-user-id", "Invalid user id", e.to_string()))?;
    match state.avatars.profile(&id).await? {
        Some(profile) => Ok(no_store(http::json(StatusCode::OK, &profile))),
        None => Err(Problem::not_found("no such user")),
    }
}
