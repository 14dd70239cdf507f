//! Every decoder of caller input: none may panic, and what they accept keeps its invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Ok(id) = shared::posts::PostId::parse(&text) {
        assert!(id.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
    if let Ok(user) = shared::auth::UserId::parse(&text) {
        assert!(!user.as_str().contains(['{', '}', ':']));
    }
    let _ = shared::auth::refresh::RefreshToken::parse(&text);
    let _ = shared::email::EmailAddress::parse(&text);
    let _ = shared::email::EmailJob::from_json(&text);
    if let Ok(event) = shared::payments::Event::parse(data) {
        let _ = event.handled();
    }
    let _ = shared::outbound::parse_retry_after(&text);

    let shown = shared::uploads::display_filename(&text);
    assert!(!shown.contains(['/', '\\', '\r', '\n', '\0']), "{shown:?}");

    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(post) = shared::posts::NewPost::parse(&value) {
            assert!(!post.title.trim().is_empty() && post.title.chars().count() <= 200);
            assert!(!post.title.chars().any(char::is_control));
        }
        let _ = shared::posts::parse_changes(&value);
        let _ = serde_json::from_value::<shared::uploads::UploadRequest>(value);
    }
});
