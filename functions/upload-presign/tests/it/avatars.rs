//! The whole upload flow through the handler, against an S3 that checks signatures and enforces
//! `If-None-Match` (s3s-fs, embedded) and DynamoDB on moto (the Users table from template.yaml):
//! presign → PUT → record → profile, replacing, idempotency, the bad keys and bad objects, and
//! concurrent records (on a one-request-at-a-time moto, whose conditional writes are atomic as
//! DynamoDB's are). Every test runs with the Lambda environment set.
//! Objects are counted by listing the bucket from outside the code under test.

use crate::common;

use shared::config::FromEnv;
use std::collections::HashMap;

use crate::common::{BUCKET, PNG_1X1, S3sServer, json_of, profile_with, put, record_with};
use lambda_http::Body;
use serde_json::{Value, json};
use shared::auth::{AccessTokenSigner, UserId};
use upload_presign::handler::State;
use upload_presign::settings::Settings;

struct Flow {
    _server: S3sServer,
    s3: aws_sdk_s3::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    users_table: String,
    state: State,
    tokens: AccessTokenSigner,
}

/// The function's state over s3s-fs (S3) and `dynamo_endpoint` (moto), its environment from the
/// template with the bucket pointed at s3s-fs.
async fn flow_at(moto: Option<&testkit::SerialMoto>) -> Flow {
    flow_with(moto, &[]).await
}

/// [`flow_at`] with `extra` set in the function's environment.
async fn flow_with(moto: Option<&testkit::SerialMoto>, extra: &[(&str, &str)]) -> Flow {
    common::lambda_environment();
    let server = S3sServer::start().await;
    let s3 = server.client();
    s3.create_bucket().bucket(BUCKET).send().await.expect("bucket on s3s-fs");
    let keys = testkit::test_public_keys();
    let overrides = [("JWT_PUBLIC_KEYS", keys.as_str()), ("S3_FORCE_PATH_STYLE", "true")];
    let (provisioned, aws) = match moto {
        Some(m) => (m.provision(&overrides), testkit::aws_clients_at(&m.endpoint).await),
        None => (testkit::provision(&overrides), testkit::aws_clients().await),
    };
    let mut env: HashMap<String, String> = provisioned.env("upload-presign");
    env.insert("UPLOADS_BUCKET".into(), BUCKET.into());
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let settings = Settings::from_env(testkit::env_reader(env.clone())).expect("settings");
    let clients = aws.clone().with_s3(s3.clone());
    Flow {
        state: State::new(&settings, &clients),
        tokens: testkit::test_signer(),
        users_table: env["USERS_TABLE"].clone(),
        dynamodb: aws.dynamodb().clone(),
        s3,
        _server: server,
    }
}

async fn flow() -> Flow {
    flow_at(None).await
}

impl Flow {
    fn bearer(&self, user: &str) -> String {
        format!("Bearer {}", self.tokens.mint(&UserId::parse(user).unwrap()).unwrap())
    }

    /// Steps 1 and 2: presign through the handler, PUT `body` with the answer's headers.
    async fn upload(&self, user: &str, content_type: &str, body: &[u8]) -> Value {
        let req = http::Request::builder()
            .method("POST")
            .uri("/uploads")
            .header("content-type", "application/json")
            .header("authorization", self.bearer(user))
            .body(Body::Text(
                json!({"filename": "me.png", "contentType": content_type, "size": body.len()}).to_string(),
            ))
            .unwrap();
        let r = upload_presign::handler::handle(&self.state, req).await;
        assert_eq!(r.status(), 200, "{:?}", r.body());
        let p = json_of(&r);
        assert_eq!(put(&p, body.to_vec()).await, 200, "PUT {p}");
        p
    }

    async fn record(&self, user: &str, key: &str) -> (u16, Value) {
        let r = record_with(&self.state, Some(self.bearer(user)), json!({ "key": key })).await;
        if r.status() != 200 {
            assert_eq!(r.headers()["content-type"], "application/problem+json", "{:?}", r.body());
        }
        (r.status().as_u16(), json_of(&r))
    }

    async fn keys(&self) -> Vec<String> {
        let listed = self.s3.list_objects_v2().bucket(BUCKET).send().await.unwrap();
        let mut keys: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
        keys.sort();
        keys
    }

    async fn user_items(&self) -> usize {
        self.dynamodb.scan().table_name(&self.users_table).send().await.unwrap().items().len()
    }

    /// An object put with admin credentials, bypassing the presigned URL (what S3 would hold if a
    /// signed rule were bypassed, or what another writer left).
    async fn put_raw(&self, key: &str, content_type: &str, body: &[u8]) {
        self.s3
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .content_type(content_type)
            .body(body.to_vec().into())
            .send()
            .await
            .expect("admin put");
    }
}

fn key_of(p: &Value) -> String {
    p["key"].as_str().unwrap().to_owned()
}

fn avatar_key(upload_key: &str) -> String {
    upload_key.replacen("uploads/", "avatars/", 1)
}

#[tokio::test]
async fn record_then_profile_shows_it_and_a_second_record_replaces_it() {
    let f = flow().await;
    let first = f.upload("user-1", "image/png", PNG_1X1).await;
    let (status, profile) = f.record("user-1", &key_of(&first)).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["id"], "user-1");
    assert_eq!(profile["avatar"]["contentType"], "image/png");
    assert_eq!(profile["avatar"]["size"], PNG_1X1.len());
    // The recorded copy lives under avatars/ (no lifecycle rule); the upload is gone.
    assert_eq!(f.keys().await, [avatar_key(&key_of(&first))]);

    // GET /users/{id}: a presigned GET that s3s-fs (checking the signature) serves.
    let r = profile_with(&f.state, "user-1").await;
    assert_eq!(r.status(), 200);
    let shown = json_of(&r);
    let url = shown["avatar"]["url"].as_str().unwrap();
    assert!(url.contains(&format!("/{BUCKET}/avatars/user-1/")) && url.contains("X-Amz-Expires=60"), "{url}");
    assert!(shown["avatar"]["expiresAt"].is_string(), "{shown}");
    let got = reqwest::get(url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), PNG_1X1);

    // The same call again: the same avatar, nothing touched.
    let (status, again) = f.record("user-1", &key_of(&first)).await;
    assert_eq!((status, &again["avatar"]["updatedAt"]), (200, &profile["avatar"]["updatedAt"]));
    assert_eq!(f.keys().await, [avatar_key(&key_of(&first))]);

    // A second upload replaces it; the old avatar object is gone.
    let second = f.upload("user-1", "image/png", PNG_1X1).await;
    let (status, replaced) = f.record("user-1", &key_of(&second)).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(f.keys().await, [avatar_key(&key_of(&second))]);
    let shown = json_of(&profile_with(&f.state, "user-1").await);
    assert!(shown["avatar"]["url"].as_str().unwrap().contains(&avatar_key(&key_of(&second))), "{shown}");
    assert_eq!(f.user_items().await, 1);
}

#[tokio::test]
async fn a_used_url_cannot_overwrite() {
    let f = flow().await;
    let p = f.upload("user-1", "image/png", PNG_1X1).await;
    assert_eq!(p["headers"]["If-None-Match"], "*", "{p}");
    // The same URL, the same signed headers, other bytes of the same size: 412 from S3.
    let mut other = PNG_1X1.to_vec();
    other[20] ^= 0xFF;
    assert_eq!(put(&p, other).await, 412);
    let stored = f.s3.get_object().bucket(BUCKET).key(key_of(&p)).send().await.unwrap();
    assert_eq!(stored.body.collect().await.unwrap().into_bytes().as_ref(), PNG_1X1);
}

#[tokio::test]
async fn an_html_file_typed_png_is_refused_and_deleted() {
    let f = flow().await;
    let html = b"<!doctype html><html><script>alert(1)</script></html>";
    let p = f.upload("user-1", "image/png", html).await;
    let (status, problem) = f.record("user-1", &key_of(&p)).await;
    assert_eq!((status, problem["type"].as_str()), (422, Some("/problems/upload-content-mismatch")), "{problem}");
    assert_eq!(problem["expected"], "image/png");
    assert_eq!(f.keys().await, Vec::<String>::new(), "the offending object was deleted");
    assert_eq!(f.user_items().await, 0, "nothing recorded");
    assert_eq!(profile_with(&f.state, "user-1").await.status(), 404);
}

#[tokio::test]
async fn bad_objects_are_refused_and_only_they_are_deleted() {
    let f = flow().await;
    // A recorded avatar, and another user's upload, which no refusal below may touch.
    let mine = f.upload("user-1", "image/png", PNG_1X1).await;
    assert_eq!(f.record("user-1", &key_of(&mine)).await.0, 200);
    let theirs = f.upload("user-2", "image/png", PNG_1X1).await;
    let kept = f.keys().await;

    let id = || uuid::Uuid::new_v4().hyphenated().to_string();
    // A real PNG with an HTML page after its IEND: the signature is right, the file is not.
    let polyglot = [PNG_1X1, b"<html><script>alert(document.cookie)</script></html>"].concat();
    let cases: [(&str, &str, &[u8], u16, &str); 5] = [
        ("empty", "image/png", b"", 422, "/problems/upload-empty"),
        ("png then html", "image/png", &polyglot, 422, "/problems/upload-content-mismatch"),
        ("truncated", "image/png", b"\x89PN", 422, "/problems/upload-content-mismatch"),
        ("stored as html", "text/html", PNG_1X1, 422, "/problems/upload-type-mismatch"),
        (
            "jpeg bytes as png",
            "image/png",
            &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10],
            422,
            "/problems/upload-content-mismatch",
        ),
    ];
    for (what, content_type, body, status, kind) in cases {
        let key = format!("uploads/user-1/{}.png", id());
        f.put_raw(&key, content_type, body).await;
        let (got, problem) = f.record("user-1", &key).await;
        assert_eq!((got, problem["type"].as_str()), (status, Some(kind)), "{what}: {problem}");
        assert_eq!(f.keys().await, kept, "{what}: only the offending object was deleted");
    }

    let too_big = format!("uploads/user-1/{}.png", id());
    let mut big = PNG_1X1.to_vec();
    big.resize(5 * 1024 * 1024 + 1, 0);
    f.put_raw(&too_big, "image/png", &big).await;
    let (got, problem) = f.record("user-1", &too_big).await;
    assert_eq!(
        (got, problem["type"].as_str(), problem["maxBytes"].as_u64()),
        (422, Some("/problems/upload-too-large"), Some(5242880))
    );
    assert_eq!(f.keys().await, kept);

    // Still missing (presigned, never PUT) and never issued: 404, nothing deleted.
    let req = http::Request::builder()
        .method("POST")
        .uri("/uploads")
        .header("content-type", "application/json")
        .header("authorization", f.bearer("user-1"))
        .body(Body::Text(json!({"filename": "a.png", "contentType": "image/png", "size": 70}).to_string()))
        .unwrap();
    let pending = json_of(&upload_presign::handler::handle(&f.state, req).await);
    for key in [key_of(&pending), format!("uploads/user-1/{}.png", id())] {
        let (got, problem) = f.record("user-1", &key).await;
        assert_eq!((got, problem["type"].as_str()), (404, Some("/problems/upload-not-found")), "{key}");
    }
    assert_eq!(f.keys().await, kept);

    // The recorded avatar is still the first one.
    let shown = json_of(&profile_with(&f.state, "user-1").await);
    assert!(shown["avatar"]["url"].as_str().unwrap().contains(&avatar_key(&key_of(&mine))), "{shown}");
    assert!(kept.contains(&key_of(&theirs)));
}

#[tokio::test]
async fn bad_keys_and_bodies_get_precise_problems_and_touch_nothing() {
    let f = flow().await;
    let theirs = f.upload("user-2", "image/png", PNG_1X1).await;
    let their_key = key_of(&theirs);
    let their_id = their_key.rsplit('/').next().unwrap().to_owned();
    let kept = f.keys().await;

    let (status, problem) = f.record("user-1", &their_key).await;
    assert_eq!((status, problem["type"].as_str()), (403, Some("/problems/upload-key-forbidden")), "{problem}");

    let malformed = [
        format!("uploads/user-1/../user-2/{their_id}"),
        format!("uploads/user-1/%2e%2e/user-2/{their_id}"),
        format!("uploads/user-1/%2E%2E%2Fuser-2%2F{their_id}"),
        format!("uploads/user\u{FF0D}2/{their_id}"),
        format!("uploads/user-1\u{2215}..\u{2215}user-2/{their_id}"),
        format!("uploads/user-2/{their_id}\u{200B}"),
        format!("uploads//user-2/{their_id}"),
        format!("/uploads/user-2/{their_id}"),
        format!("avatars/user-1/{their_id}"),
        "uploads/user-1/not-a-uuid.png".to_owned(),
        String::new(),
    ];
    for key in &malformed {
        let (status, problem) = f.record("user-1", key).await;
        assert_eq!(
            (status, problem["type"].as_str()),
            (400, Some("/problems/invalid-upload-key")),
            "{key:?}: {problem}"
        );
    }
    let (status, problem) = f.record("user-1", &format!("uploads/user-1/{}.pdf", uuid::Uuid::new_v4())).await;
    assert_eq!((status, problem["type"].as_str()), (400, Some("/problems/avatar-type-not-allowed")), "{problem}");

    for body in [json!({"key": their_key, "extra": 1}), json!({}), json!({"key": 1}), json!({"key": null})] {
        let r = record_with(&f.state, Some(f.bearer("user-1")), body.clone()).await;
        assert_eq!(
            (r.status().as_u16(), json_of(&r)["type"].as_str()),
            (400, Some("/problems/invalid-body")),
            "{body}"
        );
    }
    let r = record_with(&f.state, None, json!({"key": their_key})).await;
    assert_eq!(r.status(), 401);
    for (id, status) in [("user-2", 404), ("a%2e", 400), ("..", 400)] {
        let r = profile_with(&f.state, id).await;
        assert_eq!(r.status(), status, "{id}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(f.keys().await, kept, "nothing deleted");
    assert_eq!(f.user_items().await, 0, "nothing recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_records_end_with_one_avatar_and_no_orphan() {
    let moto = testkit::SerialMoto::start();
    let f = flow_at(Some(&moto)).await;
    let mut uploads = Vec::new();
    for _ in 0..6 {
        uploads.push(key_of(&f.upload("user-1", "image/png", PNG_1X1).await));
    }
    let f = std::sync::Arc::new(f);
    let tasks: Vec<_> = uploads
        .iter()
        .cloned()
        .map(|key| {
            let f = f.clone();
            tokio::spawn(async move { f.record("user-1", &key).await })
        })
        .collect();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let item = f
        .dynamodb
        .get_item()
        .table_name(&f.users_table)
        .key("id", aws_sdk_dynamodb::types::AttributeValue::S("user-1".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the user item");
    let recorded = item["avatarKey"].as_s().unwrap().clone();
    assert_eq!(item["version"].as_n().unwrap(), "6", "every record committed once, one after the other");
    assert_eq!(f.keys().await, std::slice::from_ref(&recorded), "exactly the recorded avatar is left");
    assert!(uploads.iter().any(|k| avatar_key(k) == recorded));
}

/// With the edge on (`AVATAR_BASE_URL`, as the template sets it), a profile links the avatar
/// through CloudFront: no signature, no expiry, the key as the path (immutable, so cacheable).
#[tokio::test]
async fn with_the_edge_profiles_link_avatars_through_it() {
    let f = flow_with(None, &[("AVATAR_BASE_URL", "https://d111111abcdef8.cloudfront.net/")]).await;
    let upload = f.upload("user-1", "image/png", PNG_1X1).await;
    assert_eq!(f.record("user-1", &key_of(&upload)).await.0, 200);
    let shown = json_of(&profile_with(&f.state, "user-1").await);
    let expected = format!("https://d111111abcdef8.cloudfront.net/{}", avatar_key(&key_of(&upload)));
    assert_eq!(shown["avatar"]["url"], expected.as_str(), "{shown}");
    assert!(shown["avatar"].get("expiresAt").is_none(), "{shown}");
}
