//! `tessera_core::dpop::check_proof` on arbitrary `DPoP` header values.
//!
//! The input is `method \n uri \n access-token-or-empty \n proof`; the
//! check runs at the RFC 9449 examples' time, so the seed proofs (RFC 9449
//! figures) pass and their mutations exercise every later check.
//!
//! Invariants: never panics; a proof that passes names a 43-character
//! base64url `jkt`, a `jti` of 1–256 bytes, an `iat` inside the window and
//! a `htu` that matches the URI; `htu_matches` is reflexive for anything it
//! accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::Timestamp;
use tessera_core::dpop::{DpopPolicy, ProofRequest, check_proof, htu_matches};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(4, '\n');
    let (Some(method), Some(uri), Some(at), Some(proof)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let policy = DpopPolicy::default();
    let now = Timestamp::from_unix_secs(1_562_262_617);
    let req = ProofRequest {
        method,
        uri,
        access_token: (!at.is_empty()).then_some(at),
    };
    if let Ok(p) = check_proof(proof, &req, &policy, now) {
        assert_eq!(p.jkt.len(), 43);
        assert!(
            p.jkt
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(!p.jti.is_empty() && p.jti.len() <= 256);
        assert!(p.iat >= now.unix_secs() - policy.max_age_secs);
        assert!(p.iat <= now.unix_secs() + policy.max_future_secs);
    }
    if htu_matches(uri, uri) {
        assert!(htu_matches(uri, &format!("{uri}?q=1")) || uri.contains('#'));
    }
});
