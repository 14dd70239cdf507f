//! The token-store suite, written once and run against one redis-server (`single_redis.rs`) and a
//! 3-master Redis Cluster (`redis_cluster.rs`) through [`token_suite!`]. Every scenario goes
//! through the real handler, signed in to Redis as the template's `auth-refresh` ACL user, and
//! checks Redis from the outside with `redis-cli`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_refresh::handler::handle;
use lambda_http::Body;

use crate::common::*;

/// Long enough that a test never crosses it by accident.
const LONG_GRACE_MS: u64 = 60_000;
/// Short enough to wait out in a test.
const SHORT_GRACE_MS: u64 = 200;

fn refreshed(r: &lambda_http::Response<Body>) -> String {
    new_token(r)
}

pub async fn refresh_by_cookie_answers_in_the_cookie_and_by_body_in_the_body(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let (t1, _) = f.login("user-1").await;

    let r = handle(&f.state, refresh_by_cookie(&t1)).await;
    let t2 = refreshed(&r);
    let body = json(&r);
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], ACCESS_TTL_SECS);
    assert!(body.get("refreshToken").is_none() && !text(&r).contains(&t2), "the body never holds the refresh token");
    let claims = f.state.sessions.signer().verifier().verify(body["accessToken"].as_str().unwrap()).expect("valid JWT");
    assert_eq!(claims.sub, "user-1");
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    assert_eq!(header(&r, "access-control-allow-origin"), Some(ORIGIN));
    // Same user and family, the next number.
    let (old, new) = (parts(&t1), parts(&t2));
    assert_eq!((&old.0, &old.1, old.2.as_str()), (&new.0, &new.1, "0"));
    assert_eq!(new.2, "1");

    // By body: the successor comes back in the body, and no cookie is set.
    let r = handle(&f.state, refresh_by_body(&t2)).await;
    assert!(header(&r, "set-cookie").is_none());
    let t3 = refreshed(&r);
    assert_eq!(json(&r)["refreshExpiresIn"], REFRESH_TTL_SECS);
    assert_eq!(parts(&t3).2, "2");
    refreshed(&handle(&f.state, refresh_by_cookie(&t3)).await);
}

/// Two tabs share the cookie and refresh at the same moment: the late one gets the same successor,
/// so both stay signed in with the same token.
pub async fn two_tabs_refreshing_at_once_both_stay_signed_in(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let (t1, _) = f.login("user-1").await;
    let first = handle(&f.state, refresh_by_cookie(&t1)).await;
    let late = handle(&f.state, refresh_by_cookie(&t1)).await;
    let (a, b) = (refreshed(&first), refreshed(&late));
    assert_eq!(a, b, "the late tab gets the same successor");
    refreshed(&handle(&f.state, refresh_by_cookie(&a)).await);
}

/// Twenty execution environments refresh one token at once: one rotation, twenty identical answers.
pub async fn twenty_concurrent_refreshes_of_one_token_rotate_once(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let (token, _) = f.login("user-1").await;
    let states: Vec<Arc<_>> = (0..20).map(|_| Arc::new(f.another_state())).collect();
    let tasks = states.into_iter().map(|state| {
        let token = token.clone();
        tokio::spawn(async move { handle(&state, refresh_by_cookie(&token)).await })
    });
    let responses: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    let tokens: Vec<String> = responses.iter().map(refreshed).collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    assert_eq!(parts(&tokens[0]).2, "1", "one rotation");
    refreshed(&handle(&f.state, refresh_by_cookie(&tokens[0])).await);
}

/// The reply of a rotation is lost; the client sends the same request again inside the window.
pub async fn a_lost_reply_retried_inside_the_window_gets_the_same_successor(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let (t1, _) = f.login("user-1").await;
    let (_, family, _, _) = parts(&t1);
    // The rotation happens in Redis; its answer never reaches the client.
    drop(handle(&f.state, refresh_by_body(&t1)).await);
    assert!(f.cli(&["HGET", "auth:{user-1}:sessions", &family]).starts_with("1:"), "Redis did rotate");
    let retried = refreshed(&handle(&f.state, refresh_by_body(&t1)).await);
    assert_eq!(parts(&retried).2, "1", "the successor the lost reply carried");
    assert!(f.cli(&["HGET", "auth:{user-1}:sessions", &family]).starts_with("1:"), "no second rotation");
    // The store itself also resends: a retry of the same script is the same answer.
    let store = f.state.sessions.store();
    let presented = store.parse(&t1).unwrap();
    let again = store.rotate(&presented).await.expect("inside the window");
    assert_eq!(again.token.expose(), retried);
    refreshed(&handle(&f.state, refresh_by_body(&retried)).await);
}

/// The attacker rotates a stolen token first; the victim presents the same token inside the window
/// and gets the same successor; both go on refreshing. The first out-of-window presentation of a
/// superseded token ends the family for both: the attacker is left with nothing.
pub async fn attacker_first_ends_with_the_attackers_family_dead(kind: Kind) {
    let f = Fixture::start(kind, SHORT_GRACE_MS);
    let (stolen, _) = f.login("user-1").await;
    let (other_session, _) = f.login("user-1").await;

    let attacker = refreshed(&handle(&f.state, refresh_by_body(&stolen)).await);
    let victim = refreshed(&handle(&f.state, refresh_by_cookie(&stolen)).await);
    assert_eq!(victim, attacker, "inside the window the victim is not refused");

    // Both go on: the attacker refreshes first again.
    let attacker = refreshed(&handle(&f.state, refresh_by_body(&attacker)).await);
    tokio::time::sleep(Duration::from_millis(SHORT_GRACE_MS + 150)).await;
    // The victim's app refreshes with what it holds: superseded, outside the window → reuse.
    let reuse = handle(&f.state, refresh_by_cookie(&victim)).await;
    assert_eq!(reuse.status(), 401);
    let dead = handle(&f.state, refresh_by_body(&attacker)).await;
    assert_eq!(dead.status(), 401, "the attacker's family is dead");
    assert_eq!(text(&dead), text(&reuse), "one body for every refusal");
    // The victim signs in again: a new family, unaffected; the user's other session lives on.
    let (fresh, _) = f.login("user-1").await;
    refreshed(&handle(&f.state, refresh_by_cookie(&fresh)).await);
    refreshed(&handle(&f.state, refresh_by_cookie(&other_session)).await);
    assert_eq!(handle(&f.state, refresh_by_body(&attacker)).await.status(), 401);
}

pub async fn reuse_after_the_grace_window_revokes_the_family(kind: Kind) {
    let f = Fixture::start(kind, SHORT_GRACE_MS);
    let (t1, _) = f.login("user-1").await;
    let (other, _) = f.login("user-1").await;
    let t2 = refreshed(&handle(&f.state, refresh_by_cookie(&t1)).await);
    let t3 = refreshed(&handle(&f.state, refresh_by_cookie(&t2)).await);
    let family = parts(&t1).1;

    // Two numbers behind is reuse even inside the window.
    assert_eq!(handle(&f.state, refresh_by_cookie(&t1)).await.status(), 401);
    assert_eq!(handle(&f.state, refresh_by_cookie(&t3)).await.status(), 401, "reuse revoked the newest token too");
    assert_eq!(f.cli(&["HEXISTS", "auth:{user-1}:sessions", &family]), "0", "nothing of the family is left");
    // The user's other session is a different family and lives on.
    refreshed(&handle(&f.state, refresh_by_cookie(&other)).await);

    // And the window itself: the token just before, once the window has passed.
    let (u1, _) = f.login("user-2").await;
    let u2 = refreshed(&handle(&f.state, refresh_by_cookie(&u1)).await);
    tokio::time::sleep(Duration::from_millis(SHORT_GRACE_MS + 150)).await;
    assert_eq!(handle(&f.state, refresh_by_cookie(&u1)).await.status(), 401);
    assert_eq!(handle(&f.state, refresh_by_cookie(&u2)).await.status(), 401);
}

/// A family that keeps rotating well inside its idle TTL still ends at its absolute lifetime.
pub async fn the_absolute_lifetime_ends_a_family_that_keeps_rotating(kind: Kind) {
    let lifetime = Duration::from_secs(2);
    let f = Fixture::start_with(
        kind,
        Options { max_lifetime_secs: lifetime.as_secs(), ttl_secs: 2, ..Options::grace(LONG_GRACE_MS) },
    );
    let started = Instant::now();
    let (mut token, _) = f.login("user-1").await;
    let mut rotations = 0;
    let ended = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let r = handle(&f.state, refresh_by_body(&token)).await;
        if r.status() != 200 {
            break r;
        }
        token = refreshed(&r);
        rotations += 1;
        assert!(json(&r)["refreshExpiresIn"].as_u64().unwrap() <= lifetime.as_secs(), "never promised past the end");
        assert!(started.elapsed() < lifetime * 5, "still alive long after its lifetime");
    };
    assert_eq!(ended.status(), 401);
    assert!(started.elapsed() >= lifetime - Duration::from_millis(300), "ended early ({:?})", started.elapsed());
    assert!(rotations >= 3, "it did keep rotating ({rotations})");
}

/// A session's Redis footprint, measured by Redis, does not grow with its rotations.
pub async fn a_thousand_rotations_leave_at_most_one_kilobyte_for_the_session(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let (first, _) = f.login("user-1").await;
    let mut token = refreshed(&handle(&f.state, refresh_by_body(&first)).await);
    let early = token.clone();
    let keys_after_one = f.user_keys("user-1");
    let bytes_after_one = f.user_bytes("user-1");
    for _ in 1..1000 {
        token = refreshed(&handle(&f.state, refresh_by_body(&token)).await);
    }
    assert_eq!(parts(&token).2, "1000");
    let bytes = f.user_bytes("user-1");
    assert_eq!(f.user_keys("user-1"), keys_after_one, "no key per rotation");
    assert!(bytes <= 1024, "{bytes} bytes after 1000 rotations");
    assert!(bytes <= bytes_after_one + 16, "{bytes_after_one} bytes after one rotation, {bytes} after 1000");
    for key in f.user_keys("user-1") {
        assert!(f.pttl(&key) > 0, "{key} has no TTL");
    }
    // And an early token of the family is still recognised as reuse.
    assert_eq!(handle(&f.state, refresh_by_body(&early)).await.status(), 401);
    assert_eq!(handle(&f.state, refresh_by_body(&token)).await.status(), 401, "the family was revoked");
}

/// A page on another site posts to the auth routes with the victim's cookie: refused, and the
/// session is untouched (its number has not moved, it still refreshes).
pub async fn cross_origin_simple_requests_with_the_cookie_are_refused_and_the_session_survives(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let (token, _) = f.login("user-1").await;
    let family = parts(&token).1;
    let cookie = format!("{COOKIE}={token}");
    let simple = |path: &str, origin: Option<&str>, content_type: Option<&str>, body: &str| {
        let mut b = http::Request::builder().method("POST").uri(path).header("cookie", &cookie);
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        b.body(if body.is_empty() { Body::Empty } else { Body::Text(body.to_owned()) }).unwrap()
    };
    let cases = [
        (
            "evil origin, text/plain, empty",
            simple("/auth/refresh", Some("https://evil.example"), Some("text/plain"), ""),
            403,
        ),
        ("evil origin, no type", simple("/auth/refresh", Some("https://evil.example"), None, ""), 403),
        (
            "evil origin, form",
            simple("/auth/logout", Some("https://evil.example"), Some("application/x-www-form-urlencoded"), "a=1"),
            415,
        ),
        ("evil origin, json", simple("/auth/refresh", Some("https://evil.example"), Some("application/json"), ""), 403),
        ("evil origin logout", simple("/auth/logout", Some("https://evil.example"), Some("text/plain"), ""), 403),
        ("our origin, text/plain", simple("/auth/refresh", Some(ORIGIN), Some("text/plain"), ""), 415),
        ("our origin, no type", simple("/auth/logout", Some(ORIGIN), None, ""), 415),
        ("no origin, no fetch metadata", simple("/auth/refresh", None, Some("application/json"), ""), 403),
        ("null origin", simple("/auth/refresh", Some("null"), Some("application/json"), ""), 403),
    ];
    for (name, req, status) in cases {
        let r = handle(&f.state, req).await;
        assert_eq!(r.status(), status, "{name}: {}", text(&r));
        assert_eq!(header(&r, "content-type"), Some("application/problem+json"), "{name}");
        assert!(header(&r, "set-cookie").is_none(), "{name} touched the cookie");
        assert!(header(&r, "access-control-allow-origin").is_none_or(|o| o == ORIGIN), "{name}");
    }
    assert!(f.cli(&["HGET", "auth:{user-1}:sessions", &family]).starts_with("0:"), "the session never moved");
    // Two cookies: someone planted one.
    let planted = post("/auth/refresh")
        .header("content-type", "application/json")
        .header("cookie", format!("{COOKIE}={token}; {COOKIE}=user-9.AAAAAAAAAAAAAAAAAAAAAA.0.{}", "A".repeat(43)))
        .body(Body::Empty)
        .unwrap();
    let r = handle(&f.state, planted).await;
    assert_eq!(r.status(), 400, "{}", text(&r));
    assert_eq!(json(&r)["type"], "/problems/duplicate-cookie");
    // Same-site fetch metadata without an Origin is a browser on our site.
    let same_site = http::Request::builder()
        .method("POST")
        .uri("/auth/refresh")
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/json")
        .header("cookie", &cookie)
        .body(Body::Empty)
        .unwrap();
    refreshed(&handle(&f.state, same_site).await);
}

/// The functions that verify tokens (posts-write, upload-presign, auth-refresh's logout-all) get
/// public keys only: nothing in a verifier's environment makes a token another verifier accepts.
pub async fn a_verifier_cannot_mint_a_token_the_others_accept(kind: Kind) {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let (_, public) = signing_key();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({
        "sub": "user-1", "iat": now, "exp": now + 600, "jti": "forged",
        "iss": shared::auth::access::DEFAULT_ISSUER, "aud": shared::auth::access::DEFAULT_AUDIENCE,
    });
    // What posts-write's environment holds about tokens, used as every kind of key it could be.
    let entry = public.to_entry();
    let verifier_values = [entry.clone(), entry.split_once(':').unwrap().1.to_owned()];
    let mut forged = Vec::new();
    for value in &verifier_values {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut h = Header::new(alg);
            h.kid = Some("test-1".into());
            forged.push(jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(value.as_bytes())).unwrap());
        }
    }
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("test-1".into());
    forged.push(jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&public.key)).unwrap());
    // A key pair of its own, claiming the real kid.
    let (own, _) = shared::auth::access::generate_key_pair("test-1").unwrap();
    let mut own_settings = f.settings.access.clone();
    own_settings.key = own;
    forged.push(
        shared::auth::AccessTokenSigner::new(&own_settings)
            .mint(&shared::auth::UserId::parse("user-1").unwrap())
            .unwrap(),
    );

    let posts_write = shared::auth::AccessTokens::new(&f.settings.access.verify);
    for token in &forged {
        assert!(posts_write.verify(token).is_err(), "a verifier accepted a forged token");
        let r = handle(&f.state, logout_all(Some(token))).await;
        assert_eq!(r.status(), 401, "logout-all accepted a forged token");
    }
    // The control: auth-refresh's own token passes both.
    let (_, access) = f.login("user-1").await;
    assert!(posts_write.verify(&access).is_ok());
    assert_eq!(handle(&f.state, logout_all(Some(&access))).await.status(), 204);
}

/// A flood from one session: the user's bucket empties, the rest is 429 with `Retry-After`, the
/// user's keys stay the same two small hashes, and another user is not limited.
pub async fn a_flood_of_refreshes_is_rate_limited_per_user(kind: Kind) {
    let f = Fixture::start_with(kind, Options { burst: 3, per_minute: 1, ..Options::grace(LONG_GRACE_MS) });
    let (mut token, _) = f.login("user-1").await;
    let (other, _) = f.login("user-2").await;
    for _ in 0..3 {
        token = refreshed(&handle(&f.state, refresh_by_body(&token)).await);
    }
    let bytes = f.user_bytes("user-1");
    let keys = f.user_keys("user-1");
    for _ in 0..50 {
        let r = handle(&f.state, refresh_by_body(&token)).await;
        assert_eq!(r.status(), 429, "{}", text(&r));
        assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
        let retry: u64 = header(&r, "retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        assert_eq!(json(&r)["type"], "/problems/too-many-refreshes");
    }
    assert_eq!(f.user_keys("user-1"), keys);
    assert!(f.user_bytes("user-1") <= bytes + 16, "a flood grows nothing");
    refreshed(&handle(&f.state, refresh_by_body(&other)).await);
    // The limited requests changed nothing: the token is still the current one.
    let family = parts(&token).1;
    assert!(f.cli(&["HGET", "auth:{user-1}:sessions", &family]).starts_with("3:"));
}

/// Dead tokens never spend the user's refresh budget (issue 26): a token of a revoked session, of
/// a family ended by reuse detection, of a session that expired, or of a family never issued here
/// (a genuine MAC, so only the secret's holder could make it) is refused with the one 401 before
/// the bucket is touched. Replaying them as fast as one likes leaves the user's live session
/// refreshing, writes nothing (not even the bucket: no memory per request) and stays O(1).
pub async fn dead_tokens_never_spend_the_users_refresh_budget(kind: Kind) {
    let f = Fixture::start_with(kind, Options { burst: 3, per_minute: 1, ..Options::grace(SHORT_GRACE_MS) });
    let user = shared::auth::UserId::parse("user-1").unwrap();
    // A revoked session.
    let (revoked, _) = f.login("user-1").await;
    assert_eq!(handle(&f.state, logout_by_cookie(&revoked)).await.status(), 204);
    // A family ended by reuse: its first token presented again after the grace window.
    let (reused1, _) = f.login("user-1").await;
    let reused2 = refreshed(&handle(&f.state, refresh_by_body(&reused1)).await);
    tokio::time::sleep(Duration::from_millis(SHORT_GRACE_MS + 50)).await;
    assert_eq!(handle(&f.state, refresh_by_body(&reused1)).await.status(), 401);
    // A family never issued, with a genuine MAC.
    let never = f.settings.refresh.key.token(&user, "AAAAAAAAAAAAAAAAAAAAAA", 0).expose().to_owned();
    // The live session; the bucket now holds 3 - 1 (the reuse set-up spent one) = 2 tokens, and
    // refills one a minute.
    let (mut live, _) = f.login("user-1").await;
    let before = f.dump();

    for _ in 0..20 {
        for dead in [&revoked, &reused1, &reused2, &never] {
            let r = handle(&f.state, refresh_by_body(dead)).await;
            assert_eq!(r.status(), 401, "{}", text(&r));
            let r = handle(&f.state, refresh_by_cookie(dead)).await;
            assert_eq!(r.status(), 401, "{}", text(&r));
        }
    }
    assert_eq!(f.dump(), before, "dead tokens wrote nothing: not the sessions, not the bucket");
    // The live session still has its whole remaining budget.
    for _ in 0..2 {
        live = refreshed(&handle(&f.state, refresh_by_cookie(&live)).await);
    }
    assert_eq!(handle(&f.state, refresh_by_cookie(&live)).await.status(), 429, "the budget itself still holds");
}

/// A user has at most REFRESH_MAX_SESSIONS_PER_USER sessions: a new sign-in ends the least
/// recently refreshed one.
pub async fn the_session_cap_evicts_the_least_recently_refreshed(kind: Kind) {
    let f = Fixture::start_with(kind, Options { max_sessions: 3, ..Options::grace(LONG_GRACE_MS) });
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(f.login("user-1").await.0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The first one refreshes, so the second is now the least recent.
    sessions[0] = refreshed(&handle(&f.state, refresh_by_body(&sessions[0])).await);
    let (fourth, _) = f.login("user-1").await;
    assert_eq!(f.cli(&["HLEN", "auth:{user-1}:sessions"]), "3");
    assert_eq!(handle(&f.state, refresh_by_body(&sessions[1])).await.status(), 401, "evicted");
    for token in [&sessions[0], &sessions[2], &fourth] {
        refreshed(&handle(&f.state, refresh_by_body(token)).await);
    }
}

pub async fn logout_revokes_that_session_only(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let (a1, _) = f.login("user-1").await;
    let (b, _) = f.login("user-1").await;
    let a2 = refreshed(&handle(&f.state, refresh_by_cookie(&a1)).await);

    let r = handle(&f.state, logout_by_cookie(&a2)).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "set-cookie"),
        Some(&*format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"))
    );
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    for token in [&a1, &a2] {
        assert_eq!(handle(&f.state, refresh_by_cookie(token)).await.status(), 401);
    }
    let family = parts(&a1).1;
    assert_eq!(f.cli(&["HEXISTS", "auth:{user-1}:sessions", &family]), "0");
    refreshed(&handle(&f.state, refresh_by_cookie(&b)).await);

    // Logging out again, or with a token that is not one, still succeeds; no token at all is a 401.
    assert_eq!(handle(&f.state, logout_by_cookie(&a2)).await.status(), 204);
    assert_eq!(handle(&f.state, logout_by_cookie("not-a-token")).await.status(), 204);
    let by_body = handle(&f.state, with_body("/auth/logout", serde_json::json!({ "refreshToken": a1 }))).await;
    assert_eq!(by_body.status(), 204);
    let none = handle(&f.state, post("/auth/logout").body(Body::Empty).unwrap()).await;
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
    tokens[0] = refreshed(&handle(&f.state, refresh_by_cookie(&tokens[0])).await);
    let (someone_else, _) = f.login("user-2").await;

    assert_eq!(handle(&f.state, logout_all(None)).await.status(), 401);
    let garbage = handle(&f.state, logout_all(Some("not.a.jwt"))).await;
    assert_eq!(garbage.status(), 401);
    assert!(header(&garbage, "www-authenticate").is_some_and(|c| c.starts_with("Bearer")));

    let r = handle(&f.state, logout_all(Some(&bearer))).await;
    assert_eq!(r.status(), 204);
    assert!(header(&r, "set-cookie").is_some_and(|c| c.starts_with(&format!("{COOKIE}=;")) && c.contains("Max-Age=0")));
    for token in &tokens {
        assert_eq!(handle(&f.state, refresh_by_cookie(token)).await.status(), 401);
    }
    assert!(!f.keys().contains(&"auth:{user-1}:sessions".to_owned()), "{:?}", f.keys());
    refreshed(&handle(&f.state, refresh_by_cookie(&someone_else)).await);

    // A new sign-in after logout-all is a working session again.
    let (fresh, _) = f.login("user-1").await;
    refreshed(&handle(&f.state, refresh_by_cookie(&fresh)).await);
}

pub async fn keys_carry_ttls(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let ttl_ms = (REFRESH_TTL_SECS * 1000) as i64;
    let fresh = |pttl: i64| (ttl_ms - 10_000..=ttl_ms).contains(&pttl);
    let (t1, _) = f.login("user-1").await;
    let keys = f.keys();
    assert_eq!(keys, ["auth:{user-1}:sessions"]);
    assert!(fresh(f.pttl(&keys[0])), "PTTL {}", f.pttl(&keys[0]));

    tokio::time::sleep(Duration::from_millis(1200)).await;
    refreshed(&handle(&f.state, refresh_by_cookie(&t1)).await);
    assert_eq!(f.keys(), ["auth:{user-1}:rate", "auth:{user-1}:sessions"]);
    // The sessions hash runs from the rotation; the bucket lives as long as it takes to refill.
    assert!(fresh(f.pttl("auth:{user-1}:sessions")) && f.pttl("auth:{user-1}:sessions") > ttl_ms - 1000);
    let rate = f.pttl("auth:{user-1}:rate");
    assert!(rate > 0 && rate <= 6_000_000, "rate PTTL {rate}");
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

pub async fn no_token_mac_or_secret_is_ever_stored(kind: Kind) {
    let f = Fixture::start(kind, LONG_GRACE_MS);
    let mut issued: Vec<String> = Vec::new();
    let mut dumps = Vec::new();

    let (a1, _) = f.login("user-1").await;
    issued.push(a1.clone());
    let (b, _) = f.login("user-1").await;
    issued.push(b.clone());
    dumps.push(("issued", f.dump()));

    let a2 = refreshed(&handle(&f.state, refresh_by_cookie(&a1)).await);
    issued.push(a2.clone());
    dumps.push(("rotated", f.dump()));

    assert_eq!(handle(&f.state, logout_by_cookie(&a2)).await.status(), 204);
    let b2 = refreshed(&handle(&f.state, refresh_by_body(&b)).await);
    issued.push(b2);
    dumps.push(("end", f.dump()));

    let mut needles = vec![REFRESH_SECRET.to_owned(), signing_key().0.expose().to_owned()];
    for token in &issued {
        let (_, _, _, mac) = parts(token);
        needles.push(token.clone());
        needles.push(mac);
    }
    for (stage, dump) in &dumps {
        assert!(!dump.is_empty(), "{stage}: a scan that found nothing would prove nothing");
        for (key, content) in dump {
            for needle in &needles {
                assert!(!key.contains(needle.as_str()), "{stage}: key {key} holds a credential");
                assert!(!content.contains(needle.as_str()), "{stage}: {key} holds a credential");
            }
        }
    }
}

pub async fn refused_tokens_all_get_the_same_401(kind: Kind) {
    let f = Fixture::start(kind, SHORT_GRACE_MS);
    let (live, _) = f.login("user-1").await;
    let (_, family, seq, mac) = parts(&live);
    let (victim, _) = f.login("user-2").await;
    let (_, victim_family, _, victim_mac) = parts(&victim);
    let reused = {
        let (t, _) = f.login("user-3").await;
        refreshed(&handle(&f.state, refresh_by_cookie(&t)).await);
        tokio::time::sleep(Duration::from_millis(SHORT_GRACE_MS + 100)).await;
        t
    };
    let revoked = {
        let (t, _) = f.login("user-4").await;
        assert_eq!(handle(&f.state, logout_by_cookie(&t)).await.status(), 204);
        t
    };
    let old_format = format!("user-1.{family}.{}", "A".repeat(43));

    let cases = [
        ("made-up MAC", refresh_by_cookie(&format!("user-1.{family}.{seq}.{}", "A".repeat(43)))),
        ("malformed", refresh_by_cookie("garbage")),
        ("malformed by body", refresh_by_body("a.b.c")),
        ("the old token format", refresh_by_cookie(&old_format)),
        ("oversized", refresh_by_body(&"x".repeat(3000))),
        ("another user's family", refresh_by_cookie(&format!("user-1.{victim_family}.0.{victim_mac}"))),
        ("prefix moved to another user", refresh_by_cookie(&format!("user-2.{family}.{seq}.{mac}"))),
        ("a later number", refresh_by_cookie(&format!("user-1.{family}.7.{mac}"))),
        ("reused", refresh_by_cookie(&reused)),
        ("revoked", refresh_by_cookie(&revoked)),
        ("empty cookie", refresh_by_cookie("")),
        ("no token", post("/auth/refresh").body(Body::Empty).unwrap()),
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
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&bodies[0].1).unwrap()["type"],
        "/problems/invalid-refresh-token"
    );
    // Tampering revoked nothing.
    refreshed(&handle(&f.state, refresh_by_cookie(&live)).await);
    refreshed(&handle(&f.state, refresh_by_cookie(&victim)).await);
}

/// Instantiates every scenario above as a `#[tokio::test]` for one kind of Redis.
macro_rules! token_suite {
    ($kind:expr) => {
        crate::suite::token_suite!(@tests $kind;
            refresh_by_cookie_answers_in_the_cookie_and_by_body_in_the_body,
            two_tabs_refreshing_at_once_both_stay_signed_in,
            twenty_concurrent_refreshes_of_one_token_rotate_once,
            a_lost_reply_retried_inside_the_window_gets_the_same_successor,
            attacker_first_ends_with_the_attackers_family_dead,
            reuse_after_the_grace_window_revokes_the_family,
            the_absolute_lifetime_ends_a_family_that_keeps_rotating,
            a_thousand_rotations_leave_at_most_one_kilobyte_for_the_session,
            cross_origin_simple_requests_with_the_cookie_are_refused_and_the_session_survives,
            a_verifier_cannot_mint_a_token_the_others_accept,
            a_flood_of_refreshes_is_rate_limited_per_user,
            dead_tokens_never_spend_the_users_refresh_budget,
            the_session_cap_evicts_the_least_recently_refreshed,
            logout_revokes_that_session_only,
            logout_all_revokes_every_session_of_the_user,
            keys_carry_ttls,
            redis_down_fails_closed_with_503,
            no_token_mac_or_secret_is_ever_stored,
            refused_tokens_all_get_the_same_401
        );
    };
    (@tests $kind:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::suite::$name($kind).await
            }
        )+
    };
}
pub(crate) use token_suite;
