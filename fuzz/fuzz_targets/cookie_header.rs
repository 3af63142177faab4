//! `tessera_http::cookies::header` on arbitrary `Cookie` header bytes.
//!
//! The input is split at NUL bytes into several header values (HTTP/2 may
//! send one `Cookie` header per cookie); the session cookie's name is `n`.
//!
//! Invariants: never panics; `session_cookie` agrees with `values` (absent
//! when there is none, one when all are equal, a conflict only when two
//! differ); `distinct_values` is bounded, duplicate-free and in order; and
//! a pair of arbitrary bytes appended in a further header value never
//! changes what is read for the session cookie unless it names it (one
//! malformed neighbour hides nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_http::cookies::header::{SessionCookie, distinct_values, pairs, session_cookie, values};

const NAME: &[u8] = b"n";

fuzz_target!(|data: &[u8]| {
    let headers: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    for h in &headers {
        for (name, value) in pairs(h) {
            assert!(!name.is_empty());
            assert!(!name.contains(&b';') && !name.contains(&b'=') && !value.contains(&b';'));
            assert_eq!(name.trim_ascii(), name);
            assert_eq!(value.trim_ascii(), value);
        }
    }

    let all: Vec<&[u8]> = values(headers.iter().copied(), NAME).collect();
    let verdict = session_cookie(headers.iter().copied(), NAME);
    match verdict {
        SessionCookie::Absent => assert!(all.is_empty()),
        SessionCookie::One(v) => assert!(!all.is_empty() && all.iter().all(|x| *x == v)),
        SessionCookie::Conflicting => assert!(all.iter().any(|x| *x != all[0])),
    }

    let distinct = distinct_values(headers.iter().copied(), NAME, 4);
    assert!(distinct.len() <= 4);
    for (i, v) in distinct.iter().enumerate() {
        assert!(!distinct[..i].contains(v));
    }
    let mut expected: Vec<&[u8]> = Vec::new();
    for v in &all {
        if expected.len() < 4 && !expected.contains(v) {
            expected.push(v);
        }
    }
    assert_eq!(distinct, expected);

    // The first header value as a neighbour cookie "x<bytes>" in another
    // header: whatever its bytes, it cannot name the session cookie, so
    // nothing read for it changes.
    if let Some(first) = headers.first() {
        let mut neighbour = b"x".to_vec();
        neighbour.extend(first.iter().copied().filter(|&b| b != b';'));
        let mut more = headers.clone();
        more.push(&neighbour);
        assert_eq!(session_cookie(more.iter().copied(), NAME), verdict);
    }
});
