//! `tessera_core::secret::parse` on arbitrary bytes, for every token kind.
//!
//! The input is tried as-is and with each kind's prefix in front, so the
//! fuzzer gets past the prefix check and exercises the alphabet and strict
//! base64url decode paths too.
//!
//! Invariants: never panics; anything accepted has exactly the length of its
//! kind and starts with its prefix; parsing is deterministic; a token never
//! parses as another kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::TokenKind;
use tessera_core::secret::{SECRET_CHARS, parse};

const KINDS: [TokenKind; 3] = [TokenKind::Session, TokenKind::ApiKey, TokenKind::Refresh];

fn check(data: &[u8]) {
    for kind in KINDS {
        if let Ok(hash) = parse(kind, data) {
            assert_eq!(data.len(), kind.prefix().len() + SECRET_CHARS);
            assert!(data.starts_with(kind.prefix().as_bytes()));
            let again = parse(kind, data).expect("a token that parsed once parses again");
            assert!(hash.ct_eq(&again));
            let _ = hash.log_tag();
            let _ = format!("{hash:?}");
            for other in KINDS {
                if other != kind {
                    assert!(parse(other, data).is_err());
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut prefixed = Vec::with_capacity(data.len() + 4);
    for kind in KINDS {
        prefixed.clear();
        prefixed.extend_from_slice(kind.prefix().as_bytes());
        prefixed.extend_from_slice(data);
        check(&prefixed);
    }
});
