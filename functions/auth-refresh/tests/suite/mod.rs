//! The token-store suite, written once and run against one redis-server (`single_redis.rs`) and a
//! 3-master Redis Cluster (`redis_cluster.rs`) through [`token_suite!`]. Every scenario goes
//! through the real handler and checks Redis from the outside with `redis-cli`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_refresh::handler::handle;
use base64::Engine;

use crate::common::*;

/// Long enough that a test never crosses it by accident.
const LONG_GRACE_MS: u64 = 60_000;
/// Short enough to wait out in a test.
const SHORT_GRACE_MS: u64 = 200;

pub async fn refresh_rotates_and_the_old_token_is_rejected(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let (t1, _) = f.login("user-1").await;

    let r = handle(&f.state, refresh_by_cookie(&t1)).await;
    let t2 = new_token(&r);
    let body = json(&r);
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], ACCESS_TTL_SECS);
    let claims = f.state.sessions.access_tokens().verify(body["accessToken"].as_str().unwrap()).expect("valid JWT");
    assert_eq!(claims.sub, "user-1");
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    assert_eq!(header(&r, "access-control-allow-origin"), Some(ORIGIN));
    // Same user and family, new secret.
    let (old, new) = (parts(&t1), parts(&t2));
    assert_eq!((&old.0, &old.1), (&new.0, &new.1));
    assert_ne!(old.2, new.2);

    let again = handle(&f.state, refresh_by_cookie(&t1)).await;
    assert_eq!(again.status(), 401, "the rotated token must not be accepted again");
    assert!(header(&again, "set-cookie").is_none(), "a refusal never touches the cookie");

    // By body this time; the successor rotates in turn.
    let t3 = new_token(&handle(&f.state, refresh_by_body(&t2)).await);
    assert_eq!(handle(&f.state, refresh_by_body(&t2)).await.status(), 401);
    new_token(&handle(&f.state, refresh_by_body(&t3)).await);
}

pub async fn reuse_after_the_grace_window_revokes_the_family(kind: Kind) {
    let f = Fixture::start(kind, SHORT_GRACE_MS);
    let (t1, _) = f.login("user-1").await;
    let (other, _) = f.login("user-1").await;
    let t2 = new_token(&handle(&f.state, refresh_by_cookie(&t1)).await);
    let family = parts(&t1).1;

    tokio::time::sleep(Duration::from_millis(SHORT_GRACE_MS + 150)).await;
    let reuse = handle(&f.state, refresh_by_cookie(&t1)).await;
    assert_eq!(reuse.status(), 401);
    let killed = handle(&f.state, refresh_by_cookie(&t2)).await;
    assert_eq!(killed.status(), 401, "reuse of the old token must revoke the new one too");
    assert_eq!(text(&killed), text(&reuse), "one body for every refusal");

    // The user's other session is a different family and lives on.
    new_token(&handle(&f.state, refresh_by_cookie(&other)).await);
    // Nothing of the revoked family is left behind.
    let leftovers: Vec<_> = f.keys().into_iter().filter(|k| k.contains(&family)).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let records = f.keys().into_iter().filter(|k| k.contains(":rt:")).count();
    assert_eq!(records, 2, "only the other session's two records (rotated + active) remain");
}

pub async fn reuse_within_the_grace_window_keeps_the_family(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let (t1, _) = f.login("user-1").await;
    let t2 = new_token(&handle(&f.state, refresh_by_cookie(&t1)).await);

    // The second tab, a moment late with the same cookie.
    let late = handle(&f.state, refresh_by_cookie(&t1)).await;
    assert_eq!(late.status(), 401);
    assert!(header(&late, "set-cookie").is_none());
    // The first tab's new token still works.
    new_token(&handle(&f.state, refresh_by_cookie(&t2)).await);
}

pub async fn logout_revokes_that_session_only(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let (a1, _) = f.login("user-1").await;
    let (b, _) = f.login("user-1").await;
    let a2 = new_token(&handle(&f.state, refresh_by_cookie(&a1)).await);

    let r = handle(&f.state, logout_by_cookie(&a2)).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "set-cookie"),
        Some("refresh_token=; Path=/auth; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
    );
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    for token in [&a1, &a2] {
        assert_eq!(handle(&f.state, refresh_by_cookie(token)).await.status(), 401);
    }
    let family = parts(&a1).1;
    assert!(f.keys().iter().all(|k| !k.contains(&family)), "{:?}", f.keys());
    new_token(&handle(&f.state, refresh_by_cookie(&b)).await);

    // Logging out again, or with a token that is not one, still succeeds; no token at all is a 401.
    assert_eq!(handle(&f.state, logout_by_cookie(&a2)).await.status(), 204);
    assert_eq!(handle(&f.state, logout_by_cookie("not-a-token")).await.status(), 204);
    let by_body = handle(&f.state, with_body("/auth/logout", serde_json::json!({ "refreshToken": a1 }))).await;
    assert_eq!(by_body.status(), 204);
    let none = handle(&f.state, post("/auth/logout").body(lambda_http::Body::Empty).unwrap()).await;
    assert_eq!(none.status(), 401);
}

pub async fn logout_all_revokes_every_session_of_the_user(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let mut tokens = Vec::new();
    let mut bearer = String::new();
    for _ in 0..3 {
        let (refresh, access) = f.login("user-1").await;
        tokens.push(refresh);
        bearer = access;
    }
    // One of them rotated, so the family holds a rotated and an active record.
    tokens[0] = new_token(&handle(&f.state, refresh_by_cookie(&tokens[0])).await);
    let (someone_else, _) = f.login("user-2").await;

    assert_eq!(handle(&f.state, logout_all(None)).await.status(), 401);
    let garbage = handle(&f.state, logout_all(Some("not.a.jwt"))).await;
    assert_eq!(garbage.status(), 401);
    assert!(header(&garbage, "www-authenticate").is_some_and(|c| c.starts_with("Bearer")));

    let r = handle(&f.state, logout_all(Some(&bearer))).await;
    assert_eq!(r.status(), 204);
    assert!(header(&r, "set-cookie").is_some_and(|c| c.starts_with("refresh_token=;") && c.contains("Max-Age=0")));
    for token in &tokens {
        assert_eq!(handle(&f.state, refresh_by_cookie(token)).await.status(), 401);
    }
    let left: Vec<_> = f.keys().into_iter().filter(|k| k.starts_with("auth:{user-1}")).collect();
    assert!(left.is_empty(), "user-1 keys left after logout-all: {left:?}");
    new_token(&handle(&f.state, refresh_by_cookie(&someone_else)).await);

    // A new sign-in after logout-all is a working session again.
    let (fresh, _) = f.login("user-1").await;
    new_token(&handle(&f.state, refresh_by_cookie(&fresh)).await);
}

pub async fn keys_carry_ttls(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let ttl_ms = (REFRESH_TTL_SECS * 1000) as i64;
    let fresh = |pttl: i64| (ttl_ms - 10_000..=ttl_ms).contains(&pttl);
    let (t1, _) = f.login("user-1").await;
    let (_, family, _) = parts(&t1);
    let family_key = format!("auth:{{user-1}}:fam:{family}");
    let sessions_key = "auth:{user-1}:sessions".to_owned();

    let keys = f.keys();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for key in &keys {
        assert!(fresh(f.pttl(key)), "{key}: PTTL {}", f.pttl(key));
    }
    let first_record = keys.iter().find(|k| k.contains(":rt:")).unwrap().clone();

    tokio::time::sleep(Duration::from_millis(1200)).await;
    new_token(&handle(&f.state, refresh_by_cookie(&t1)).await);
    let keys = f.keys();
    assert_eq!(keys.len(), 4, "{keys:?}");
    // The rotated record keeps its own expiry (it is there to catch reuse); the new record, the
    // family and the index run from the rotation.
    let rotated = f.pttl(&first_record);
    assert!(rotated > 0 && rotated <= ttl_ms - 1000, "rotated record PTTL {rotated}");
    for key in keys.iter().filter(|k| **k != first_record) {
        assert!(fresh(f.pttl(key)) && f.pttl(key) > rotated, "{key}: PTTL {}", f.pttl(key));
    }
    assert!(keys.contains(&family_key) && keys.contains(&sessions_key), "{keys:?}");
    assert_eq!(f.cli(&["HGET", &first_record, "state"]), "rotated");
}

pub async fn twenty_concurrent_refreshes_of_one_token_let_exactly_one_through(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let (token, _) = f.login("user-1").await;
    // Twenty execution environments, each with its own connection, all at once.
    let states: Vec<Arc<_>> = (0..20).map(|_| Arc::new(f.another_state())).collect();
    let tasks = states.into_iter().map(|state| {
        let token = token.clone();
        tokio::spawn(async move { handle(&state, refresh_by_cookie(&token)).await })
    });
    let responses: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 19, "{statuses:?}");
    // The losers were inside the grace window: the winner's token is still good.
    let winner = responses.iter().find(|r| r.status() == 200).unwrap();
    new_token(&handle(&f.state, refresh_by_cookie(&new_token(winner))).await);
}

pub async fn redis_down_fails_closed_with_503(kind: Kind) {
    let mut f = Fixture::start(kind, LONG_GRACE_MS);
    let (token, access) = f.login("user-1").await;
    f.stop_redis();
    let redis = &f.settings.redis;
    let bound = (redis.connect_timeout + redis.response_timeout) * 4 + Duration::from_secs(2);
    for (name, req) in [
        ("refresh", refresh_by_cookie(&token)),
        ("refresh by body", refresh_by_body(&token)),
        ("logout", logout_by_cookie(&token)),
        ("logout-all", logout_all(Some(&access))),
    ] {
        let start = Instant::now();
        let r = handle(&f.state, req).await;
        assert_eq!(r.status(), 503, "{name}: {}", text(&r));
        assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
        assert_eq!(header(&r, "retry-after"), Some("1"));
        assert!(header(&r, "set-cookie").is_none(), "{name} must not clear the cookie without the store");
        assert!(start.elapsed() < bound, "{name} took {:?} (bound {bound:?})", start.elapsed());
    }
}

pub async fn no_raw_token_or_secret_is_ever_stored(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let mut issued: Vec<String> = Vec::new();
    let mut dumps = Vec::new();

    let (a1, _) = f.login("user-1").await;
    issued.push(a1.clone());
    let (b, _) = f.login("user-1").await;
    issued.push(b.clone());
    dumps.push(("issued", f.dump()));

    let a2 = new_token(&handle(&f.state, refresh_by_cookie(&a1)).await);
    issued.push(a2.clone());
    dumps.push(("rotated", f.dump()));

    assert_eq!(handle(&f.state, logout_by_cookie(&a2)).await.status(), 204);
    dumps.push(("logged out", f.dump()));

    let b2 = new_token(&handle(&f.state, refresh_by_body(&b)).await);
    issued.push(b2);
    dumps.push(("end", f.dump()));

    // Every form a leak could take: the token, its secret, the secret's bytes in hex and in
    // standard base64.
    let mut needles = Vec::new();
    for token in &issued {
        let (_, _, secret) = parts(token);
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&secret).unwrap();
        needles.push(token.clone());
        needles.push(secret.clone());
        needles.push(bytes.iter().map(|b| format!("{b:02x}")).collect());
        needles.push(base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes));
    }
    for (stage, dump) in &dumps {
        // A scan that found nothing would prove nothing.
        assert!(dump.len() >= 3, "{stage}: only {} keys", dump.len());
        for (key, content) in dump {
            for needle in &needles {
                assert!(!key.contains(needle.as_str()), "{stage}: key {key} holds a token or its secret");
                assert!(!content.contains(needle.as_str()), "{stage}: {key} holds a token or its secret");
            }
        }
    }
}

pub async fn refused_tokens_all_get_the_same_401(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let (live, _) = f.login("user-1").await;
    let (_, family, secret) = parts(&live);
    let (victim, _) = f.login("user-2").await;
    let (_, victim_family, victim_secret) = parts(&victim);
    let rotated = {
        let (t, _) = f.login("user-3").await;
        new_token(&handle(&f.state, refresh_by_cookie(&t)).await);
        t
    };
    let unknown_secret = "A".repeat(43);

    let cases = [
        ("unknown", refresh_by_cookie(&format!("user-1.{family}.{unknown_secret}"))),
        ("malformed", refresh_by_cookie("garbage")),
        ("malformed by body", refresh_by_body("a.b.c")),
        ("oversized", refresh_by_body(&"x".repeat(3000))),
        ("another user's prefix", refresh_by_cookie(&format!("user-1.{victim_family}.{victim_secret}"))),
        ("prefix moved to another user", refresh_by_cookie(&format!("user-2.{family}.{secret}"))),
        ("rotated, within grace", refresh_by_cookie(&rotated)),
        ("empty cookie", refresh_by_cookie("")),
        ("no token", post("/auth/refresh").body(lambda_http::Body::Empty).unwrap()),
    ];
    let mut bodies = Vec::new();
    for (name, req) in cases {
        let r = handle(&f.state, req).await;
        assert_eq!(r.status(), 401, "{name}: {}", text(&r));
        assert_eq!(header(&r, "content-type"), Some("application/problem+json"), "{name}");
        bodies.push((name, text(&r)));
    }
    for (name, body) in &bodies {
        assert_eq!(body, &bodies[0].1, "{name} answers differently from {}", bodies[0].0);
    }
    assert_eq!(json_text(&bodies[0].1)["type"], "/problems/invalid-refresh-token");
    // Tampering revoked nothing.
    new_token(&handle(&f.state, refresh_by_cookie(&live)).await);
    new_token(&handle(&f.state, refresh_by_cookie(&victim)).await);
}

fn json_text(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

/// Instantiates every scenario above as a `#[tokio::test]` for one kind of Redis.
macro_rules! token_suite {
    ($kind:expr) => {
        suite::token_suite!(@tests $kind;
            refresh_rotates_and_the_old_token_is_rejected,
            reuse_after_the_grace_window_revokes_the_family,
            reuse_within_the_grace_window_keeps_the_family,
            logout_revokes_that_session_only,
            logout_all_revokes_every_session_of_the_user,
            keys_carry_ttls,
            twenty_concurrent_refreshes_of_one_token_let_exactly_one_through,
            redis_down_fails_closed_with_503,
            no_raw_token_or_secret_is_ever_stored,
            refused_tokens_all_get_the_same_401
        );
    };
    (@tests $kind:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                suite::$name($kind).await
            }
        )+
    };
}
pub(crate) use token_suite;
