//! A real browser upload, all three steps: headless Chromium (Debian's `chromium`) loads a page
//! from one loopback origin, asks the API (the handler, served over HTTP on another port, with the
//! Lambda environment set) for a presigned URL, PUTs a PNG to the local S3 endpoint (moto, whose
//! bucket CORS comes from template.yaml) with exactly the listed headers, records it with
//! `PUT /users/me/avatar`, reads `GET /users/{id}` and shows the avatar in an `<img>`. Every
//! cross-origin step needs a CORS preflight the browser must accept: the API's (Authorization and
//! a JSON body; PUT), answered as in AWS by API Gateway's CORS layer from template.yaml's
//! CorsConfiguration (testkit::ApiFrontDoor, the front door `make dev` runs) before any function
//! sees it, and the bucket's (non-safelisted Content-Type and If-None-Match on a PUT).
//! The test reads the page's result from the DOM and the objects from S3.
//!
//! A second page, on an origin that is not allowed, shows that both refusals are real.
//! Chromium missing is a test failure, never a skip.

use crate::common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::common::{Fixture, HttpServer, assert_server_key};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::{Value, json};

const SIZE: u64 = 70_001;
const FILENAME: &str = "../../etc/passwd\r\n\u{202E}gnp.png";

/// Loads `url` in a fresh headless Chromium and returns the DOM after the page's script ran.
fn dump_dom(url: &str) -> String {
    testkit::chromium::dump_dom(&testkit::chromium::Page {
        url,
        extra_args: Vec::new(),
        virtual_time_budget: Duration::from_secs(10),
        timeout: Duration::from_secs(90),
    })
}

/// The page: on load, ask the API for a presigned URL, then PUT the file with exactly the
/// method and headers the answer names (the browser drops Content-Length from `headers` and
/// sets it from the body), and write what happened into the DOM.
fn upload_page(api: &str, token: &str) -> String {
    let config = json!({ "api": api, "token": token, "size": SIZE, "filename": FILENAME, "png": common::padded_png(SIZE as usize) });
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>upload</title></head>
<body><pre id="result">pending</pre>
<script>
const config = {config};
(async () => {{
  const out = {{}};
  try {{
    // A real PNG of config.size bytes, padded by an ancillary chunk before its IEND.
    const bytes = new Uint8Array(config.png);
    const file = new File([bytes], config.filename, {{ type: "image/png" }});
    const r = await fetch(config.api + "/uploads", {{
      method: "POST",
      headers: {{ "Authorization": "Bearer " + config.token, "Content-Type": "application/json" }},
      body: JSON.stringify({{ filename: file.name, contentType: file.type, size: file.size }}),
    }});
    out.presignStatus = r.status;
    const p = await r.json();
    out.presign = p;
    const put = await fetch(p.uploadUrl, {{ method: p.method, headers: p.headers, body: file }});
    out.putStatus = put.status;
    out.etag = put.headers.get("ETag");
    const rec = await fetch(config.api + "/users/me/avatar", {{
      method: "PUT",
      headers: {{ "Authorization": "Bearer " + config.token, "Content-Type": "application/json" }},
      body: JSON.stringify({{ key: p.key }}),
    }});
    out.recordStatus = rec.status;
    out.record = await rec.json();
    const prof = await fetch(config.api + "/users/" + out.record.id);
    out.profileStatus = prof.status;
    out.profile = await prof.json();
    const img = new Image();
    await new Promise((resolve, reject) => {{
      img.onload = resolve;
      img.onerror = () => reject(new Error("avatar image did not load"));
      img.src = out.profile.avatar.url;
    }});
    out.avatarWidth = img.naturalWidth;
  }} catch (e) {{
    out.error = String(e);
  }}
  document.getElementById("result").textContent = JSON.stringify(out);
}})();
</script></body></html>"#
    )
}

/// The page on a disallowed origin: the API call and a PUT to a valid presigned URL must both
/// be blocked by the browser.
fn blocked_page(api: &str, token: &str, presigned: &Value) -> String {
    let config = json!({ "api": api, "token": token, "presigned": presigned });
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>blocked</title></head>
<body><pre id="result">pending</pre>
<script>
const config = {config};
(async () => {{
  const out = {{}};
  try {{
    const r = await fetch(config.api + "/uploads", {{
      method: "POST",
      headers: {{ "Authorization": "Bearer " + config.token, "Content-Type": "application/json" }},
      body: JSON.stringify({{ filename: "a.png", contentType: "image/png", size: 3 }}),
    }});
    out.apiStatus = r.status;
  }} catch (e) {{ out.apiError = String(e); }}
  try {{
    const p = config.presigned;
    const put = await fetch(p.uploadUrl, {{ method: p.method, headers: p.headers, body: new Uint8Array([1, 2, 3]) }});
    out.putStatus = put.status;
  }} catch (e) {{ out.putError = String(e); }}
  document.getElementById("result").textContent = JSON.stringify(out);
}})();
</script></body></html>"#
    )
}

fn html(text: String) -> Response<Body> {
    let mut r = Response::new(Body::Text(text));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_uploads_through_the_api_and_the_bucket_cors() {
    // The page server starts first: its origin goes into ALLOWED_ORIGINS and the bucket CORS.
    let pages: Arc<OnceLock<(String, String)>> = Arc::new(OnceLock::new());
    let page_server = {
        let pages = pages.clone();
        HttpServer::start(move |req| {
            let pages = pages.clone();
            async move {
                let (upload, blocked) = pages.get().cloned().unwrap_or_default();
                match req.uri().path() {
                    "/" => html(upload),
                    "/blocked" => html(blocked),
                    _ => shared::http::Problem::not_found("no such page").to_response(),
                }
            }
        })
        .await
    };
    let origin = format!("http://127.0.0.1:{}", page_server.port);
    let f = Fixture::new(&origin).await;

    // The API: the handler behind HTTP, recording what reached it.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let api_server = {
        let state = Arc::new(f.state.clone());
        let seen = seen.clone();
        HttpServer::start(move |req| {
            let state = state.clone();
            seen.lock().unwrap().push(format!("{} {}", req.method(), req.uri().path()));
            async move { upload_presign::handler::handle(&state, req).await }
        })
        .await
    };
    // In front of it, API Gateway's CORS layer (CorsConfiguration, as template.yaml sets it): it
    // answers the preflights, so the handler sees only the real requests.
    let front_door = testkit::ApiFrontDoor::start(api_server.port, &[&origin]);
    let api = front_door.url();
    let token = f.tokens.mint(&shared::auth::UserId::parse("browser-user").unwrap()).unwrap();

    // A valid presigned URL for the blocked page to try from the wrong origin.
    let for_blocked = common::json_of(
        &f.presign(Some("other-user"), json!({"filename": "a.png", "contentType": "image/png", "size": 3})).await,
    );
    assert!(pages.set((upload_page(&api, &token), blocked_page(&api, &token, &for_blocked))).is_ok());

    let dom = tokio::task::spawn_blocking({
        let url = format!("{origin}/");
        move || dump_dom(&url)
    })
    .await
    .unwrap();
    let result = testkit::chromium::result_of(&dom);
    assert_eq!(result.get("error"), None, "the page failed: {result}");
    assert_eq!(result["presignStatus"], 200, "{result}");
    assert_eq!(result["putStatus"], 200, "{result}");
    let etag = result["etag"].as_str().unwrap_or_else(|| panic!("the bucket CORS exposes ETag: {result}"));
    let key = result["presign"]["key"].as_str().unwrap();
    assert_server_key(key, "browser-user", "png");
    assert_eq!(result["presign"]["filename"], "passwdgnp.png", "{result}");
    assert_eq!(result["presign"]["headers"]["If-None-Match"], "*", "{result}");
    assert_eq!(result["recordStatus"], 200, "{result}");
    assert_eq!(result["profileStatus"], 200, "{result}");
    assert_eq!(result["profile"]["id"], "browser-user", "{result}");
    assert_eq!(result["profile"]["avatar"]["size"], SIZE, "{result}");
    assert_eq!(result["avatarWidth"], 1, "the browser decoded the avatar from the profile's URL: {result}");
    assert_eq!(
        *seen.lock().unwrap(),
        ["POST /uploads", "PUT /users/me/avatar", "GET /users/browser-user"],
        "the API layer answered both preflights; only the requests reached the function"
    );

    // The recorded copy, byte for byte; the upload itself is gone.
    let avatar = key.replacen("uploads/", "avatars/", 1);
    let head = f.aws.s3().head_object().bucket(&f.bucket).key(&avatar).send().await.expect("the recorded avatar");
    assert_eq!(head.content_type(), Some("image/png"));
    assert_eq!(head.content_length(), Some(SIZE as i64));
    assert_eq!(head.e_tag(), Some(etag), "the page saw the stored object's ETag (a copy keeps it)");
    assert!(f.aws.s3().head_object().bucket(&f.bucket).key(key).send().await.is_err(), "the upload was removed");
    let body =
        f.aws.s3().get_object().bucket(&f.bucket).key(&avatar).send().await.unwrap().body.collect().await.unwrap();
    let expected = common::padded_png(SIZE as usize);
    assert!(body.into_bytes().as_ref() == expected.as_slice(), "the stored bytes are the page's");

    // The same pages from an origin that is allowed nowhere: both preflights fail in the browser.
    seen.lock().unwrap().clear();
    let dom = tokio::task::spawn_blocking({
        let url = format!("http://localhost:{}/blocked", page_server.port);
        move || dump_dom(&url)
    })
    .await
    .unwrap();
    let result = testkit::chromium::result_of(&dom);
    assert!(result["apiError"].as_str().is_some_and(|e| e.contains("TypeError")), "API call not blocked: {result}");
    assert!(result["putError"].as_str().is_some_and(|e| e.contains("TypeError")), "PUT not blocked: {result}");
    assert!(seen.lock().unwrap().is_empty(), "the API layer refused the preflight; nothing reached the function");
    let blocked_key = for_blocked["key"].as_str().unwrap();
    assert!(f.aws.s3().head_object().bucket(&f.bucket).key(blocked_key).send().await.is_err(), "nothing was stored");
}
