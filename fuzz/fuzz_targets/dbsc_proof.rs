//! DBSC proofs (`Secure-Session-Response`, a `dbsc+jwt` compact JWS) through
//! `tessera_core::dbsc`'s own parser, as registration and refresh call it.
//!
//! The first input byte picks the mode: even is registration (the key comes
//! from the header `jwk`), odd is refresh (verified with a fixed registered
//! P-256 key; seeds are proofs it signed). The rest is the proof.
//!
//! Invariants: never panics; an accepted registration proof carries a
//! usable key whose canonical JSON parses back to the same key, and a `jti`
//! of 1–512 bytes; an accepted refresh proof carries no key; no proof is
//! both (a registration proof is refused at refresh under its own key, a
//! refresh proof is refused at registration); accepting is deterministic
//! and limited to the offered algorithms.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tessera_core::dbsc::fuzzing::parse_proof;
use tessera_core::dbsc::{DbscPolicy, MAX_PROOF_BYTES};
use tessera_core::dpop::{DpopAlg, PublicJwk};

const REGISTERED: &str = r#"{"crv":"P-256","kty":"EC","x":"Rxw-dYxJBChbun5TEY7Q9SSt6wdX0lvS-Oew1236cUw","y":"3VIPesqKi5F6zDf1HejwybvjrYWDgucC3CWhLQn3qFg"}"#;

static KEY: LazyLock<PublicJwk> = LazyLock::new(|| PublicJwk::from_json(REGISTERED).expect("fixed JWK"));
static ALGS: LazyLock<Vec<DpopAlg>> = LazyLock::new(|| DbscPolicy::default().algs);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(proof) = std::str::from_utf8(rest) else {
        return;
    };
    let algs: &[DpopAlg] = &ALGS;
    if mode % 2 == 0 {
        let Ok((jti, jwk)) = parse_proof(proof, algs, None) else {
            return;
        };
        assert!(proof.len() <= MAX_PROOF_BYTES);
        assert!(!jti.is_empty() && jti.len() <= 512);
        let jwk = jwk.expect("a registration proof carries its key");
        assert_eq!(PublicJwk::from_json(&jwk.to_json()).ok().as_ref(), Some(&jwk));
        assert!(
            parse_proof(proof, algs, Some(&jwk)).is_err(),
            "a proof with a jwk passed as a refresh"
        );
        let again = parse_proof(proof, algs, None).expect("accepted once, accepted again");
        assert_eq!(again.0, jti);
        // Offered nothing, nothing is accepted.
        assert!(parse_proof(proof, &[], None).is_err());
    } else {
        let Ok((jti, jwk)) = parse_proof(proof, algs, Some(&KEY)) else {
            return;
        };
        assert!(!jti.is_empty() && jti.len() <= 512);
        assert!(jwk.is_none());
        assert!(
            parse_proof(proof, algs, None).is_err(),
            "a proof without a jwk passed as a registration"
        );
        assert!(
            parse_proof(proof, &[DpopAlg::Rs256], Some(&KEY)).is_err(),
            "ES256 key, RS256 only offered"
        );
    }
});
