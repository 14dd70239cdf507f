//! `POST /auth/session` through the real handler: ID tokens of a real local OIDC issuer
//! (testkit::OidcIssuer, over HTTP on loopback: discovery document, key set), users in the
//! template's Users table on moto, sessions in a real redis-server. Every bad token gets the one
//! 401 and leaves Redis and the table untouched; the issuer's keys are fetched once, refetched
//! for an unknown `kid` at a bounded rate, and an issuer that is down or slow is a 503 with
//! `Retry-After`, never a hang.

use std::time::{Duration, Instant};

use auth_refresh::handler::handle;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use shared::auth::identities::user_id_of;
use shared::auth::oidc::Identity;
use testkit::OidcIssuer;
use testkit::oidc_issuer::IssuerKey;

use crate::common::*;

pub(crate) const CLIENT_ID: &str = "local-app";

pub(crate) struct SignIn {
    pub f: Fixture,
    pub issuer: OidcIssuer,
    users_table: String,
    /// The template's resources on moto (the browser journey's posts table among them).
    pub provisioned: testkit::Provisioned,
}

impl SignIn {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A Redis, a users table (template.yaml's, on moto), an issuer, and auth-refresh over them.
    pub(crate) async fn start_with(extra: &[(&str, &str)]) -> Self {
        Self::start_for(&[], extra).await
    }

    /// [`SignIn::start_with`] over the template provisioned with `params` as its parameters'
    /// values (the browser journey: `AllowedOrigins`, which the uploads bucket's CORS rules use).
    pub(crate) async fn start_for(params: &[(&str, &str)], extra: &[(&str, &str)]) -> Self {
        let issuer = OidcIssuer::start().await;
        let params: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let provisioned = tokio::task::spawn_blocking(move || {
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            testkit::provision_with(&params, &[])
        })
        .await
        .unwrap();
        let users_table = provisioned.name("UsersTable");
        let provisioned_copy = provisioned.clone();
        let aws = testkit::aws_clients().await;
        let mut vars = vec![
            ("OIDC_ISSUER", issuer.url.as_str()),
            ("OIDC_CLIENT_ID", CLIENT_ID),
            ("USERS_TABLE", users_table.as_str()),
            ("OIDC_JWKS_MIN_REFETCH_SECONDS", "1"),
            ("OUTBOUND_TIMEOUT_MS", "1000"),
        ];
        vars.extend_from_slice(extra);
        let f = Fixture::start_full(Kind::Single, Options::grace(5000), &vars, aws);
        Self { f, issuer, users_table, provisioned: provisioned_copy }
    }

    async fn users(&self) -> Vec<std::collections::HashMap<String, AttributeValue>> {
        let out = self.f.aws.dynamodb().scan().table_name(&self.users_table).send().await.expect("scan");
        out.items().to_vec()
    }
}

fn sign_in_request(body: String) -> Request {
    post("/auth/session").header("content-type", "application/json").body(Body::Text(body)).unwrap()
}

fn sign_in_with(token: &str) -> Request {
    sign_in_request(json!({ "idToken": token }).to_string())
}

/// The session cookie of a 200 sign-in (checked as `new_token` checks a refresh's).
fn cookie_of(r: &Response<Body>) -> String {
    assert_eq!(r.status(), 200, "{}", text(r));
    let body = json(r);
    assert_eq!(body["tokenType"], "Bearer", "{body}");
    assert!(body["accessToken"].is_string() && body["expiresIn"].is_u64(), "{body}");
    assert!(body.get("refreshToken").is_none(), "the refresh token is never in the body: {body}");
    assert_eq!(header(r, "cache-control"), Some("no-store"));
    new_token(r)
}

fn access_sub(r: &Response<Body>) -> String {
    let token = json(r)["accessToken"].as_str().unwrap().to_owned();
    let claims: Value = jsonwebtoken::dangerous::insecure_decode(&token).unwrap().claims;
    claims["sub"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_and_one_identity_is_always_one_user() {
    let s = SignIn::start().await;
    let r = handle(&s.f.state, sign_in_with(&s.issuer.id_token("alice", CLIENT_ID))).await;
    let cookie = cookie_of(&r);
    let expected = user_id_of(&Identity { issuer: s.issuer.url.clone(), subject: "alice".into() });
    assert_eq!(access_sub(&r), expected.as_str());
    assert_eq!(parts(&cookie).0, expected.as_str(), "the session is the user's");

    // The cookie works as any session's.
    let refreshed = handle(&s.f.state, refresh_by_cookie(&cookie)).await;
    new_token(&refreshed);

    // The user item the first sign-in wrote, in the shape uploads reads (version 0, no avatar).
    let users = s.users().await;
    assert_eq!(users.len(), 1);
    let item = &users[0];
    assert_eq!(item["id"], AttributeValue::S(expected.to_string()));
    assert_eq!(item["version"], AttributeValue::N("0".into()));
    assert_eq!(item["issuer"], AttributeValue::S(s.issuer.url.clone()));
    assert_eq!(item["subject"], AttributeValue::S("alice".into()));

    // Signing in again: the same user, a second session, still one item.
    let again = handle(&s.f.state, sign_in_with(&s.issuer.id_token("alice", CLIENT_ID))).await;
    let second = cookie_of(&again);
    assert_eq!(access_sub(&again), expected.as_str());
    assert_ne!(parts(&second).1, parts(&cookie).1, "a new session (family)");
    assert_eq!(s.users().await.len(), 1);
    // Another subject is another user.
    let bob = handle(&s.f.state, sign_in_with(&s.issuer.id_token("bob", CLIENT_ID))).await;
    cookie_of(&bob);
    assert_ne!(access_sub(&bob), expected.as_str());
    assert_eq!(s.users().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_first_sign_ins_make_one_user() {
    let s = SignIn::start().await;
    // Two execution environments, each with its own key cache and clients.
    let other = s.f.another_state();
    for round in 0..5 {
        let sub = format!("carol-{round}");
        let (a, b) = (s.issuer.id_token(&sub, CLIENT_ID), s.issuer.id_token(&sub, CLIENT_ID));
        let (ra, rb) = tokio::join!(handle(&s.f.state, sign_in_with(&a)), handle(&other, sign_in_with(&b)));
        cookie_of(&ra);
        cookie_of(&rb);
        assert_eq!(access_sub(&ra), access_sub(&rb));
    }
    assert_eq!(s.users().await.len(), 5, "one item per identity");
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_id_token_is_the_same_401_and_starts_nothing() {
    let s = SignIn::start().await;
    let good = s.issuer.id_token("dave", CLIENT_ID);
    let claims = s.issuer.claims("dave", CLIENT_ID);
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        f(&mut c);
        s.issuer.sign(&c)
    };
    let now = claims["iat"].as_u64().unwrap();
    let kid = s.issuer.key().kid;
    // Another key under the issuer's kid: a forgery.
    let forged = IssuerKey::generate(&kid).sign(&claims);
    // The payload changed after signing.
    let mut pieces: Vec<String> = good.split('.').map(str::to_owned).collect();
    pieces[1] = b64(&json!({ "iss": s.issuer.url, "sub": "admin", "aud": CLIENT_ID, "iat": now, "exp": now + 600 }));
    let tampered = pieces.join(".");
    // alg none, no signature.
    let none = format!("{}.{}.", b64(&json!({ "alg": "none", "kid": kid })), b64(&claims));
    // HS256 with the issuer's public key as the secret: the classic algorithm confusion.
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let public_jwk = s.issuer.key().jwk().to_string();
    let hmac =
        jsonwebtoken::encode(&hs_header, &claims, &jsonwebtoken::EncodingKey::from_secret(public_jwk.as_bytes()))
            .unwrap();
    let unknown_kid = IssuerKey::generate("not-published").sign(&claims);
    let cases: Vec<(&str, String)> = vec![
        ("forged", forged),
        ("tampered", tampered),
        (
            "expired",
            edit(&|c| {
                c["iat"] = json!(now - 7200);
                c["exp"] = json!(now - 3600);
            }),
        ),
        ("foreign aud", edit(&|c| c["aud"] = json!("another-app"))),
        ("foreign iss", edit(&|c| c["iss"] = json!("https://evil.example.com"))),
        ("alg none", none),
        ("HMAC", hmac),
        ("unknown kid", unknown_kid),
        (
            "missing sub",
            edit(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
        ),
        ("empty sub", edit(&|c| c["sub"] = json!(""))),
        ("nbf in the future", edit(&|c| c["nbf"] = json!(now + 3600))),
        ("iat in the future", edit(&|c| c["iat"] = json!(now + 3600))),
        (
            "no iat",
            edit(&|c| {
                c.as_object_mut().unwrap().remove("iat");
            }),
        ),
        ("not a JWT", "not-a-jwt".to_owned()),
        ("empty", String::new()),
    ];
    let mut bodies = Vec::new();
    for (name, token) in &cases {
        let r = handle(&s.f.state, sign_in_with(token)).await;
        assert_eq!(r.status(), 401, "{name}: {}", text(&r));
        assert_eq!(header(&r, "content-type"), Some("application/problem+json"), "{name}");
        assert!(header(&r, "set-cookie").is_none(), "{name}: no cookie");
        bodies.push(text(&r));
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "one body for every refusal: {bodies:?}");
    assert!(s.f.keys().is_empty(), "no session started: {:?}", s.f.keys());
    assert!(s.users().await.is_empty(), "no user created");
    // The control: the good token signs in.
    cookie_of(&handle(&s.f.state, sign_in_with(&good)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_are_not_a_same_site_json_sign_in_get_a_precise_4xx() {
    let s = SignIn::start().await;
    let token = s.issuer.id_token("erin", CLIENT_ID);
    let body = json!({ "idToken": token }).to_string();
    let status = |req: Request| {
        let state = s.f.state.clone();
        async move { handle(&state, req).await }
    };
    let cross = http::Request::builder()
        .method("POST")
        .uri("/auth/session")
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .body(Body::Text(body.clone()))
        .unwrap();
    assert_eq!(status(cross).await.status(), 403);
    let cross_site_fetch = http::Request::builder()
        .method("POST")
        .uri("/auth/session")
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/json")
        .body(Body::Text(body.clone()))
        .unwrap();
    assert_eq!(status(cross_site_fetch).await.status(), 403);
    let form = post("/auth/session").header("content-type", "text/plain").body(Body::Text(body.clone())).unwrap();
    assert_eq!(status(form).await.status(), 415);
    assert_eq!(status(sign_in_request("{\"idToken\":".into())).await.status(), 400);
    assert_eq!(status(sign_in_request(json!({ "id_token": token }).to_string())).await.status(), 400);
    assert_eq!(status(sign_in_request(json!({ "idToken": 7 }).to_string())).await.status(), 400);
    assert_eq!(status(sign_in_request(String::new())).await.status(), 400);
    let large = "a".repeat(16 * 1024 + 1);
    let r = status(sign_in_with(&large)).await;
    assert_eq!(r.status(), 413, "{}", text(&r));
    assert_eq!(status(sign_in_with(&"a".repeat(100_000))).await.status(), 413);
    assert_eq!(s.issuer.jwks_fetches(), 0, "nothing above reached the issuer");
    assert!(s.f.keys().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_refetches_the_keys_once_and_at_a_bounded_rate() {
    let s = SignIn::start().await;
    cookie_of(&handle(&s.f.state, sign_in_with(&s.issuer.id_token("frank", CLIENT_ID))).await);
    assert_eq!(s.issuer.jwks_fetches(), 1);
    cookie_of(&handle(&s.f.state, sign_in_with(&s.issuer.id_token("frank", CLIENT_ID))).await);
    assert_eq!(s.issuer.jwks_fetches(), 1, "the key set is cached");

    // A flood of made-up kids: one refetch per OIDC_JWKS_MIN_REFETCH_SECONDS (1 s here), at most.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let claims = s.issuer.claims("frank", CLIENT_ID);
    for i in 0..20 {
        let token = IssuerKey::generate(&format!("made-up-{i}")).sign(&claims);
        assert_eq!(handle(&s.f.state, sign_in_with(&token)).await.status(), 401);
    }
    assert_eq!(s.issuer.jwks_fetches(), 2, "one refetch for twenty unknown kids");

    // The issuer rolls its key: once the interval has passed, a token of the new key is one
    // refetch away.
    s.issuer.rotate("k2");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = handle(&s.f.state, sign_in_with(&s.issuer.id_token("frank", CLIENT_ID))).await;
    cookie_of(&r);
    assert_eq!(s.issuer.jwks_fetches(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_that_is_down_or_slow_is_a_503_with_retry_after_in_time() {
    let s = SignIn::start_with(&[("OUTBOUND_MAX_ATTEMPTS", "2")]).await;
    s.issuer.set_down(true);
    let r = handle(&s.f.state, sign_in_with(&s.issuer.id_token("grace", CLIENT_ID))).await;
    assert_eq!(r.status(), 503, "{}", text(&r));
    assert_eq!(header(&r, "retry-after"), Some("5"));
    assert!(header(&r, "set-cookie").is_none());

    // Slow: the issuer holds its answers far longer than the request timeout (1 s).
    s.issuer.set_down(false);
    s.issuer.set_delay(Duration::from_secs(30));
    let started = Instant::now();
    let r = handle(&s.f.state, sign_in_with(&s.issuer.id_token("grace", CLIENT_ID))).await;
    assert_eq!(r.status(), 503, "{}", text(&r));
    assert!(started.elapsed() < Duration::from_secs(10), "answered without waiting for the issuer");

    // Within the invocation's deadline: 2.5 s left, so the fetch gets 1 s (1.5 s are kept for
    // DynamoDB and Redis), even with a 10 s request timeout.
    let s2 = SignIn::start_with(&[("OUTBOUND_TIMEOUT_MS", "10000")]).await;
    s2.issuer.set_delay(Duration::from_secs(30));
    let mut context = lambda_http::Context::default();
    context.deadline = (shared::clock::now_ms() + 2500) as u64;
    let req =
        lambda_http::RequestExt::with_lambda_context(sign_in_with(&s2.issuer.id_token("grace", CLIENT_ID)), context);
    let started = Instant::now();
    let r = handle(&s2.f.state, req).await;
    assert_eq!(r.status(), 503, "{}", text(&r));
    assert!(started.elapsed() < Duration::from_millis(2500), "answered before the deadline: {:?}", started.elapsed());

    // Nothing about the outage is cached: the issuer back, the sign-in works.
    s.issuer.set_delay(Duration::ZERO);
    cookie_of(&handle(&s.f.state, sign_in_with(&s.issuer.id_token("grace", CLIENT_ID))).await);
}
