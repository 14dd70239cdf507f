//! Stages trust only themselves: staging and prod each get their own key pair, issuer and
//! audience (template.yaml: from the stack name unless JwtIssuer / JwtAudience are set), so an
//! access token minted by one stage is refused 401 by the other.

use http::StatusCode;
use shared::auth::access::{SigningSettings, generate_key_pair};
use shared::auth::{AccessTokenSigner, UserId, bearer_user};
use shared::config::EnvReader;

/// What the template gives a stage's auth-refresh (signer) and verifiers, for a stack name.
struct Stage {
    signer: AccessTokenSigner,
    /// The stage's key pair: (`JWT_SIGNING_KEY`, `JWT_SIGNING_KEY_ID`, `JWT_PUBLIC_KEYS`).
    keys: (String, String, String),
}

impl Stage {
    /// A stage with its own key pair and the template's defaults for the stack name.
    fn start(stack: &str) -> Self {
        let kid = format!("{stack}-k1");
        let (private, public) = generate_key_pair(&kid).expect("key pair");
        Self::configure(stack, None, None, (private.expose().to_owned(), kid, public.to_entry()))
    }

    /// `issuer` / `audience`: JwtIssuer / JwtAudience when set, else the stack name (+ "-api").
    fn configure(stack: &str, issuer: Option<&str>, audience: Option<&str>, keys: (String, String, String)) -> Self {
        let issuer = issuer.map(str::to_owned).unwrap_or_else(|| stack.to_owned());
        let audience = audience.map(str::to_owned).unwrap_or_else(|| format!("{stack}-api"));
        let vars = [
            ("JWT_SIGNING_KEY", keys.0.clone()),
            ("JWT_SIGNING_KEY_ID", keys.1.clone()),
            ("JWT_PUBLIC_KEYS", keys.2.clone()),
            ("JWT_ISSUER", issuer),
            ("JWT_AUDIENCE", audience),
        ];
        let mut env = EnvReader::from_fn(move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()));
        let settings = SigningSettings::from_env(&mut env);
        let settings = env.finish(settings).expect("a stage's JWT settings");
        Self { signer: AccessTokenSigner::new(&settings), keys }
    }

    fn token(&self) -> String {
        self.signer.mint(&UserId::parse("user-1").expect("user id")).expect("mint")
    }

    /// What a verifier of this stage (posts-write, upload-presign) answers for `token`.
    fn answer(&self, token: &str) -> Result<UserId, StatusCode> {
        let req = http::Request::builder()
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(lambda_http::Body::Empty)
            .expect("request");
        bearer_user(self.signer.verifier(), &lambda_http::Request::from(req)).map_err(|p| p.status)
    }
}

#[test]
fn a_token_of_staging_is_refused_401_by_prod_and_the_other_way_round() {
    let staging = Stage::start("rust-serverless-bundle-staging");
    let prod = Stage::start("rust-serverless-bundle-prod");
    assert!(staging.answer(&staging.token()).is_ok(), "staging accepts its own token");
    assert!(prod.answer(&prod.token()).is_ok(), "prod accepts its own token");
    assert_eq!(prod.answer(&staging.token()).unwrap_err(), StatusCode::UNAUTHORIZED);
    assert_eq!(staging.answer(&prod.token()).unwrap_err(), StatusCode::UNAUTHORIZED);
}

#[test]
fn the_issuer_and_audience_alone_keep_stages_apart() {
    // Even where prod were given staging's keys (a copied JWT_PUBLIC_KEYS), prod's own issuer or
    // audience refuses staging's token.
    let staging = Stage::start("rust-serverless-bundle-staging");
    let token = staging.token();
    let prod = "rust-serverless-bundle-prod";
    let same_keys_own_names = Stage::configure(prod, None, None, staging.keys.clone());
    assert_eq!(same_keys_own_names.answer(&token).unwrap_err(), StatusCode::UNAUTHORIZED);
    let staging_issuer_only =
        Stage::configure(prod, Some("rust-serverless-bundle-staging"), None, staging.keys.clone());
    assert_eq!(staging_issuer_only.answer(&token).unwrap_err(), StatusCode::UNAUTHORIZED, "audience differs");
    let staging_names = Stage::configure(
        prod,
        Some("rust-serverless-bundle-staging"),
        Some("rust-serverless-bundle-staging-api"),
        staging.keys.clone(),
    );
    assert!(staging_names.answer(&token).is_ok(), "the same keys and names are one trust domain");
}
