//! The endpoints of the Lambda-shaped mode: every connection a function makes is TLS, verified
//! against a CA this bench made, as in AWS (where the CA is Amazon's).
//!
//! - Redis: a `redis-server` of its own that speaks TLS only (as ElastiCache Serverless does),
//!   trusted through `REDIS_CA_BUNDLE`.
//! - AWS: TLS fronts ([`testkit::TlsFront`]) before the local stack's moto, trusted through
//!   `AWS_CA_BUNDLE`; the data the stack was seeded with is what the functions read. One front
//!   per service (`AWS_ENDPOINT_URL_<SERVICE>`), as each AWS service is a host of its own: a
//!   connection opened to read secrets is never reused for DynamoDB, as it could not be in AWS.
//! - Secrets: each function's secrets are put into Secrets Manager and the function gets only
//!   `<NAME>_SECRET_ARN`, as the template configures it, so init reads them over TLS.

use testkit::{RedisServer, TlsFiles, TlsFront};

/// Which secrets each function reads at init (template.yaml's `<NAME>_SECRET_ARN` variables,
/// less the cache passwords: the bench's Redis has no ACL users).
pub const SECRETS: &[(&str, &[&str])] = &[
    ("posts-read", &["POSTS_CURSOR_SECRET"]),
    ("auth-refresh", &["JWT_SIGNING_KEY", "REFRESH_TOKEN_SECRET"]),
    ("stripe-webhook", &["STRIPE_WEBHOOK_SECRET"]),
];

/// Why the Lambda-shaped endpoints cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("the TLS front before moto: {0}")]
    Front(#[from] testkit::tls_front::TlsFrontError),
    #[error("AWS_ENDPOINT_URL {0:?} is not http://127.0.0.1:<port>")]
    Endpoint(String),
    #[error("the TLS redis-server does not answer PING over TLS: {0:?}")]
    Redis(String),
    #[error("putting secret {name} into Secrets Manager: {message}")]
    Secret { name: String, message: String },
}

/// The services the functions call, by the suffix of their `AWS_ENDPOINT_URL_<SERVICE>` variable.
const SERVICES: [&str; 5] = ["DYNAMODB", "S3", "SECRETS_MANAGER", "SESV2", "SQS"];

/// The TLS endpoints and the environment that points a function at them.
pub struct TlsEndpoints {
    pub redis: RedisServer,
    /// The generic front (`AWS_ENDPOINT_URL`), then one per service of [`SERVICES`].
    fronts: Vec<TlsFront>,
    /// The stack's variables with the TLS endpoints and CA bundles in place of the plaintext ones.
    pub env: Vec<(String, String)>,
    /// Secret variable → its ARN in the local Secrets Manager.
    secret_arns: Vec<(String, String)>,
}

impl TlsEndpoints {
    pub async fn start(stack_env: &[(String, String)]) -> Result<Self, EndpointError> {
        let plain = testkit::stack_env::get(stack_env, "AWS_ENDPOINT_URL").to_owned();
        let upstream = plain
            .strip_prefix("http://")
            .and_then(|a| a.trim_end_matches('/').parse::<std::net::SocketAddr>().ok())
            .ok_or_else(|| EndpointError::Endpoint(plain.clone()))?;
        let redis = RedisServer::start_tls();
        let pong = redis.cli(&["PING"]);
        if pong != "PONG" {
            return Err(EndpointError::Redis(pong));
        }
        let tls: &TlsFiles = redis.tls().expect("a TLS server has TLS files");
        let fronts = (0..=SERVICES.len()).map(|_| TlsFront::start(tls, upstream)).collect::<Result<Vec<_>, _>>()?;
        let ca = tls.ca().to_str().expect("utf-8 path").to_owned();
        let services: Vec<(String, String)> =
            SERVICES.iter().zip(&fronts[1..]).map(|(s, f)| (format!("AWS_ENDPOINT_URL_{s}"), f.url())).collect();
        let services: Vec<(&str, String)> = services.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let mut env = testkit::stack_env::with(
            stack_env,
            &[
                ("AWS_ENDPOINT_URL", fronts[0].url()),
                ("AWS_CA_BUNDLE", ca.clone()),
                ("REDIS_URL", redis.url()),
                ("REDIS_CA_BUNDLE", ca),
                // Many rotations of one session in a row: far over the per-user bucket, which is
                // not what is measured here.
                ("REFRESH_RATE_BURST", "1000000".into()),
                ("REFRESH_RATE_PER_MINUTE", "1000000".into()),
            ],
        );
        env = testkit::stack_env::with(&env, &services);
        env.retain(|(k, _)| k != "REDIS_USERNAME" && k != "REDIS_PASSWORD");
        let aws = testkit::aws_clients_at(&plain).await;
        let mut secret_arns = Vec::new();
        for name in SECRETS.iter().flat_map(|(_, names)| names.iter()) {
            let value = testkit::stack_env::get(stack_env, name).to_owned();
            let id = format!("bench-{}-{}", std::process::id(), name.to_ascii_lowercase());
            let made = aws.secretsmanager().create_secret().name(&id).secret_string(value).send().await;
            let made = made.map_err(|e| EndpointError::Secret { name: id.clone(), message: format!("{e:?}") })?;
            secret_arns.push(((*name).to_owned(), made.arn().unwrap_or(&id).to_owned()));
        }
        Ok(Self { redis, fronts, env, secret_arns })
    }

    /// The environment of one of the bundle's functions: its secrets by ARN only.
    pub fn function_env(&self, function: &str) -> Vec<(String, String)> {
        let own: &[&str] = SECRETS.iter().find(|(f, _)| *f == function).map_or(&[], |(_, names)| names);
        let every: Vec<&str> = SECRETS.iter().flat_map(|(_, names)| names.iter().copied()).collect();
        let mut env: Vec<(String, String)> =
            self.env.iter().filter(|(k, _)| !every.contains(&k.as_str())).cloned().collect();
        for (name, arn) in &self.secret_arns {
            if own.contains(&name.as_str()) {
                env.push((format!("{name}{}", shared::config::secrets::ARN_SUFFIX), arn.clone()));
            }
        }
        env
    }

    /// The same function's environment with its secrets as plain variables (how a local run gives
    /// them): the difference between the two is the cost of reading secrets at init.
    pub fn plain_env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Connections opened to each service's front so far, for the report.
    pub fn connections(&self) -> String {
        let names = std::iter::once("generic").chain(SERVICES);
        names.zip(&self.fronts).map(|(n, f)| format!("{n} {}", f.connections())).collect::<Vec<_>>().join(", ")
    }

    /// `https://127.0.0.1:<port>` of DynamoDB's TLS front (the Node baseline's one endpoint).
    pub fn dynamodb_url(&self) -> String {
        self.fronts[1].url()
    }

    /// The CA every TLS endpoint chains to (a PEM file).
    pub fn ca(&self) -> String {
        self.redis.tls().expect("TLS").ca().to_str().expect("utf-8 path").to_owned()
    }

    /// The TLS Redis URL with database `db` (the Node baseline keeps its keys in database 1).
    pub fn redis_url_db(&self, db: u8) -> String {
        format!("{}/{db}", self.redis.url())
    }
}
