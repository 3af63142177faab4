//! `tessera_core::clients::check_assertion` (RFC 7523 `private_key_jwt`)
//! and `assertion_client_id` on arbitrary `client_assertion` values, and
//! `ClientJwks::from_json` on the same bytes (a registered key set).
//!
//! The registered key is the fixed P-256 key of `fuzz/make_seeds.py`
//! (`EC`), which signed the seeds in `fuzz/seeds/client_assertion` for the
//! time the check runs at, so the valid seeds pass and their mutations
//! exercise every later check.
//!
//! Invariants: never panics; an assertion that passes names the client in
//! `iss`/`sub` (so `assertion_client_id` finds it), has a `jti` of 1–256
//! bytes and an `exp` inside the accepted window.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tessera_core::Timestamp;
use tessera_core::clients::{
    AssertionRules, ClientJwks, MAX_ASSERTION_LIFETIME_SECS, assertion_client_id, check_assertion,
};

const JWKS: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "Rxw-dYxJBChbun5TEY7Q9SSt6wdX0lvS-Oew1236cUw", "y": "3VIPesqKi5F6zDf1HejwybvjrYWDgucC3CWhLQn3qFg", "kid": "k1"}]}"#;
const NOW: i64 = 1_800_000_000;
const LEEWAY: i64 = 60;

static KEYS: LazyLock<Option<ClientJwks>> = LazyLock::new(|| ClientJwks::from_json(JWKS).ok());

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ClientJwks::from_json(text);
    let named = assertion_client_id(text);
    let Some(keys) = KEYS.as_ref() else {
        return;
    };
    let audiences = [
        String::from("https://auth.example"),
        String::from("https://auth.example/oauth2/token"),
    ];
    let rules = AssertionRules {
        audiences: &audiences,
        leeway_secs: LEEWAY,
    };
    if let Ok(c) = check_assertion("fuzz-svc", keys, text, &rules, Timestamp::from_unix_secs(NOW)) {
        assert_eq!(named.as_deref(), Some("fuzz-svc"));
        assert!(!c.jti.is_empty() && c.jti.len() <= 256);
        assert!(c.exp > NOW - LEEWAY);
        assert!(c.exp <= NOW + MAX_ASSERTION_LIFETIME_SECS + LEEWAY);
    }
});
