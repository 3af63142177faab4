//! `tessera_core::access::verify` — the one access-token verifier of the
//! library's resource layer, `/auth/verify`, introspection and revocation —
//! on arbitrary compact strings, against a fixed key set (an Ed25519 key
//! `ed` and a P-256 key `ec`, imported from a JWKS as the library does).
//!
//! Seeds are tokens those keys signed (valid, expired, wrong audience,
//! bound, `alg` swapped, …), so mutations reach every check.
//!
//! Invariants: never panics; a refused token is refused again (determinism);
//! a token that verifies is at most `MAX_TOKEN_BYTES`, three non-empty
//! base64url segments, and its claims satisfy every claim rule restated
//! here; a weaker expectation (any audience, sender-constrained accepted)
//! never refuses what a stricter one accepted; and changing any one
//! character of an accepted token's signature gets it refused.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tessera_core::access::{AudienceRule, Expected, KeySet, MAX_TOKEN_BYTES, verify};
use tessera_core::{ManualClock, Timestamp};
use tessera_fuzz::{AUDIENCE, ISSUER, NOW, key_set, signers};

static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    let (ed, ec) = signers();
    key_set(&ed, &ec)
});
static CLOCK: LazyLock<ManualClock> = LazyLock::new(|| ManualClock::new(Timestamp::from_unix_secs(NOW)));

const LEEWAY: i64 = 30;

fn b64url(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let strict = Expected {
        issuer: ISSUER,
        audience: AudienceRule::Contains(AUDIENCE),
        leeway_secs: LEEWAY as u64,
        accept_sender_constrained: false,
    };
    let lax = Expected {
        audience: AudienceRule::Any,
        accept_sender_constrained: true,
        ..strict
    };
    let clock: &ManualClock = &CLOCK;
    let verdict = verify(token, &*KEYS, &strict, clock);
    match &verdict {
        Err(e) => assert_eq!(verify(token, &*KEYS, &strict, clock).err(), Some(*e)),
        Ok(c) => {
            assert!(token.len() <= MAX_TOKEN_BYTES);
            let segments: Vec<&str> = token.split('.').collect();
            assert_eq!(segments.len(), 3);
            assert!(segments.iter().all(|s| b64url(s)), "{token:?}");
            assert!(!c.sub.is_empty() && !c.sid.as_deref().is_some_and(str::is_empty) && !c.client_id.is_empty() && !c.jti.is_empty());
            assert_eq!(c.iss, ISSUER);
            assert!(c.aud.contains(AUDIENCE));
            assert!(NOW < c.exp.saturating_add(LEEWAY));
            assert!(c.iat <= NOW + LEEWAY);
            assert!(c.nbf.is_none_or(|nbf| nbf <= NOW + LEEWAY));
            assert!(c.cnf.is_none());
            assert_eq!(verify(token, &*KEYS, &strict, clock).as_ref(), Ok(c));

            // One character of the signature changed: refused.
            let sig_start = segments[0].len() + segments[1].len() + 2;
            for i in [sig_start, token.len() - 1] {
                let mut forged = token.as_bytes().to_vec();
                forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
                let forged = String::from_utf8(forged).unwrap_or_default();
                assert!(verify(&forged, &*KEYS, &strict, clock).is_err(), "{forged:?}");
            }
        }
    }
    let weaker = verify(token, &*KEYS, &lax, clock);
    if let Ok(c) = &verdict {
        assert_eq!(weaker.as_ref(), Ok(c));
    }
    if let Ok(c) = &weaker {
        assert!(c.aud.iter().any(|a| !a.is_empty()));
    }
});
