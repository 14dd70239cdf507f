//! The refusals S3 itself makes, against an S3 server that checks SigV4 the way S3 does: s3s-fs,
//! embedded and served on a free loopback port with credentials. moto does not check presigned
//! signatures, expiry or signed headers, so these cannot run there.
//!
//! A URL from `shared::uploads` uploads exactly the signed file; a body of another size, another
//! content type, a changed key, a tampered signature and an expired URL each get 403, and leave
//! nothing in the bucket.

use crate::common;

use std::time::Duration;

use crate::common::{ACCESS_KEY, BUCKET, S3sServer, assert_server_key, put};
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use serde_json::Value;
use shared::auth::UserId;
use shared::uploads::{DEFAULT_ALLOWED_TYPES, UploadRequest, UploadSettings, Uploads};

struct Setup {
    server: S3sServer,
    s3: aws_sdk_s3::Client,
}

async fn setup() -> Setup {
    common::lambda_environment();
    let server = S3sServer::start().await;
    let s3 = server.client();
    s3.create_bucket().bucket(BUCKET).send().await.expect("create bucket on s3s-fs");
    Setup { server, s3 }
}

impl Setup {
    fn uploads(&self, ttl: Duration) -> Uploads {
        let settings = UploadSettings {
            bucket: BUCKET.into(),
            allowed_types: DEFAULT_ALLOWED_TYPES
                .iter()
                .map(|t| shared::uploads::UploadType::known(t).unwrap())
                .collect(),
            max_bytes: 5 * 1024 * 1024,
            url_ttl: ttl,
            force_path_style: true,
        };
        Uploads::new(self.s3.clone(), settings)
    }

    /// A presigned upload of `size` bytes of `content_type`, as the JSON the API returns.
    async fn presign(&self, ttl: Duration, content_type: &str, size: u64) -> Value {
        let uploads = self.uploads(ttl);
        let req = UploadRequest { filename: "../../etc/passwd".into(), content_type: content_type.into(), size };
        let plan = uploads.plan(&UserId::parse("user-1").unwrap(), &req).expect("allowed");
        let presigned = uploads.presign(plan).await.expect("presign");
        assert!(presigned.upload_url.starts_with(&self.server.endpoint), "{}", presigned.upload_url);
        serde_json::to_value(presigned).unwrap()
    }

    async fn stored(&self, key: &str) -> Option<(Option<String>, Option<i64>)> {
        match self.s3.head_object().bucket(BUCKET).key(key).send().await {
            Ok(h) => Some((h.content_type().map(str::to_owned), h.content_length())),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => None,
            Err(e) => panic!("head {key}: {e:?}"),
        }
    }

    async fn object_count(&self) -> usize {
        self.s3.list_objects_v2().bucket(BUCKET).send().await.unwrap().contents().len()
    }
}

/// A raw PUT with chosen headers and body.
async fn put_raw(url: &str, content_type: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut req = reqwest::Client::new().put(url);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.body(body).send().await.expect("PUT");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn url(p: &Value) -> &str {
    p["uploadUrl"].as_str().unwrap()
}

#[tokio::test]
async fn the_signed_upload_is_accepted_and_stored_as_signed() {
    let s = setup().await;
    let p = s.presign(Duration::from_secs(300), "image/png", 4096).await;
    let key = p["key"].as_str().unwrap();
    assert_server_key(key, "user-1", "png");
    assert_eq!(put(&p, vec![7; 4096]).await, 200);
    assert_eq!(s.stored(key).await, Some((Some("image/png".into()), Some(4096))));
}

#[tokio::test]
async fn another_size_is_refused() {
    let s = setup().await;
    let p = s.presign(Duration::from_secs(300), "image/jpeg", 1000).await;
    for size in [1001, 999, 1, 5 * 1024 * 1024] {
        let (status, text) = put_raw(url(&p), Some("image/jpeg"), vec![0; size]).await;
        assert_eq!(status, 403, "{size} bytes: {text}");
        assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    }
    assert_eq!(s.stored(p["key"].as_str().unwrap()).await, None);
    assert_eq!(s.object_count().await, 0);
}

#[tokio::test]
async fn another_content_type_is_refused() {
    let s = setup().await;
    let p = s.presign(Duration::from_secs(300), "image/jpeg", 100).await;
    for ct in [Some("image/png"), Some("text/html"), Some("image/jpeg; charset=utf-8"), Some("IMAGE/JPEG"), None] {
        let (status, text) = put_raw(url(&p), ct, vec![0; 100]).await;
        assert_eq!(status, 403, "{ct:?}: {text}");
        assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    }
    assert_eq!(s.object_count().await, 0);
}

#[tokio::test]
async fn a_tampered_signature_or_key_is_refused() {
    let s = setup().await;
    let p = s.presign(Duration::from_secs(300), "image/webp", 10).await;
    let u = url(&p);

    let (head, sig) = u.split_once("X-Amz-Signature=").unwrap();
    let (sig, tail) = sig.split_at(64);
    let flipped_last = format!("{}{}", &sig[..63], if sig.ends_with('0') { '1' } else { '0' });
    let tampered = format!("{head}X-Amz-Signature={flipped_last}{tail}");
    let (status, text) = put_raw(&tampered, Some("image/webp"), vec![0; 10]).await;
    assert_eq!(status, 403, "tampered signature: {text}");
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");

    // The same signature for another user's key, or a longer expiry.
    let other_key = u.replacen("/uploads/user-1/", "/uploads/user-2/", 1);
    let (status, text) = put_raw(&other_key, Some("image/webp"), vec![0; 10]).await;
    assert_eq!(status, 403, "changed key: {text}");
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    let longer = u.replacen("X-Amz-Expires=300", "X-Amz-Expires=604800", 1);
    let (status, text) = put_raw(&longer, Some("image/webp"), vec![0; 10]).await;
    assert_eq!(status, 403, "changed expiry: {text}");
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    assert_eq!(s.object_count().await, 0);

    // The untouched URL still works: the refusals were about the changes.
    assert_eq!(put(&p, vec![0; 10]).await, 200);
}

#[tokio::test]
async fn an_expired_url_is_refused() {
    let s = setup().await;
    let p = s.presign(Duration::from_secs(1), "image/png", 10).await;
    assert!(url(&p).contains("X-Amz-Expires=1&"), "{}", url(&p));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, text) = put_raw(url(&p), Some("image/png"), vec![0; 10]).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("AccessDenied") && text.contains("expired"), "{text}");
    assert_eq!(s.object_count().await, 0);
}

#[tokio::test]
async fn a_url_signed_with_other_credentials_is_refused() {
    let mut s = setup().await;
    let right = s.s3.clone();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY, "not-the-secret", None, None, "wrong"))
        .endpoint_url(&s.server.endpoint)
        .force_path_style(true)
        .build();
    s.s3 = aws_sdk_s3::Client::from_conf(config);
    let p = s.presign(Duration::from_secs(300), "image/png", 10).await;
    s.s3 = right;
    assert_eq!(put(&p, vec![0; 10]).await, 403);
    assert_eq!(s.object_count().await, 0);
}

/// Under Lambda (the environment is set by `setup`) the SDK adds an unsigned `X-Amzn-Trace-Id` to
/// the presigned request; the answer lists exactly the headers in `X-Amz-SignedHeaders`, so the
/// browser never sends it (the bucket CORS does not allow it).
#[tokio::test]
async fn the_answer_lists_exactly_the_signed_headers_under_lambda() {
    let s = setup().await;
    let uploads = s.uploads(Duration::from_secs(300));
    let raw = uploads
        .presigner()
        .put_object()
        .bucket(BUCKET)
        .key("uploads/user-1/x.png")
        .content_type("image/png")
        .content_length(10)
        .if_none_match("*")
        .presigned(aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let trace = raw.headers().find(|(n, _)| n.eq_ignore_ascii_case("x-amzn-trace-id")).map(|(_, v)| v.to_owned());
    assert_eq!(trace.as_deref(), Some(common::TRACE_ID), "the Lambda environment reaches the SDK");
    assert!(!shared::uploads::signed_headers(raw.uri()).contains(&"x-amzn-trace-id".to_owned()), "it is not signed");

    let p = s.presign(Duration::from_secs(300), "image/png", 10).await;
    let mut listed: Vec<String> = p["headers"].as_object().unwrap().keys().map(|k| k.to_ascii_lowercase()).collect();
    listed.sort();
    let mut signed = shared::uploads::signed_headers(url(&p));
    signed.retain(|h| h != "host");
    signed.sort();
    assert_eq!(listed, signed);
    assert_eq!(listed, ["content-length", "content-type", "if-none-match"]);
    assert_eq!(put(&p, vec![0; 10]).await, 200);
}

/// aws-sdk-s3 ≥ 1.69 computes request checksums by default (`WhenSupported`). A presigned URL
/// signed with one would carry the empty body's checksum and S3 would refuse the real file, so
/// the presigning client asks for checksums only when required, and no URL carries one.
#[tokio::test]
async fn presigned_urls_carry_no_request_checksum() {
    let s = setup().await;
    assert_eq!(
        s.s3.config().request_checksum_calculation(),
        None,
        "the plain client keeps the SDK default (WhenSupported)"
    );
    let uploads = s.uploads(Duration::from_secs(300));
    assert_eq!(
        uploads.presigner().config().request_checksum_calculation(),
        Some(&aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
    );
    for (content_type, size) in [("image/png", 1), ("image/jpeg", 70_001), ("image/webp", 4096)] {
        let p = s.presign(Duration::from_secs(300), content_type, size).await;
        let u = url(&p).to_ascii_lowercase();
        assert!(!u.contains("checksum"), "{u}");
        assert!(p["headers"].as_object().unwrap().keys().all(|k| !k.to_ascii_lowercase().contains("checksum")), "{p}");
        // s3s-fs verifies any checksum it is given: the real bytes go through.
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        assert_eq!(put(&p, body).await, 200, "{content_type}");
    }
}
