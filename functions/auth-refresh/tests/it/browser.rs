//! The session cookie in a real browser: headless Chromium (Debian's `chromium`) loads a page of
//! `https://app.example.test`, signs in at `https://api.example.test` with an ID token of the local
//! issuer, lists posts and creates one (posts-read and posts-write behind the same API name),
//! refreshes by cookie and creates another with the new access token, lets that token expire
//! (auth-refresh mints with the shortest `ACCESS_TOKEN_TTL_SECONDS` its settings allow, and the
//! page waits until the token is past its `exp` and the verifiers' leeway, in real time) and sees
//! the API refuse it, refreshes by cookie and creates a third post with the new token, uploads an
//! avatar it drew (a PNG the browser encoded) through upload-presign's presigned PUT straight to
//! the bucket (whose CORS rules come from the template's `AllowedOrigins`, set to the app's
//! origin, see testkit::provision_with), records it and loads it from the profile, refreshes
//! again, signs out and sees the next refresh refused. Both names are
//! the site `example.test` and resolve to this test's HTTPS server on loopback (Chromium's
//! `--host-resolver-rules`), whose certificate a CA made by this test signed (openssl,
//! testkit::TlsFiles; Chromium accepts it by its public key's hash, nothing else).
//!
//! The same page against `https://api.cross-site.test` (another site) shows what docs/sign-in.md
//! says: the sign-in answers 200, but the browser stores no `SameSite=Strict` cookie from a
//! cross-site response, so the refresh arrives without one and is refused. Chromium missing is a
//! test failure, never a skip.

use std::convert::Infallible;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use lambda_http::{Body, Response};
use serde_json::json;

use shared::auth::access::LEEWAY_SECS;
use shared::clock::now_secs;

use crate::sign_in::{CLIENT_ID, SignIn};

const APP: &str = "app.example.test";
const API: &str = "api.example.test";
const CROSS_API: &str = "api.cross-site.test";
/// The access tokens' lifetime in this journey: the shortest `ACCESS_TOKEN_TTL_SECONDS` allows,
/// so that the page can wait for a real expiry.
const ACCESS_TTL_SECS: u64 = shared::auth::access::MIN_TTL_SECS;
/// The avatar the page draws and the browser encodes as PNG.
const AVATAR_SIZE: (u32, u32) = (16, 12);

/// Loads `url` in a fresh headless Chromium that resolves our names to loopback and accepts the
/// certificate with public-key hash `spki`, and returns the DOM after the page's script ran.
fn dump_dom(url: &str, spki: &str) -> String {
    testkit::chromium::dump_dom(&testkit::chromium::Page {
        url,
        extra_args: vec![
            format!("--host-resolver-rules=MAP {APP} 127.0.0.1, MAP {API} 127.0.0.1, MAP {CROSS_API} 127.0.0.1"),
            format!("--ignore-certificate-errors-spki-list={spki}"),
        ],
        virtual_time_budget: Duration::from_secs(15),
        // The journey waits about a minute for an access token to expire.
        timeout: Duration::from_secs(240),
    })
}

/// The page: sign in with the ID token; on the app's own site (`full`) list posts, create one,
/// refresh by cookie, create another, let the access token expire and see it refused, refresh by
/// cookie and create a third, upload an avatar through the presigned PUT; then (both sites)
/// refresh, sign out, refresh once more.
fn journey_page(api: &str, id_token: &str, full: bool) -> String {
    let (width, height) = AVATAR_SIZE;
    let config = json!({ "api": api, "idToken": id_token, "full": full, "width": width, "height": height });
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>sign in</title></head>
<body><pre id="result">pending</pre>
<script>
const config = {config};
const JSON_BODY = {{ "Content-Type": "application/json" }};
const bearer = token => ({{ "Authorization": "Bearer " + token }});
const post = (path, body) => fetch(config.api + path, {{
  method: "POST", credentials: "include", headers: JSON_BODY,
  body: body === undefined ? undefined : JSON.stringify(body),
}});
const send = (method, path, token, body) => fetch(config.api + path, {{
  method, credentials: "include", headers: {{ ...JSON_BODY, ...bearer(token) }}, body: JSON.stringify(body),
}});
const create = (token, title) => send("POST", "/posts", token, {{ title, body: "written in a browser", published: true }});
const list = async () => (await (await fetch(config.api + "/posts", {{ credentials: "include" }})).json()).items.length;
const claims = token => JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
(async () => {{
  const out = {{}};
  try {{
    let r = await post("/auth/session", {{ idToken: config.idToken }});
    out.signIn = r.status;
    const s = await r.json();
    out.accessToken = typeof s.accessToken === "string";
    out.refreshTokenInBody = "refreshToken" in s;
    out.cookieVisibleToScript = document.cookie.includes("refresh_token");
    if (config.full) {{
      r = await fetch(config.api + "/posts", {{ credentials: "include" }});
      out.list = r.status;
      out.listed = (await r.json()).items.length;
      r = await create(s.accessToken, "first post");
      out.create = r.status;
      out.author = (await r.json()).authorId;
    }}
    r = await post("/auth/refresh");
    out.refresh1 = r.status;
    const fresh = await r.json();
    out.refresh1AccessToken = typeof fresh.accessToken === "string";
    if (config.full) {{
      // The refreshed access token is the one the app uses from now on.
      r = await create(fresh.accessToken, "second post");
      out.createAfterRefresh = r.status;

      // Until it expires: the app's own server answers this request once the token's `exp` is
      // behind the API's clock-skew leeway, in real time (the browser's virtual time stands
      // still while a request is pending).
      const {{ iat, exp }} = claims(fresh.accessToken);
      out.tokenLifetime = exp - iat;
      r = await fetch("/wait-until-expired?exp=" + exp);
      out.waited = r.status;
      r = await create(fresh.accessToken, "too late");
      out.expiredCreate = r.status;
      out.expiredDetail = (await r.json()).detail;
      r = await post("/auth/refresh");
      out.refreshAfterExpiry = r.status;
      const renewed = await r.json();
      r = await create(renewed.accessToken, "third post");
      out.createAfterExpiry = r.status;
      out.listedAfter = await list();

      // The avatar: drawn, encoded as PNG by the browser, presigned by the API, PUT straight to
      // the bucket with exactly the headers the API named, recorded, then shown from the profile.
      const canvas = document.createElement("canvas");
      canvas.width = config.width;
      canvas.height = config.height;
      const g = canvas.getContext("2d");
      g.fillStyle = "rgb(51, 170, 102)";
      g.fillRect(0, 0, config.width, config.height);
      const png = await new Promise(resolve => canvas.toBlob(resolve, "image/png"));
      const file = new File([png], "avatar.png", {{ type: "image/png" }});
      out.avatarBytes = file.size;
      r = await send("POST", "/uploads", renewed.accessToken, {{ filename: file.name, contentType: file.type, size: file.size }});
      out.presign = r.status;
      const presigned = await r.json();
      out.key = presigned.key;
      r = await fetch(presigned.uploadUrl, {{ method: presigned.method, headers: presigned.headers, body: file }});
      out.upload = r.status;
      r = await send("PUT", "/users/me/avatar", renewed.accessToken, {{ key: presigned.key }});
      out.record = r.status;
      const me = await r.json();
      r = await fetch(config.api + "/users/" + encodeURIComponent(me.id), {{ credentials: "include" }});
      out.profile = r.status;
      const profile = await r.json();
      out.profileId = profile.id;
      out.profileAvatarSize = profile.avatar.size;
      const img = new Image();
      await new Promise((resolve, reject) => {{
        img.onload = resolve;
        img.onerror = () => reject(new Error("avatar image did not load"));
        img.src = profile.avatar.url;
      }});
      out.avatarShown = [img.naturalWidth, img.naturalHeight];
    }}
    r = await post("/auth/refresh");
    out.refresh2 = r.status;
    await r.text();
    r = await post("/auth/logout");
    out.logout = r.status;
    r = await post("/auth/refresh");
    out.afterLogout = r.status;
    out.afterLogoutType = (await r.json()).type;
  }} catch (e) {{
    out.error = String(e);
  }}
  document.getElementById("result").textContent = JSON.stringify(out);
}})();
</script></body></html>"#
    )
}

fn to_lambda(req: hyper::Request<Bytes>) -> lambda_http::Request {
    let (parts, bytes) = req.into_parts();
    let body = if bytes.is_empty() { Body::Empty } else { Body::Text(String::from_utf8_lossy(&bytes).into_owned()) };
    http::Request::from_parts(parts, body)
}

fn to_hyper(r: Response<Body>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = r.into_parts();
    let bytes = match body {
        Body::Text(t) => Bytes::from(t),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

/// The app server's answer to `/wait-until-expired?exp=N`: 204 once `N` (an access token's `exp`)
/// is behind the verifiers' leeway on this machine's clock, so the page's token is expired for
/// every function. An `exp` that no token of this journey can have is a 400, never a long hang.
async fn wait_until_expired(query: Option<&str>) -> Response<Body> {
    let exp = query.and_then(|q| q.strip_prefix("exp=")).and_then(|v| v.parse::<u64>().ok());
    let mut r = Response::new(Body::Empty);
    match exp {
        Some(exp) if exp <= now_secs() + ACCESS_TTL_SECS + LEEWAY_SECS => {
            // The verifier (jsonwebtoken) refuses a token once `exp < now - leeway`.
            while now_secs() <= exp + LEEWAY_SECS {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            *r.status_mut() = http::StatusCode::NO_CONTENT;
        }
        _ => *r.status_mut() = http::StatusCode::BAD_REQUEST,
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_runs_the_sign_in_journey_on_the_apps_own_site_and_loses_the_cookie_across_sites() {
    // One HTTPS listener for the three names; the Host header says which one was asked.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().unwrap().port();
    let origin = format!("https://{APP}:{port}");
    // The app's origin is the template's AllowedOrigins, as a deployment would set it: the
    // functions' ALLOWED_ORIGINS and the uploads bucket's CORS rules both come from it.
    let ttl = ACCESS_TTL_SECS.to_string();
    let s = SignIn::start_for(
        &[("AllowedOrigins", origin.as_str())],
        &[("ALLOWED_ORIGINS", origin.as_str()), ("ACCESS_TOKEN_TTL_SECONDS", ttl.as_str())],
    )
    .await;

    let tls = testkit::TlsFiles::generate_for(&format!("DNS:{APP},DNS:{API},DNS:{CROSS_API}"));
    let der = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}");
        out.stdout
    };
    let cert = der(&["x509", "-in", tls.cert().to_str().unwrap(), "-outform", "DER"]);
    let key = der(&["pkcs8", "-topk8", "-nocrypt", "-in", tls.key().to_str().unwrap(), "-outform", "DER"]);
    let spki_der = der(&["pkey", "-in", tls.key().to_str().unwrap(), "-pubout", "-outform", "DER"]);
    let spki = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&spki_der))
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.into()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()))
        .expect("server certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    // posts-read, posts-write and upload-presign beside auth-refresh, as the template configures
    // them, on the same moto tables, bucket and Redis (each as its own cache user), verifying
    // auth-refresh's tokens with the same lifetime.
    let function_env = |name: &str| {
        let mut env = s.provisioned.env(name);
        assert_eq!(env.get("ALLOWED_ORIGINS"), Some(&origin), "{name}: from the AllowedOrigins parameter");
        env.insert("REDIS_URL".into(), s.f.redis_url_as(name));
        env.insert("REDIS_CLUSTER".into(), "false".into());
        env.insert("POSTS_CURSOR_SECRET".into(), "browser-test-posts-cursor-secret-0123456789".into());
        env.insert("JWT_PUBLIC_KEYS".into(), crate::common::signing_key().1.to_entry());
        env.insert("ACCESS_TOKEN_TTL_SECONDS".into(), ttl.clone());
        // moto serves buckets by path, not by virtual host.
        env.insert("S3_FORCE_PATH_STYLE".into(), "true".into());
        testkit::env_reader(env)
    };
    use shared::config::FromEnv;
    let reader = Arc::new(
        posts_read::handler::State::new(
            &posts_read::settings::Settings::from_env(function_env("posts-read")).expect("posts-read settings"),
            &s.f.aws,
        )
        .expect("posts-read state"),
    );
    let writer = Arc::new(
        posts_write::handler::State::new(
            &posts_write::settings::Settings::from_env(function_env("posts-write")).expect("posts-write settings"),
            &s.f.aws,
        )
        .expect("posts-write state"),
    );
    let uploader = Arc::new(upload_presign::handler::State::new(
        &upload_presign::settings::Settings::from_env(function_env("upload-presign")).expect("upload-presign settings"),
        &s.f.aws,
    ));

    let pages: Arc<Mutex<String>> = Arc::default();
    // (host, path, whether the request carried our cookie), as the API saw them.
    let seen: Arc<Mutex<Vec<(String, String, bool)>>> = Arc::default();
    let state = Arc::new(s.f.state.clone());
    let server = {
        let (pages, seen) = (pages.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (acceptor, pages, seen, state) = (acceptor.clone(), pages.clone(), seen.clone(), state.clone());
                let (reader, writer, uploader) = (reader.clone(), writer.clone(), uploader.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(socket).await else { return };
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (pages, seen, state) = (pages.clone(), seen.clone(), state.clone());
                        let (reader, writer, uploader) = (reader.clone(), writer.clone(), uploader.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let host = parts.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
                            let host = host.split(':').next().unwrap_or("").to_owned();
                            if host == APP && parts.uri.path() == "/wait-until-expired" {
                                return Ok::<_, Infallible>(to_hyper(wait_until_expired(parts.uri.query()).await));
                            }
                            if host == APP {
                                let mut r = Response::new(Body::Text(pages.lock().unwrap().clone()));
                                r.headers_mut().insert("content-type", "text/html; charset=utf-8".parse().unwrap());
                                return Ok::<_, Infallible>(to_hyper(r));
                            }
                            let cookie = parts
                                .headers
                                .get_all("cookie")
                                .iter()
                                .any(|v| v.to_str().unwrap_or("").contains("__Host-refresh_token="));
                            if parts.method != http::Method::OPTIONS {
                                seen.lock().unwrap().push((host, parts.uri.path().to_owned(), cookie));
                            }
                            let is_get = parts.method == http::Method::GET;
                            let req = to_lambda(hyper::Request::from_parts(parts, bytes));
                            let path = req.uri().path();
                            let response = if path.starts_with("/uploads") || path.starts_with("/users") {
                                upload_presign::handler::handle(&uploader, req).await
                            } else if !path.starts_with("/posts") {
                                auth_refresh::handler::handle(&state, req).await
                            } else if is_get {
                                posts_read::handler::handle(&reader, req).await
                            } else {
                                posts_write::handler::handle(&writer, req).await
                            };
                            Ok(to_hyper(response))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
    };

    // The app on its own site's API.
    *pages.lock().unwrap() = journey_page(&format!("https://{API}:{port}"), &s.issuer.id_token("ivy", CLIENT_ID), true);
    let dom = tokio::task::spawn_blocking({
        let (url, spki) = (format!("{origin}/"), spki.clone());
        move || dump_dom(&url, &spki)
    })
    .await
    .unwrap();
    let result = testkit::chromium::result_of(&dom);
    assert_eq!(result.get("error"), None, "the page failed: {result}");
    assert_eq!(result["signIn"], 200, "{result}");
    assert_eq!(result["accessToken"], true, "{result}");
    assert_eq!(result["refreshTokenInBody"], false, "{result}");
    assert_eq!(result["cookieVisibleToScript"], false, "HttpOnly: {result}");
    assert_eq!(result["list"], 200, "{result}");
    assert_eq!(result["create"], 201, "{result}");
    assert_eq!(result["refresh1"], 200, "the browser sent the cookie: {result}");
    assert_eq!(result["createAfterRefresh"], 201, "the refreshed access token works: {result}");
    assert_eq!(result["tokenLifetime"], ACCESS_TTL_SECS, "auth-refresh minted with the configured TTL: {result}");
    assert_eq!(result["waited"], 204, "{result}");
    assert_eq!(result["expiredCreate"], 401, "the expired access token is refused: {result}");
    assert_eq!(result["expiredDetail"], "the access token has expired", "{result}");
    assert_eq!(result["refreshAfterExpiry"], 200, "the cookie outlives the access token: {result}");
    assert_eq!(result["createAfterExpiry"], 201, "the new access token works: {result}");
    assert_eq!(
        result["listedAfter"].as_u64(),
        result["listed"].as_u64().map(|n| n + 3),
        "three posts are listed, not the refused one: {result}"
    );
    let expected_user = shared::auth::identities::user_id_of(&shared::auth::oidc::Identity {
        issuer: s.issuer.url.clone(),
        subject: "ivy".into(),
    });
    assert_eq!(result["author"], expected_user.as_str(), "the post's author is the signed-in user: {result}");
    assert_eq!(result["refresh1AccessToken"], true, "{result}");
    assert_eq!(result["presign"], 200, "{result}");
    assert_eq!(result["upload"], 200, "the bucket's CORS let the app's origin PUT: {result}");
    assert_eq!(result["record"], 200, "{result}");
    assert_eq!(result["profile"], 200, "{result}");
    assert_eq!(result["profileId"], expected_user.as_str(), "{result}");
    assert_eq!(result["profileAvatarSize"], result["avatarBytes"], "{result}");
    assert_eq!(
        result["avatarShown"],
        json!([AVATAR_SIZE.0, AVATAR_SIZE.1]),
        "the browser decoded the avatar from the profile's URL: {result}"
    );
    // The recorded avatar in the bucket: the PNG the page drew, as many bytes as it sent.
    let key = result["key"].as_str().unwrap_or_else(|| panic!("no upload key: {result}"));
    let avatar = key.replacen("uploads/", "avatars/", 1);
    let stored =
        s.f.aws
            .s3()
            .get_object()
            .bucket(s.provisioned.name("UploadsBucket"))
            .key(&avatar)
            .send()
            .await
            .expect("the recorded avatar")
            .body
            .collect()
            .await
            .expect("avatar bytes")
            .into_bytes();
    assert_eq!(Some(stored.len() as u64), result["avatarBytes"].as_u64(), "{result}");
    assert!(stored.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let ihdr_size = |at: usize| u32::from_be_bytes(stored[at..at + 4].try_into().unwrap());
    assert_eq!((&stored[12..16], ihdr_size(16), ihdr_size(20)), (&b"IHDR"[..], AVATAR_SIZE.0, AVATAR_SIZE.1));
    assert_eq!(result["refresh2"], 200, "the rotated cookie was stored and sent: {result}");
    assert_eq!(result["logout"], 204, "{result}");
    assert_eq!(result["afterLogout"], 401, "{result}");
    assert_eq!(result["afterLogoutType"], "/problems/invalid-refresh-token", "{result}");
    let journey: Vec<_> = seen
        .lock()
        .unwrap()
        .drain(..)
        .filter(|(_, path, _)| path.starts_with("/auth/"))
        .map(|(_, path, cookie)| (path, cookie))
        .collect();
    assert_eq!(
        journey,
        [
            ("/auth/session".to_owned(), false),
            ("/auth/refresh".to_owned(), true),
            // After the access token expired.
            ("/auth/refresh".to_owned(), true),
            ("/auth/refresh".to_owned(), true),
            ("/auth/logout".to_owned(), true),
            // The logout cleared the cookie (Max-Age=0): the browser sends none.
            ("/auth/refresh".to_owned(), false),
        ],
        "what reached the API, and with which cookie"
    );

    // The same page against an API on another site (as on its execute-api name): signed in, but
    // no cookie was stored, so the refresh goes without one and is refused.
    *pages.lock().unwrap() =
        journey_page(&format!("https://{CROSS_API}:{port}"), &s.issuer.id_token("ivy", CLIENT_ID), false);
    let dom = tokio::task::spawn_blocking({
        let (url, spki) = (format!("{origin}/"), spki.clone());
        move || dump_dom(&url, &spki)
    })
    .await
    .unwrap();
    let result = testkit::chromium::result_of(&dom);
    assert_eq!(result.get("error"), None, "the page failed: {result}");
    assert_eq!(result["signIn"], 200, "{result}");
    assert_eq!(result["refresh1"], 401, "no cookie across sites: {result}");
    let cross: Vec<_> = seen.lock().unwrap().drain(..).collect();
    assert!(cross.iter().all(|(host, _, cookie)| host == CROSS_API && !cookie), "{cross:?}");
    assert_eq!(cross[1].1, "/auth/refresh", "{cross:?}");
    server.abort();
}
