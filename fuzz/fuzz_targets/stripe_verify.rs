//! Verification never panics, and it only accepts a header that carries the signature this
//! secret makes for this body and timestamp (the oracle is `sign_header`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::config::EnvReader;
use shared::payments::{Verifier, VerifierSettings};

const SECRET: &str = "whsec_fuzz_secret";
const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let split = (split as usize).min(rest.len());
    let (header, body) = rest.split_at(split);
    let Ok(header) = std::str::from_utf8(header) else { return };
    let mut env = EnvReader::from_fn(|k| (k == "STRIPE_WEBHOOK_SECRET").then(|| SECRET.to_owned()));
    let verifier = Verifier::new(&VerifierSettings::from_env(&mut env));
    if let Ok(verified) = verifier.verify(Some(header), body, NOW) {
        let expected = shared::payments::sign_header(SECRET, verified.timestamp, body);
        let v1 = expected.split(",v1=").nth(1).expect("sign_header writes v1");
        assert!(header.contains(v1), "accepted a header without the right signature");
    }
});
