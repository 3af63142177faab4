//! The DBSC structured headers of `tessera_http::dbsc`: the
//! `Sec-Secure-Session-Id` reader on arbitrary bytes, and the
//! `Secure-Session-Registration` / `Secure-Session-Challenge` writers on
//! arbitrary paths, challenges and ids, checked with an independent RFC
//! 9651 parser (the `sfv` crate).
//!
//! Input: an algorithm bit mask byte, then `path \0 challenge \0 id`.
//!
//! Invariants: never panics; a session id read is 1–128 visible ASCII
//! characters without `"` or `\`, and reads the same bare or quoted; the
//! registration header is an RFC 9651 list of one inner list of the offered
//! algorithm tokens with `path` and `challenge` string parameters holding
//! the printable characters given; the challenge header is an RFC 9651
//! string item with an `id` string parameter, likewise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sfv::{BareItem, Item, List, ListEntry, Parameters, Parser};
use tessera_core::dpop::DpopAlg;
use tessera_http::dbsc::{challenge_header, registration_header, session_id};

fn printable(s: &str) -> String {
    s.chars().filter(|c| (' '..='~').contains(c)).collect()
}

fn param<'p>(params: &'p Parameters, name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(k, _)| k.as_str() == name)
        .and_then(|(_, v)| v.as_string())
        .map(|s| s.as_str())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mask, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == 0);
    let (path, challenge, id) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );

    if let Some(s) = session_id(id) {
        assert!(!s.is_empty() && s.len() <= 128);
        assert!(s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
        assert_eq!(session_id(s.as_bytes()), Some(s));
        assert_eq!(session_id(format!("\"{s}\"").as_bytes()), Some(s));
    }

    let (Ok(path), Ok(challenge), Ok(id)) = (
        std::str::from_utf8(path),
        std::str::from_utf8(challenge),
        std::str::from_utf8(id),
    ) else {
        return;
    };
    let algs: Vec<DpopAlg> = DpopAlg::ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, a)| *a)
        .collect();

    let reg = registration_header(&algs, path, challenge);
    let list: List = Parser::new(&reg)
        .parse()
        .unwrap_or_else(|e| panic!("registration header {reg:?} is not an sf-list: {e}"));
    assert_eq!(list.len(), 1);
    let ListEntry::InnerList(inner) = &list[0] else {
        panic!("not an inner list: {reg:?}");
    };
    let tokens: Vec<&str> = inner
        .items
        .iter()
        .map(|i| match &i.bare_item {
            BareItem::Token(t) => t.as_str(),
            other => panic!("not a token: {other:?}"),
        })
        .collect();
    let names: Vec<&str> = algs.iter().map(|a| a.name()).collect();
    assert_eq!(tokens, names);
    assert_eq!(param(&inner.params, "path"), Some(printable(path).as_str()));
    assert_eq!(
        param(&inner.params, "challenge"),
        Some(printable(challenge).as_str())
    );

    let ch = challenge_header(challenge, id);
    let item: Item = Parser::new(&ch)
        .parse()
        .unwrap_or_else(|e| panic!("challenge header {ch:?} is not an sf-item: {e}"));
    assert_eq!(
        item.bare_item.as_string().map(|s| s.as_str()),
        Some(printable(challenge).as_str())
    );
    assert_eq!(param(&item.params, "id"), Some(printable(id).as_str()));
});
