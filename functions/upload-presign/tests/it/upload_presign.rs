//! upload-presign against moto's S3, with the bucket and the function's environment provisioned
//! from template.yaml: the response contract, uploads through the presigned URL, the refusals
//! (type, size, auth), CORS, hostile filenames, and the sample events in events/upload-presign.
//! (moto does not check signatures; tests/signature_refusals.rs covers that against s3s.)

use crate::common;

use shared::config::FromEnv;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::{Fixture, assert_server_key, json_of, put};
use lambda_http::Body;
use serde_json::json;

const ORIGIN: &str = "https://app.example.test";

#[tokio::test]
async fn the_environment_and_the_bucket_come_from_the_template() {
    let f = Fixture::new(ORIGIN).await;
    assert_eq!(f.env["UPLOADS_BUCKET"], f.bucket);
    assert_eq!(f.env["S3_FORCE_PATH_STYLE"], "true", "overridable locally; the template says false");
    let u = &f.settings.uploads;
    assert_eq!(u.allowed_mimes(), ["image/jpeg", "image/png", "image/webp"]);
    assert_eq!((u.max_bytes, u.url_ttl.as_secs()), (5 * 1024 * 1024, 300));

    let cors = f.aws.s3().get_bucket_cors().bucket(&f.bucket).send().await.expect("bucket CORS from the template");
    let rules = cors.cors_rules();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].allowed_origins(), [ORIGIN]);
    assert_eq!(rules[0].allowed_methods(), ["PUT"]);
    assert_eq!(rules[0].allowed_headers(), ["Content-Type", "If-None-Match"]);
    assert_eq!(rules[0].expose_headers(), ["ETag"]);

    // Cleanup: unrecorded uploads expire after a day, recorded avatars (avatars/) are untouched,
    // incomplete multipart uploads are aborted after a day.
    let lifecycle = f.aws.s3().get_bucket_lifecycle_configuration().bucket(&f.bucket).send().await.expect("lifecycle");
    let rules: Vec<_> = lifecycle
        .rules()
        .iter()
        .map(|r| {
            (
                r.id().unwrap_or_default().to_owned(),
                r.filter().and_then(|f| f.prefix()).unwrap_or_default().to_owned(),
                r.expiration().and_then(|e| e.days()),
                r.abort_incomplete_multipart_upload().and_then(|a| a.days_after_initiation()),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("AbortIncompleteMultipartUploads".to_owned(), String::new(), None, Some(1)),
            ("ExpireUnrecordedUploads".to_owned(), "uploads/".to_owned(), Some(1), None),
        ]
    );
    assert!(rules.iter().all(|r| !"avatars/".starts_with(&r.1) || r.2.is_none()), "no rule expires avatars/");
    assert_eq!(f.env["USERS_TABLE"], f.settings.avatars.users_table);
}

#[tokio::test]
async fn a_valid_request_gets_a_url_that_uploads_exactly_that_file() {
    let f = Fixture::new(ORIGIN).await;
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let r = f.presign(Some("user-1"), json!({"filename": "cat.png", "contentType": "image/png", "size": 1234})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
    let p = json_of(&r);
    assert_eq!(p["method"], "PUT");
    // Exactly the signed headers: the SDK's unsigned X-Amzn-Trace-Id (the Lambda environment is
    // set) is not among them.
    assert_eq!(p["headers"], json!({"Content-Type": "image/png", "Content-Length": "1234", "If-None-Match": "*"}));
    // The bucket CORS allows every listed header a page sets (Content-Length is the browser's own,
    // a forbidden header name that never appears in a preflight).
    let cors = f.aws.s3().get_bucket_cors().bucket(&f.bucket).send().await.expect("bucket CORS");
    let allowed: Vec<String> = cors.cors_rules()[0].allowed_headers().iter().map(|h| h.to_ascii_lowercase()).collect();
    for name in p["headers"].as_object().unwrap().keys().map(|k| k.to_ascii_lowercase()) {
        assert!(name == "content-length" || allowed.contains(&name), "{name} is listed but the bucket CORS refuses it");
    }
    assert_eq!(p["filename"], "cat.png");
    let key = p["key"].as_str().unwrap();
    assert_server_key(key, "user-1", "png");
    let url = p["uploadUrl"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/{}/{key}?", testkit::aws_endpoint(), f.bucket)), "path style: {url}");
    assert!(url.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bif-none-match"), "{url}");
    assert!(url.contains("X-Amz-Expires=300"), "{url}");
    let expires =
        time::OffsetDateTime::parse(p["expiresAt"].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp();
    assert!((before + 300..=before + 302).contains(&expires), "{}", p["expiresAt"]);

    let body: Vec<u8> = (0..1234u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(put(&p, body.clone()).await, 200);
    let head = f.aws.s3().head_object().bucket(&f.bucket).key(key).send().await.expect("uploaded object");
    assert_eq!(head.content_type(), Some("image/png"));
    assert_eq!(head.content_length(), Some(1234));
    let stored = f.aws.s3().get_object().bucket(&f.bucket).key(key).send().await.unwrap().body.collect().await.unwrap();
    assert_eq!(stored.into_bytes().as_ref(), body.as_slice());

    // Each request gets its own key, even for the same file.
    let again = json_of(
        &f.presign(Some("user-1"), json!({"filename": "cat.png", "contentType": "image/png", "size": 1234})).await,
    );
    assert_ne!(again["key"], p["key"]);
    // Content types are matched without case; the one to send is the canonical spelling.
    let upper = f.presign(Some("user-2"), json!({"filename": "a", "contentType": "IMAGE/WEBP", "size": 1})).await;
    let upper = json_of(&upper);
    assert_eq!(upper["headers"]["Content-Type"], "image/webp");
    assert_server_key(upper["key"].as_str().unwrap(), "user-2", "webp");
}

#[tokio::test]
async fn hostile_filenames_never_reach_the_key() {
    let f = Fixture::new(ORIGIN).await;
    let names = [
        "../../etc/passwd",
        "..\\..\\boot.ini",
        "/etc/shadow",
        "a\r\nX-Amz-Meta-Injected: 1\r\n.png",
        "nul\u{0}.png",
        "invoice\u{202E}gpj.exe",
        "zero\u{200B}width\u{FEFF}.png",
        "full\u{FF0F}width\u{FF0E}\u{FF0E}\u{FF0F}x.png",
        "%2e%2e%2f%2e%2e%2fx.png",
        "uploads/user-2/mine.png",
        "..",
    ];
    let mut keys = Vec::new();
    for name in names {
        let r = f.presign(Some("user-1"), json!({"filename": name, "contentType": "image/jpeg", "size": 3})).await;
        assert_eq!(r.status(), 200, "{name:?}");
        let p = json_of(&r);
        let key = p["key"].as_str().unwrap().to_owned();
        assert_server_key(&key, "user-1", "jpg");
        let shown = p["filename"].as_str().unwrap();
        assert!(shown.chars().all(|c| c.is_alphanumeric() || " ._-()".contains(c)), "{name:?} shown as {shown:?}");
        assert_eq!(put(&p, vec![1, 2, 3]).await, 200, "{name:?}");
        keys.push(key);
    }
    assert_eq!(
        json_of(
            &f.presign(Some("u"), json!({"filename": "../../etc/passwd", "contentType": "image/png", "size": 1})).await
        )["filename"],
        "passwd"
    );

    // Everything in the bucket is under uploads/user-1/, exactly the keys the server chose.
    let listed = f.aws.s3().list_objects_v2().bucket(&f.bucket).send().await.unwrap();
    let mut stored: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
    stored.sort();
    keys.sort();
    assert_eq!(stored, keys);
}

#[tokio::test]
async fn requests_outside_the_limits_get_problems_naming_the_limit() {
    let f = Fixture::new(ORIGIN).await;
    for ct in ["image/svg+xml", "text/html", "application/pdf", "image/png; charset=binary", ""] {
        let r = f.presign(Some("u"), json!({"filename": "x", "contentType": ct, "size": 10})).await;
        assert_eq!(r.status(), 400, "{ct}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p = json_of(&r);
        assert_eq!(p["type"], "/problems/upload-type-not-allowed");
        assert_eq!(p["allowed"], json!(["image/jpeg", "image/png", "image/webp"]));
        assert!(p["detail"].as_str().unwrap().contains("image/jpeg, image/png, image/webp"), "{p}");
    }

    let max = 5 * 1024 * 1024;
    let r = f.presign(Some("u"), json!({"filename": "x", "contentType": "image/png", "size": max + 1})).await;
    assert_eq!(r.status(), 413);
    let p = json_of(&r);
    assert_eq!((p["type"].as_str(), p["maxBytes"].as_u64()), (Some("/problems/upload-too-large"), Some(max)));
    assert!(p["detail"].as_str().unwrap().contains("the limit is 5242880 bytes"), "{p}");
    let r = f.presign(Some("u"), json!({"filename": "x", "contentType": "image/png", "size": max})).await;
    assert_eq!(r.status(), 200, "exactly the limit is allowed");

    let r = f.presign(Some("u"), json!({"filename": "x", "contentType": "image/png", "size": 0})).await;
    assert_eq!((r.status().as_u16(), json_of(&r)["type"].as_str()), (400, Some("/problems/upload-empty")));
    for bad in [
        json!({"filename": "x", "contentType": "image/png", "size": -1}),
        json!({"filename": "x", "contentType": "image/png"}),
        json!({"filename": "x", "contentType": "image/png", "size": 1, "key": "uploads/other/x.png"}),
    ] {
        let r = f.presign(Some("u"), bad.clone()).await;
        assert_eq!((r.status().as_u16(), json_of(&r)["type"].as_str()), (400, Some("/problems/invalid-body")), "{bad}");
    }
    let r = f.presign(Some("u"), json!({"filename": "", "contentType": "image/png", "size": 1})).await;
    assert_eq!((r.status().as_u16(), json_of(&r)["type"].as_str()), (400, Some("/problems/invalid-filename")));

    let req = http::Request::builder()
        .method("POST")
        .uri("/uploads")
        .header("authorization", f.bearer("u"))
        .header("content-type", "text/plain")
        .body(Body::Text("{}".into()))
        .unwrap();
    assert_eq!(upload_presign::handler::handle(&f.state, req).await.status(), 415);
}

#[tokio::test]
async fn authentication_comes_first() {
    let f = Fixture::new(ORIGIN).await;
    let r = f.presign(None, json!({"filename": "x", "contentType": "image/svg+xml", "size": 10})).await;
    assert_eq!(r.status(), 401, "no token: 401 before any look at the body");
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));

    // Signed by a key pair of its own that claims the test key's kid: refused.
    let forged = testkit::impostor_signer("test-1").mint(&shared::auth::UserId::parse("user-1").unwrap()).unwrap();
    let req = http::Request::builder()
        .method("POST")
        .uri("/uploads")
        .header("authorization", format!("Bearer {forged}"))
        .header("content-type", "application/json")
        .body(Body::Text(json!({"filename": "x", "contentType": "image/png", "size": 1}).to_string()))
        .unwrap();
    assert_eq!(upload_presign::handler::handle(&f.state, req).await.status(), 401);

    let get = http::Request::builder().method("GET").uri("/uploads").body(Body::Empty).unwrap();
    let r = upload_presign::handler::handle(&f.state, get).await;
    assert_eq!((r.status().as_u16(), r.headers()["allow"].to_str().unwrap()), (405, "POST, OPTIONS"));
}

#[tokio::test]
async fn preflight_allows_the_configured_origin_only() {
    let f = Fixture::new(ORIGIN).await;
    let preflight = |origin: &str| {
        http::Request::builder()
            .method("OPTIONS")
            .uri("/uploads")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .body(Body::Empty)
            .unwrap()
    };
    let ok = upload_presign::handler::handle(&f.state, preflight(ORIGIN)).await;
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], ORIGIN);
    let allowed = ok.headers()["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    assert!(ok.headers()["access-control-allow-methods"].to_str().unwrap().contains("POST"));

    let no = upload_presign::handler::handle(&f.state, preflight("https://evil.example.test")).await;
    assert_eq!(no.status(), 403);
    assert!(!no.headers().contains_key("access-control-allow-origin"));
}

/// The files in events/upload-presign, as the real function sees them (their access-token
/// placeholders filled with tokens of the test key).
#[tokio::test]
async fn sample_events_get_their_expected_status() {
    common::lambda_environment();
    let mut vars =
        testkit::provision_with(&[("AllowedOrigins", "http://localhost:5173")], &[("S3_FORCE_PATH_STYLE", "true")])
            .env("upload-presign");
    vars.insert("JWT_PUBLIC_KEYS".into(), testkit::test_public_keys());
    let signer = testkit::test_signer();
    let settings = upload_presign::settings::Settings::from_env(testkit::env_reader(vars)).unwrap();
    let aws = testkit::aws_clients().await;
    let state = upload_presign::handler::State::new(&settings, &aws);
    // What `ops seed` puts in the bucket before the events check: user-1's uploaded PNG, and an
    // HTML file uploaded as image/png.
    for (key, body) in [
        ("uploads/user-1/6f1c2b9e-4d3a-4b8e-9f21-0a5c7e3d1b42.png", common::PNG_1X1),
        ("uploads/user-1/0d6e8a4f-2c1b-4e7a-8b3c-5f9d1e2a7c60.png", b"<!doctype html><html></html>".as_slice()),
    ] {
        let put = aws.s3().put_object().bucket(&settings.uploads.bucket).key(key).content_type("image/png");
        put.body(body.to_vec().into()).send().await.expect("seed an upload");
    }
    let dir = testkit::workspace_root().join("events");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let entries: Vec<(String, u16)> = manifest
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["function"] == "upload-presign")
        .map(|e| (e["event"].as_str().unwrap().to_owned(), e["expectStatus"].as_u64().unwrap() as u16))
        .collect();
    assert_eq!(entries.len(), 15, "every outcome has a sample event: {entries:?}");
    for (file, status) in entries {
        let file = file.as_str();
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let text = shared::auth::access::fill_access_token_placeholders(&text, &signer).unwrap();
        let req = lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let r = upload_presign::handler::handle(&state, req).await;
        assert_eq!(r.status(), status, "{file}: {:?}", r.body());
        assert_eq!(r.headers()["access-control-allow-origin"], "http://localhost:5173", "{file}");
        assert!(status == 200 || r.headers()["content-type"] == "application/problem+json", "{file}");
        if file.ends_with("presign.json") {
            let p = json_of(&r);
            assert_server_key(p["key"].as_str().unwrap(), "user-1", "jpg");
            assert_eq!(p["headers"]["Content-Length"], "482133");
        }
    }
}
