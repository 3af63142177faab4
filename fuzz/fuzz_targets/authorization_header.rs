//! `tessera_http::bearer` on arbitrary request headers: `Authorization`
//! (Bearer/DPoP), `DPoP` and a forwarded client certificate.
//!
//! The input is split at NUL bytes into header values: the first ones are
//! `Authorization` values, one after a `\x01` byte are `DPoP`, and the rest
//! a certificate header.
//!
//! Invariants: never panics; a token read is non-empty, has no leading or
//! trailing space and came from the only `Authorization` header; a
//! certificate thumbprint is 43 base64url characters.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tessera_http::bearer::{AccessCredential, access_credential, dpop_proof, forwarded_client_cert};

fuzz_target!(|data: &[u8]| {
    let cert = HeaderName::from_static("x-ssl-client-cert");
    let mut headers = HeaderMap::new();
    for value in data.split(|&b| b == 0) {
        let (name, value) = match value.split_first() {
            Some((1, rest)) => (HeaderName::from_static("dpop"), rest),
            Some((2, rest)) => (cert.clone(), rest),
            _ => (http::header::AUTHORIZATION, value),
        };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(name, v);
        }
    }
    match access_credential(&headers) {
        AccessCredential::Token(_, token) => {
            assert!(!token.is_empty());
            assert_eq!(token.trim_ascii(), token);
            assert_eq!(headers.get_all("authorization").iter().count(), 1);
        }
        AccessCredential::Malformed(_) | AccessCredential::None => {}
    }
    let _ = dpop_proof(&headers);
    if let Some(t) = forwarded_client_cert(&headers, &cert) {
        assert_eq!(t.0.len(), 43);
    }
});
