//! The session cookie as a request presents it: [`super::header`]'s byte
//! rule applied to a request's `Cookie` headers, borrowed, copying nothing
//! (both faces read it on every request).

use http::HeaderMap;
use http::header::COOKIE;

use super::header::{SessionCookie, distinct_values, session_cookies};

/// A cookie value longer than this is refused unread (SC-13); session
/// tokens are 47 bytes.
pub const MAX_VALUE_LEN: usize = 128;

/// At most this many distinct session-cookie values are revoked by one
/// logout.
pub const MAX_LOGOUT_VALUES: usize = 4;

/// What a request presents for the cookie `name`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum SessionValue<'h> {
    #[default]
    Absent,
    /// One value (perhaps sent more than once) of a plausible length.
    One(&'h str),
    /// One value that cannot be a token of ours (empty, longer than
    /// [`MAX_VALUE_LEN`], not UTF-8): `session_invalid` without a lookup.
    Invalid,
    /// Several different values: the request has no session
    /// ([`SessionCookie::Conflicting`] says why).
    Conflicting,
}

/// The raw bytes of every `Cookie` header (HTTP/2 may split the cookies
/// over several): the only source of session tokens (SC-04).
pub fn cookie_headers(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers.get_all(COOKIE).into_iter().map(|v| v.as_bytes())
}

/// The cookie `name` under the one duplicate rule: one value, sent once or
/// repeated, or a conflict — never a guess.
pub fn session_value<'h>(headers: &'h HeaderMap, name: &str) -> SessionValue<'h> {
    let [v] = session_values(headers, [name]);
    v
}

/// [`session_value`] of each name, reading the headers once.
pub fn session_values<'h, const N: usize>(headers: &'h HeaderMap, names: [&str; N]) -> [SessionValue<'h>; N] {
    session_cookies(cookie_headers(headers), names.map(str::as_bytes)).map(|c| match c {
        SessionCookie::Absent => SessionValue::Absent,
        SessionCookie::Conflicting => SessionValue::Conflicting,
        SessionCookie::One(v) => match plausible(v) {
            Some(v) => SessionValue::One(v),
            None => SessionValue::Invalid,
        },
    })
}

/// The distinct plausible values of the cookie `name`, at most
/// [`MAX_LOGOUT_VALUES`]: what a logout revokes, so that when the values
/// conflict neither comes back alone once the browser drops the other.
pub fn logout_values<'h>(headers: &'h HeaderMap, name: &str) -> Vec<&'h str> {
    distinct_values(cookie_headers(headers), name.as_bytes(), MAX_LOGOUT_VALUES)
        .into_iter()
        .filter_map(plausible)
        .collect()
}

fn plausible(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v)
        .ok()
        .filter(|v| !v.is_empty() && v.len() <= MAX_VALUE_LEN)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn one_invalid_conflicting_or_absent() {
        let n = "__Host-tessera";
        let read = |v: &[&[u8]]| {
            let h = headers(v);
            format!("{:?}", session_value(&h, n))
        };
        assert_eq!(read(&[b"a=b"]), "Absent");
        assert_eq!(read(&[b"__Host-tessera=tss_a; x=\xe9"]), "One(\"tss_a\")");
        assert_eq!(
            read(&[b"__Host-tessera=tss_a", b"__Host-tessera=tss_a"]),
            "One(\"tss_a\")"
        );
        assert_eq!(
            read(&[b"__Host-tessera=tss_a; __Host-tessera=tss_b"]),
            "Conflicting"
        );
        let long = format!("__Host-tessera={}", "a".repeat(MAX_VALUE_LEN + 1));
        for bad in [&b"__Host-tessera="[..], b"__Host-tessera=\xff", long.as_bytes()] {
            assert_eq!(read(&[bad]), "Invalid");
        }
    }

    #[test]
    fn logout_takes_every_plausible_value_up_to_the_bound() {
        let h = headers(&[b"n=a; n=\xff; n=b; n=a; n=; n=c; n=d; n=e"]);
        // `distinct_values` stops at four distinct values, garbage included.
        assert_eq!(logout_values(&h, "n"), ["a", "b"]);
        let h = headers(&[b"n=a; n=b; n=c; n=d; n=e"]);
        assert_eq!(logout_values(&h, "n"), ["a", "b", "c", "d"]);
        assert!(logout_values(&h, "m").is_empty());
    }
}
