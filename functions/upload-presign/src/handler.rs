//! Request in, authenticated user and validated upload request, presigned PUT out.

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use shared::api::{self, Cors, Problem};
use shared::clients::AwsClients;
use shared::storage::{UploadRequest, Uploads};
use shared::tokens::{AccessTokens, UserId};

use crate::settings::Settings;

/// The largest JSON body accepted: three short fields and a filename of at most 1 KiB.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

#[derive(Clone, Debug)]
pub struct State {
    pub uploads: Uploads,
    pub tokens: AccessTokens,
    pub cors: Cors,
}

impl State {
    pub fn new(settings: &Settings, aws: &AwsClients) -> Self {
        Self {
            uploads: Uploads::new(aws.s3.clone(), settings.uploads.clone()),
            tokens: AccessTokens::new(&settings.access_tokens),
            cors: settings.cors.clone(),
        }
    }
}

pub async fn handle(state: &State, req: Request) -> Response<Body> {
    api::respond(&state.cors, req, |req| route(state, req)).await
}

async fn route(state: &State, req: Request) -> Result<Response<Body>, Problem> {
    let segments = api::path_segments(&req);
    match (segments.as_slice(), req.method()) {
        ([.., "uploads"], &Method::POST) => create(state, &req).await,
        ([.., "uploads"], _) => Err(Problem::method_not_allowed("POST, OPTIONS")),
        _ => Err(Problem::not_found("no such route")),
    }
}

/// Authentication comes before any look at the body, so an anonymous caller learns nothing
/// about the limits.
fn user(state: &State, req: &Request) -> Result<UserId, Problem> {
    let claims = api::authenticate(&state.tokens, req)?;
    claims.user_id().map_err(|_| api::unauthorized("invalid_token", "the access token is invalid"))
}

async fn create(state: &State, req: &Request) -> Result<Response<Body>, Problem> {
    let user = user(state, req)?;
    let body: UploadRequest = api::json_body(req, MAX_BODY_BYTES)?;
    let plan = state.uploads.plan(&user, &body)?;
    let upload = state.uploads.presign(plan).await?;
    tracing::info!(user = %user, key = %upload.key, filename = %upload.filename, "upload presigned");
    let mut response = api::json(StatusCode::OK, &upload);
    // The URL is a capability for its lifetime: no cache may keep it.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
