//! signing-key: the CloudFormation custom resource that makes a stage's access-token key pair, so
//! a first deploy needs no key from the deployer's machine and no two stages share one.
//!
//! Create: a fresh Ed25519 pair (aws-lc-rs, `shared::auth::access::generate_key_pair`); the private
//! half goes to the stage's Secrets Manager secret (`SecretId`, which only auth-refresh may read),
//! and only the public half comes back as the resource's `PublicKeys` (`kid:key`, what every
//! verifier's `JWT_PUBLIC_KEYS` gets) with its `KeyId`. Update with a new `KeyId` or `Generation`:
//! a new pair, and `PublicKeys` lists the new key and the one it replaces (tokens of the old key
//! stay valid until they expire; the next update drops it). Update without either: the current
//! key, unchanged. Delete: nothing (the secret goes with its own resource).

use aws_lambda_events::cloudformation::{
    CloudFormationCustomResourceRequest as Request, CloudFormationCustomResourceResponse as Response,
    CloudFormationCustomResourceResponseStatus as Status,
};
use serde::{Deserialize, Serialize};
use shared::auth::access::{generate_key_pair, public_key_of};
use shared::clients::AwsClients;
use shared::config::{ConfigError, EnvReader, FromEnv};

/// The resource's properties (template.yaml, `SigningKey`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct KeyProperties {
    /// The secret that holds the private half (its ARN).
    pub secret_id: String,
    /// The `kid` of the key (`<stage>-<n>`).
    pub key_id: String,
    /// Change it (any value) to make a new key with the same `KeyId`.
    #[serde(default)]
    pub generation: String,
}

/// Nothing to configure: the properties say everything.
pub struct Settings;

impl FromEnv for Settings {
    fn from_env(env: EnvReader<'_>) -> Result<Self, ConfigError> {
        env.finish(Settings)
    }
}

/// Clients built once per execution environment.
pub struct State {
    aws: AwsClients,
    http: reqwest::Client,
}

impl State {
    /// State over `aws` (a test's local endpoint).
    pub fn new(aws: AwsClients) -> Self {
        Self { aws, http: reqwest::Client::new() }
    }
}

impl shared::runtime::Function for State {
    type Settings = Settings;

    async fn init(_: &Settings) -> Result<Self, lambda_runtime::Error> {
        Ok(Self::new(AwsClients::load(false).await))
    }
}

/// Why a request could not be carried out (the Reason CloudFormation shows).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("making the key pair failed: {0}")]
    Generate(String),
    #[error(
        "writing the private key to {secret} failed (the function needs secretsmanager:PutSecretValue on it): {cause}"
    )]
    Store { secret: String, cause: String },
    #[error(
        "reading the current key from {secret} failed (the function needs secretsmanager:GetSecretValue on it): {cause}"
    )]
    Read { secret: String, cause: String },
    #[error("{secret} holds no Ed25519 key made by this resource")]
    NotAKey { secret: String },
}

/// The resource's attributes: `PublicKeys` and `KeyId`.
#[derive(Debug, PartialEq)]
pub struct Made {
    pub public_keys: String,
    pub key_id: String,
}

async fn current_key(state: &State, props: &KeyProperties) -> Result<String, KeyError> {
    let read = |cause: String| KeyError::Read { secret: props.secret_id.clone(), cause };
    let answer = state
        .aws
        .secretsmanager()
        .get_secret_value()
        .secret_id(&props.secret_id)
        .send()
        .await
        .map_err(|e| read(shared::clients::aws::describe(&e)))?;
    answer.secret_string.ok_or_else(|| read("no SecretString".into()))
}

async fn make(state: &State, props: &KeyProperties, replaces: Option<&KeyProperties>) -> Result<Made, KeyError> {
    // The key being replaced stays listed, so its tokens verify until they expire.
    let previous = match replaces {
        Some(old) => current_key(state, old).await.ok().and_then(|k| public_key_of(&old.key_id, &k)),
        None => None,
    };
    let (private, public) = generate_key_pair(&props.key_id).map_err(|e| KeyError::Generate(e.to_string()))?;
    state
        .aws
        .secretsmanager()
        .put_secret_value()
        .secret_id(&props.secret_id)
        .secret_string(private.expose())
        .send()
        .await
        .map_err(|e| KeyError::Store { secret: props.secret_id.clone(), cause: shared::clients::aws::describe(&e) })?;
    let mut keys = vec![public.to_entry()];
    keys.extend(previous.filter(|p| p.kid != public.kid).map(|p| p.to_entry()));
    Ok(Made { public_keys: keys.join(","), key_id: props.key_id.clone() })
}

async fn keep(state: &State, props: &KeyProperties) -> Result<Made, KeyError> {
    let key = current_key(state, props).await?;
    let public =
        public_key_of(&props.key_id, &key).ok_or_else(|| KeyError::NotAKey { secret: props.secret_id.clone() })?;
    Ok(Made { public_keys: public.to_entry(), key_id: props.key_id.clone() })
}

/// Carries out `request` and says what to answer: (physical id, attributes or the failure).
pub async fn outcome(
    state: &State,
    request: &Request<KeyProperties, KeyProperties>,
) -> (String, Result<Option<Made>, KeyError>) {
    match request {
        Request::Create(r) => {
            let p = &r.resource_properties;
            (physical_id(p), make(state, p, None).await.map(Some))
        }
        Request::Update(r) => {
            let (new, old) = (&r.resource_properties, &r.old_resource_properties);
            let result =
                if new.key_id != old.key_id || new.generation != old.generation || new.secret_id != old.secret_id {
                    make(state, new, (new.secret_id == old.secret_id).then_some(old)).await
                } else {
                    keep(state, new).await
                };
            (physical_id(new), result.map(Some))
        }
        Request::Delete(r) => (r.physical_resource_id.clone(), Ok(None)),
        _ => (String::new(), Err(KeyError::Generate("unknown request type".into()))),
    }
}

fn physical_id(p: &KeyProperties) -> String {
    format!("{}#{}", p.secret_id, p.key_id)
}

/// What identifies a request in its answer: (response URL, stack id, request id, logical id).
/// `None` for a request type CloudFormation does not send.
pub fn ids(request: &Request<KeyProperties, KeyProperties>) -> Option<[&str; 4]> {
    match request {
        Request::Create(r) => Some([&r.response_url, &r.stack_id, &r.request_id, &r.logical_resource_id]),
        Request::Update(r) => Some([&r.response_url, &r.stack_id, &r.request_id, &r.logical_resource_id]),
        Request::Delete(r) => Some([&r.response_url, &r.stack_id, &r.request_id, &r.logical_resource_id]),
        _ => None,
    }
}

/// The answer CloudFormation reads from its presigned URL.
pub fn response(ids: [&str; 4], physical: String, result: Result<Option<Made>, KeyError>) -> Response {
    let [_, stack_id, request_id, logical] = ids;
    let mut out = Response::default();
    out.stack_id = stack_id.to_owned();
    out.request_id = request_id.to_owned();
    out.logical_resource_id = logical.to_owned();
    // A failed create has no resource; CloudFormation still needs an id to answer for.
    out.physical_resource_id = if physical.is_empty() { format!("{logical}-failed") } else { physical };
    match result {
        Ok(made) => {
            out.status = Status::Success;
            if let Some(made) = made {
                out.data.insert("PublicKeys".into(), made.public_keys);
                out.data.insert("KeyId".into(), made.key_id);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "signing-key request failed");
            out.status = Status::Failed;
            out.reason = Some(e.to_string());
        }
    }
    out
}

/// One request: carried out, then answered on CloudFormation's presigned URL. An answer that
/// cannot be delivered is logged (CloudFormation then fails the resource at its ServiceTimeout).
pub async fn handle(state: &State, request: Request<KeyProperties, KeyProperties>) {
    if let Err(e) = answer(state, request).await {
        tracing::error!(error = %e, "signing-key: no answer reached CloudFormation");
    }
}

/// [`handle`], with the delivery's failure as the error.
pub async fn answer(
    state: &State,
    request: Request<KeyProperties, KeyProperties>,
) -> Result<(), lambda_runtime::Error> {
    let Some(ids) = ids(&request) else {
        return Err("not a CloudFormation Create, Update or Delete request".into());
    };
    let (physical, result) = outcome(state, &request).await;
    let body = serde_json::to_vec(&response(ids, physical, result))?;
    // The presigned URL signs no Content-Type: none is sent.
    let delivered = state.http.put(ids[0]).body(body).send().await?;
    if !delivered.status().is_success() {
        return Err(format!("CloudFormation's response URL answered {}", delivered.status()).into());
    }
    Ok(())
}
