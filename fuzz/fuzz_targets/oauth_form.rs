//! The request bodies of `POST /oauth2/token`, `/oauth2/revoke` and
//! `/oauth2/introspect`, read by the service's own code: `Content-Type`,
//! the `application/x-www-form-urlencoded` body, the parameters as the
//! handlers get them, and the client credentials (HTTP Basic or
//! `client_id`/`client_secret` in the form).
//!
//! Input: `Content-Type \n Authorization \n body` (an empty `Authorization`
//! line sends none).
//!
//! Invariants: never panics; a body is read only with the form content
//! type; the strict decoder agrees with the WHATWG parser
//! (`form_urlencoded`) on every body it accepts; parameter names are
//! unique (but `resource` and `audience`, which may repeat) and at most 32; an empty value reads as absent; the parameters
//! re-encoded read back the same; Basic credentials name a non-empty
//! client, `client_id` in the form is the client read; every refusal is a
//! 400, 401 or 413 with a printable description.
#![no_main]

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use tessera_server::handlers::oauth::fuzzing::{Credentials, read_request};

const REPEATABLE: &[&str] = &["resource", "audience"];

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let (Some(ct), Some(auth), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(ct) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if !auth.is_empty()
        && let Ok(v) = HeaderValue::from_bytes(auth)
    {
        headers.insert(header::AUTHORIZATION, v);
    }
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));

    let read = match read_request(headers.clone(), body.to_vec()) {
        Err((status, code, description)) => {
            assert!(matches!(status, 400 | 413), "{status}");
            assert_eq!(code, "invalid_request");
            assert!(printable(&description));
            return;
        }
        Ok(read) => read,
    };
    assert!(form_type);

    let whatwg: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(read.params, whatwg);
    assert!(read.params.len() <= 32);
    for (i, (k, _)) in read.params.iter().enumerate() {
        let first = read.params.iter().position(|(o, _)| o == k).expect("itself");
        // Only RFC 8707 `resource` and RFC 8693 `audience` may repeat; a
        // handler reading one value gets the first.
        if !REPEATABLE.contains(&k.as_str()) {
            assert_eq!(first, i, "duplicate {k:?}");
        }
        let v = &read.params[first].1;
        assert_eq!(read.got[i].as_deref(), (!v.is_empty()).then_some(v.as_str()));
    }

    let reencoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&read.params)
        .finish();
    let again = read_request(headers, reencoded.into_bytes()).expect("re-encoded form reads back");
    assert_eq!(again.params, read.params);

    match &read.client {
        Ok(Credentials::Basic { id, .. }) => {
            assert_eq!(read.scheme, "basic");
            assert!(!id.is_empty());
        }
        Ok(Credentials::Post { id, secret }) => {
            assert_eq!(read.scheme, "none");
            let param = |n: &str| read.params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            assert_eq!(param("client_id"), Some(id.as_str()));
            assert_eq!(
                secret.as_deref(),
                param("client_secret").filter(|s| !s.is_empty())
            );
        }
        Ok(Credentials::Assertion { id, assertion }) => {
            // private_key_jwt: no Authorization, both parameters, and the
            // client it names (read from the unverified assertion) is the
            // form's client_id when one is sent.
            assert_eq!(read.scheme, "none");
            let param = |n: &str| read.params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            assert_eq!(param("client_assertion"), Some(assertion.as_str()));
            assert!(param("client_id").is_none_or(|c| c.is_empty() || c == id));
            assert!(!id.is_empty() && id.len() <= 128);
        }
        Ok(Credentials::None) => assert_eq!(read.scheme, "none"),
        Err((status, code, description)) => {
            assert!(matches!(
                (status, *code),
                (400, "invalid_request") | (401, "invalid_client")
            ));
            assert!(printable(description));
        }
    }
});
