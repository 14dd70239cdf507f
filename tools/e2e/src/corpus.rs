//! The bad-input corpus: hostile and malformed requests sent to every HTTP function's real
//! binary under the local Runtime API. Every answer must be a 4xx `application/problem+json`
//! whose `status` member matches, and no function may log a panic.
//!
//! Requests that need authentication carry a valid access token (minted with the stack's
//! `JWT_SIGNING_KEY`), so the corpus reaches the body and path parsing behind the auth check.

use std::path::Path;
use std::time::Duration;

use lambda_harness::{Function, SpawnOptions};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(10);

/// One request of the corpus.
pub struct Case {
    pub name: String,
    pub event: Value,
}

fn event(base: &Value, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Value {
    let mut e = base.clone();
    e["rawPath"] = json!(path);
    e["rawQueryString"] = json!("");
    e["routeKey"] = json!(format!("{method} {path}"));
    e["requestContext"]["http"]["method"] = json!(method);
    e["requestContext"]["http"]["path"] = json!(path);
    let map = e["headers"].as_object_mut().expect("headers object");
    map.remove("authorization");
    map.remove("content-type");
    map.remove("stripe-signature");
    for (k, v) in headers {
        map.insert((*k).to_owned(), json!(v));
    }
    e.as_object_mut().expect("object").remove("pathParameters");
    e.as_object_mut().expect("object").remove("queryStringParameters");
    match body {
        Some(b) => {
            e["body"] = json!(b);
            e["isBase64Encoded"] = json!(false);
        }
        None => {
            e.as_object_mut().expect("object").remove("body");
        }
    }
    e
}

fn binary_body(mut e: Value, bytes: &[u8]) -> Value {
    use base64::Engine;
    e["body"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    e["isBase64Encoded"] = json!(true);
    e
}

/// Bodies that are broken in ways a JSON endpoint must refuse.
fn hostile_json_bodies() -> Vec<(&'static str, String)> {
    vec![
        ("truncated json", r#"{"title": "a", "body": "#.to_owned()),
        ("not json", "title=a&body=b".to_owned()),
        ("json array", "[1,2,3]".to_owned()),
        ("json string", r#""hello""#.to_owned()),
        ("deeply nested", format!("{}{}", "[".repeat(5000), "]".repeat(5000))),
        ("null bytes", "{\"title\": \"a\u{0}b\", \"body\": \"\u{0}\"}".to_owned()),
        ("crlf in fields", r#"{"title": "a\r\nSet-Cookie: x=y", "body": "b", "filename": "a\r\nb.png", "contentType": "image/png\r\nX: y", "size": 10}"#.to_owned()),
        ("wrong types", r#"{"title": 1, "body": [], "published": "yes", "filename": {}, "contentType": 5, "size": "big", "refreshToken": 7}"#.to_owned()),
        ("unknown fields", r#"{"isAdmin": true, "authorId": "someone-else", "__proto__": {}}"#.to_owned()),
        ("oversized", format!(r#"{{"title": "t", "body": "{}"}}"#, "x".repeat(2 * 1024 * 1024))),
        ("huge number", r#"{"size": 1e309, "title": "t", "body": "b"}"#.to_owned()),
    ]
}

/// The corpus for one function, given a base event and a valid bearer token.
pub fn cases(function: &str, base: &Value, bearer: &str) -> Vec<Case> {
    let auth = format!("Bearer {bearer}");
    let json_ct = ("content-type", "application/json");
    let mut out = Vec::new();
    let mut push = |name: String, event: Value| out.push(Case { name, event });
    let long_header = "x".repeat(16 * 1024);
    let (method, path): (&str, &str) = match function {
        "posts-read" => ("GET", "/posts/1"),
        "posts-write" => ("POST", "/posts"),
        "auth-refresh" => ("POST", "/auth/refresh"),
        "upload-presign" => ("POST", "/uploads"),
        "stripe-webhook" => ("POST", "/"),
        _ => return out,
    };
    let needs_auth = matches!(function, "posts-write" | "upload-presign");
    let mut base_headers: Vec<(&str, &str)> = vec![json_ct];
    if needs_auth {
        base_headers.push(("authorization", auth.as_str()));
    }

    if function == "posts-read" {
        for p in [
            "/posts/..%2F..%2Fetc%2Fpasswd",
            "/posts/%00",
            "/posts/%E2%80%AE1",
            "/posts/a%0D%0Ab",
            "/posts/' OR 1=1 --",
        ] {
            push(format!("path trick {p}"), event(base, "GET", p, &[], None));
        }
        push("id of 1000 chars".into(), event(base, "GET", &format!("/posts/{}", "a".repeat(1000)), &[], None));
        let mut q = event(base, "GET", "/posts", &[], None);
        let huge_cursor = format!("cursor={}", "A".repeat(8000));
        let queries = [
            "limit=-1",
            "limit=99999999999999999999",
            "limit=5",
            "page=0",
            "page=1001&limit=10",
            "page=99999999999999999999",
            "limit=1%00",
            "page=1&page=2",
            "limit=%ZZ",
            // Cursors: forged, truncated, not base64, CR/LF, NUL, bidi, with page, given twice, huge.
            "cursor=eyJsIjoicHVibGlzaGVkIiwibiI6MjAsImMiOiIyMDk5IiwiaSI6IngifQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "cursor=eyJsIjoicHVibGlzaGVk",
            "cursor=%%%.%%%",
            "cursor=a%0D%0Ab.c",
            "cursor=%00.%00",
            "cursor=%E2%80%AE.x",
            "cursor=a.b&page=2",
            "cursor=a.b&cursor=c.d",
            "cursor=",
            huge_cursor.as_str(),
        ];
        for query in queries {
            q["rawQueryString"] = json!(query);
            let label = if query.len() > 80 {
                format!("query {}… ({} chars)", &query[..40], query.len())
            } else {
                format!("query {query}")
            };
            push(label, q.clone());
        }
        push("huge header".into(), event(base, "GET", "/posts/a%2Fb", &[("x-junk", long_header.as_str())], None));
        push("post to a read route".into(), event(base, "POST", "/posts/1", &[json_ct], Some("{}")));
        return out;
    }

    for (name, body) in hostile_json_bodies() {
        push(format!("body: {name}"), event(base, method, path, &base_headers, Some(&body)));
    }
    let mut wrong_ct: Vec<(&str, &str)> = vec![("content-type", "text/plain")];
    if needs_auth {
        wrong_ct.push(("authorization", auth.as_str()));
    }
    if function != "stripe-webhook" {
        push("wrong content type".into(), event(base, method, path, &wrong_ct, Some(r#"{"title":"t","body":"b"}"#)));
    }
    push(
        "invalid utf-8 body".into(),
        binary_body(event(base, method, path, &base_headers, Some("")), &[0x7b, 0xff, 0xfe, 0x22, 0xc0, 0xaf, 0x7d]),
    );
    let mut huge: Vec<(&str, &str)> = base_headers.clone();
    huge.push(("x-junk", long_header.as_str()));
    push("huge header + bad body".into(), event(base, method, path, &huge, Some("{")));

    if needs_auth {
        for (name, token) in [
            ("garbage bearer", "Bearer abc.def.ghi"),
            ("alg none", "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1In0."),
            ("basic auth", "Basic dXNlcjpwYXNz"),
            ("empty bearer", "Bearer "),
        ] {
            push(format!("auth: {name}"), event(base, method, path, &[json_ct, ("authorization", token)], Some("{}")));
        }
    }
    if function == "posts-write" {
        for p in ["/posts/..%2F..%2Fetc", "/posts/%00", "/posts/a%0D%0Ab"] {
            push(format!("patch path trick {p}"), event(base, "PATCH", p, &base_headers, Some(r#"{"title":"t"}"#)));
        }
    }
    if function == "upload-presign" {
        for filename in ["../../etc/passwd", "a\r\nb.png", "\u{202e}gnp.exe", "CON", ""] {
            let body = json!({"filename": filename, "contentType": "image/svg+xml", "size": 10}).to_string();
            push(
                format!("filename {filename:?} with a refused type"),
                event(base, method, path, &base_headers, Some(&body)),
            );
        }
        let body = json!({"filename": "a.png", "contentType": "image/png", "size": 6 * 1024 * 1024}).to_string();
        push("too large".into(), event(base, method, path, &base_headers, Some(&body)));
        let body = json!({"filename": "a.png", "contentType": "image/png", "size": -1}).to_string();
        push("negative size".into(), event(base, method, path, &base_headers, Some(&body)));

        // PUT /users/me/avatar: keys that are tricks, another user's, never issued, or of a type
        // that is no avatar; bodies with unknown fields or the wrong shape.
        let id = "6f1c2b9e-4d3a-4b8e-9f21-0a5c7e3d1b42";
        let record = "/users/me/avatar";
        for key in [
            format!("uploads/corpus-user/../user-1/{id}.png"),
            format!("uploads/corpus-user/%2e%2e/user-1/{id}.png"),
            format!("uploads/corpus-user%2F..%2Fuser-1/{id}.png"),
            format!("uploads/corpus\\uff0duser/{id}.png"),
            format!("uploads/corpus-user\\u2215{id}.png"),
            format!("uploads/corpus-user/{id}.png\\u200b"),
            format!("uploads/user-1/{id}.png"),
            format!("uploads/corpus-user/{id}.png"),
            format!("uploads/corpus-user/{id}.pdf"),
            format!("avatars/corpus-user/{id}.png"),
            "/etc/passwd".to_owned(),
            String::new(),
        ] {
            // Escapes as JSON text, so the function decodes the unicode look-alikes itself.
            let body = format!(r#"{{"key": "{key}"}}"#);
            push(format!("record key {key:?}"), event(base, "PUT", record, &base_headers, Some(&body)));
        }
        for body in [
            format!(r#"{{"key": "uploads/corpus-user/{id}.png", "url": "https://evil.example/a.png"}}"#),
            r#"{"key": 1}"#.to_owned(),
            r#"{"key": null}"#.to_owned(),
            "{}".to_owned(),
            r#"{"key": "uploads/corpus-user/"#.to_owned(),
        ] {
            push(format!("record body {body}"), event(base, "PUT", record, &base_headers, Some(&body)));
        }
        push("record without a token".into(), event(base, "PUT", record, &[json_ct], Some(r#"{"key": "x"}"#)));
        for p in ["/users/..%2F..%2Fetc", "/users/%00", "/users/a%0D%0Ab", "/users/%E2%80%AEx", "/users/nobody-here"] {
            push(format!("profile path {p}"), event(base, "GET", p, &[], None));
        }
        push("DELETE /users/me/avatar".into(), event(base, "DELETE", record, &base_headers, None));
    }
    if function == "auth-refresh" {
        // POST /auth/session: hostile bodies and ID tokens, each a 4xx (tokens: the one 401).
        let session = "/auth/session";
        let same_site = [json_ct, ("sec-fetch-site", "same-site")];
        let b64 = |v: &str| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
        };
        let claims = b64(r#"{"iss":"https://evil.example","sub":"admin","aud":"local-app","iat":1,"exp":4102444800}"#);
        let tokens = [
            ("alg none", format!("{}.{claims}.", b64(r#"{"alg":"none"}"#))),
            ("alg HS256", format!("{}.{claims}.c2ln", b64(r#"{"alg":"HS256","kid":"local-1"}"#))),
            ("alg RS256 unknown kid", format!("{}.{claims}.c2ln", b64(r#"{"alg":"RS256","kid":"nope"}"#))),
            ("header not json", format!("{}.{claims}.c2ln", b64("{"))),
            ("two parts", format!("{}.{claims}", b64(r#"{"alg":"ES256"}"#))),
            ("crlf", "a.b\r\nSet-Cookie: x=y.c".to_owned()),
            ("empty", String::new()),
            ("over 16 KiB", "a".repeat(16 * 1024 + 1)),
        ];
        for (name, token) in tokens {
            let body = serde_json::json!({ "idToken": token }).to_string();
            push(format!("session token: {name}"), event(base, "POST", session, &same_site, Some(&body)));
        }
        for body in [r#"{"idToken": 7}"#, r#"{"id_token": "x"}"#, "[]", "{", r#"{"idToken": "x", "sub": "admin"}"#] {
            push(format!("session body: {body}"), event(base, "POST", session, &same_site, Some(body)));
        }
        let cross = [json_ct, ("origin", "https://evil.example")];
        push("session cross-site".into(), event(base, "POST", session, &cross, Some(r#"{"idToken":"x"}"#)));
        push(
            "session form post".into(),
            event(base, "POST", session, &[("sec-fetch-site", "same-site")], Some("idToken=x")),
        );
    }
    if function == "stripe-webhook" {
        let body = r#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{}}}"#;
        for (name, sig) in [
            ("no v1", "t=1700000000"),
            ("bad hex", "t=1700000000,v1=zz"),
            (
                "replayed (stale) signature",
                "t=1600000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
            ),
            ("no timestamp", "v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"),
            // Control characters cannot reach a function: HTTP front doors refuse such header
            // values and lambda_http cannot represent them; printable garbage can.
            ("garbage", "==,,,t=,v1=,=v1,t=abc"),
            ("huge", long_header.as_str()),
        ] {
            push(
                format!("signature: {name}"),
                event(base, "POST", "/", &[json_ct, ("stripe-signature", sig)], Some(body)),
            );
        }
    }
    out
}

/// Runs the corpus against one binary. Returns (passed, failures).
pub async fn run(bin: &Path, env: &[(String, String)], cases: &[Case]) -> (usize, Vec<String>) {
    let options = SpawnOptions { env: env.to_vec(), ..SpawnOptions::default() };
    let f = match Function::start(bin, &options).await {
        Ok(f) => f,
        Err(e) => return (0, vec![format!("could not start: {e}")]),
    };
    if let Err(e) = f.wait_ready(TIMEOUT).await {
        let logs = f.stop().await.logs;
        return (0, vec![format!("init failed: {e}; log: {}", logs.trim())]);
    }
    let mut passed = 0;
    let mut failures = Vec::new();
    for case in cases {
        let offset = f.logs_len();
        let verdict = match f.invoke(&case.event, TIMEOUT).await {
            Err(e) => Err(format!("no answer: {e}")),
            Ok(inv) if inv.is_error => Err(format!("function error: {:?}", inv.error_summary())),
            Ok(inv) => check_problem(&inv.json().unwrap_or(Value::Null)),
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let verdict = verdict.and_then(|()| {
            if f.logs_since(offset).contains("panicked") { Err("panic in the log".into()) } else { Ok(()) }
        });
        match verdict {
            Ok(()) => passed += 1,
            Err(why) => failures.push(format!("{}: {}", case.name, why)),
        }
    }
    f.stop().await;
    (passed, failures)
}

/// A proxy response that is a 4xx problem+json with a matching `status` member.
fn check_problem(response: &Value) -> Result<(), String> {
    let status = response["statusCode"].as_u64().ok_or("no statusCode")?;
    if !(400..500).contains(&status) {
        return Err(format!("status {status}"));
    }
    let content_type = response["headers"]
        .as_object()
        .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")))
        .and_then(|(_, v)| v.as_str())
        .unwrap_or("");
    if content_type != "application/problem+json" {
        return Err(format!("status {status} with content-type {content_type:?}"));
    }
    let body: Value = response["body"].as_str().and_then(|b| serde_json::from_str(b).ok()).ok_or("body is not JSON")?;
    if body["status"].as_u64() != Some(status) || body["title"].as_str().is_none() || body["type"].as_str().is_none() {
        return Err(format!("problem body does not match: {body}"));
    }
    Ok(())
}
