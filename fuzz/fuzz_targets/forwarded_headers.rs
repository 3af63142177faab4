//! The headers a reverse proxy forwards to `/auth/verify`, read by the
//! service's own functions: the proxied method (`X-Forwarded-Method`,
//! `X-Original-Method`), the proxied URL (`X-Original-URL`, else
//! `X-Forwarded-Proto|Host|Uri`), `?level=N`, the forwarded client
//! certificate, and the CSRF judgement of `Origin`, `Sec-Fetch-Site`,
//! `Referer`, `Host` and `X-Forwarded-Host|Proto` (`tessera_http::csrf`).
//!
//! Input: the query, then header values separated by NUL bytes; each
//! value's first byte picks its header name.
//!
//! Invariants: never panics; a state-changing method in any method header
//! wins over a safe one, and the method is unknown only without method
//! headers; the proxied URL is trimmed and is `X-Original-URL` when that is
//! present once, else `proto://host…`; `?level` is 1–255 and given once; a
//! certificate thumbprint is 43 base64url characters; a safe method is
//! always allowed, forwarded headers change nothing unless trusted, and
//! allowing same-site requests only ever allows more.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tessera_core::dpop::htu_matches;
use tessera_http::bearer::forwarded_client_cert;
use tessera_http::csrf::{CsrfPolicy, FetchContext, Verdict, is_safe_method, judge};
use tessera_server::handlers::forward_auth::fuzzing::{proxied_method, proxied_uri, required_level};

const NAMES: [&str; 12] = [
    "x-forwarded-method",
    "x-original-method",
    "x-original-url",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-uri",
    "origin",
    "sec-fetch-site",
    "referer",
    "host",
    "x-ssl-client-cert",
    "x-forwarded-for",
];

fn verdicts(headers: &HeaderMap, method: Option<&[u8]>, allowed: &[String]) -> [Verdict; 3] {
    let ctx = FetchContext::from_headers(headers, method, Some("authority.test"));
    let policy = |same_site, trust| CsrfPolicy {
        allowed_origins: allowed,
        allow_same_site: same_site,
        trust_forwarded_headers: trust,
    };
    [
        judge(&ctx, &policy(false, false)),
        judge(&ctx, &policy(true, false)),
        judge(&ctx, &policy(false, true)),
    ]
}

fuzz_target!(|data: &[u8]| {
    let mut chunks = data.split(|&b| b == 0);
    let query = chunks.next().and_then(|q| std::str::from_utf8(q).ok());
    let mut headers = HeaderMap::new();
    for chunk in chunks {
        let Some((&pick, value)) = chunk.split_first() else {
            continue;
        };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(NAMES[usize::from(pick) % NAMES.len()]), v);
        }
    }

    // The method.
    let methods: Vec<&[u8]> = ["x-forwarded-method", "x-original-method"]
        .iter()
        .flat_map(|n| headers.get_all(*n).iter().map(|v| v.as_bytes()))
        .collect();
    let method = proxied_method(&headers);
    match method {
        None => assert!(methods.is_empty()),
        Some(m) => {
            assert!(methods.contains(&m));
            assert_eq!(is_safe_method(m), methods.iter().all(|m| is_safe_method(m)));
        }
    }

    // The URL.
    if let Some(uri) = proxied_uri(&headers) {
        assert!(!uri.is_empty());
        assert_eq!(uri.trim(), uri);
        let originals: Vec<_> = headers.get_all("x-original-url").iter().collect();
        match originals.as_slice() {
            [one] if one.to_str().is_ok_and(|s| !s.trim().is_empty()) => {
                assert_eq!(uri, one.to_str().unwrap_or_default().trim());
            }
            _ => {
                let proto = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok());
                assert!(
                    proto.is_some_and(|p| uri.starts_with(&format!("{}://", p.trim()))),
                    "{uri:?}"
                );
            }
        }
        let _ = htu_matches(&uri, &uri);
    }

    // `?level=N`.
    match required_level(query) {
        Ok(Some(n)) => {
            assert!(n >= 1);
            let levels: Vec<_> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .filter(|(k, _)| k == "level")
                .collect();
            assert_eq!(levels.len(), 1);
            assert_eq!(levels[0].1.parse::<u8>().ok(), Some(n));
        }
        Ok(None) => {
            assert!(query.is_none_or(|q| form_urlencoded::parse(q.as_bytes()).all(|(k, _)| k != "level")));
        }
        Err(detail) => {
            assert!(detail.contains("level"), "{detail}");
            assert!(query.is_some_and(|q| q.contains("level") || q.contains('%')));
        }
    }

    // The forwarded client certificate.
    if let Some(t) = forwarded_client_cert(&headers, &HeaderName::from_static("x-ssl-client-cert")) {
        assert_eq!(t.0.len(), 43);
        assert!(
            t.0.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    // CSRF, as forward auth judges the proxied request.
    let allowed: Vec<String> = Vec::new();
    let [plain, same_site, trusted] = verdicts(&headers, method, &allowed);
    if method.is_some_and(is_safe_method) {
        assert!(!plain.is_refused() && !same_site.is_refused() && !trusted.is_refused());
    }
    // allow_same_site widens: nothing allowed without it is refused with it.
    assert!(plain.is_refused() || !same_site.is_refused());
    let mut untrusted = headers.clone();
    untrusted.remove("x-forwarded-host");
    untrusted.remove("x-forwarded-proto");
    let [plain_without, ..] = verdicts(&untrusted, method, &allowed);
    assert_eq!(
        plain, plain_without,
        "untrusted forwarded headers changed the verdict"
    );
});
