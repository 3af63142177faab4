//! Reading cookies out of `Cookie` request headers, byte by byte: the one
//! rule every face uses. [`super::read`] applies it to the session cookie.
//!
//! Pure functions over the raw bytes of header values, so they can be
//! fuzzed (`fuzz/fuzz_targets/cookie_header.rs`).
//!
//! The header is read as bytes, never as a string as a whole: browsers send
//! cookies set by other applications of the site, and one of them holding a
//! byte outside visible ASCII (`x=é`) must not hide the session cookie beside
//! it. Only a malformed pair is skipped, never the header.
//!
//! Splitting follows what browsers send (RFC 6265 §4.2.1, §5.4) as
//! `cookie::Cookie::split_parse` does, without percent-decoding: pairs at
//! `;`, name and value at the first `=`, both trimmed of ASCII whitespace; a
//! pair without `=` or with an empty name is skipped. Names compare byte for
//! byte (cookie names are case-sensitive).

/// The `name=value` pairs of one `Cookie` header value, in order.
///
/// The separators are found with `memchr` rather than a byte-at-a-time
/// split: every request reads this header (twice in the browser layer:
/// the session cookie and the CSRF nonce), and browsers send every cookie
/// of the site in it. `pairs_match_a_plain_split` pins the result to the
/// obvious `split`/`position` version.
pub fn pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = Some(header);
    std::iter::from_fn(move || {
        loop {
            let r = rest?;
            let (pair, next) = match memchr::memchr(b';', r) {
                Some(i) => (&r[..i], Some(&r[i + 1..])),
                None => (r, None),
            };
            rest = next;
            let Some(eq) = memchr::memchr(b'=', pair) else {
                continue;
            };
            let (name, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
            if !name.is_empty() {
                return Some((name, value));
            }
        }
    })
}

/// Every value of the cookie `name` in `headers` (all `Cookie` header
/// values of the request: HTTP/2 may split the cookies over several), in
/// order, repeats included.
pub fn values<'h, 'n, I>(headers: I, name: &'n [u8]) -> impl Iterator<Item = &'h [u8]> + use<'h, 'n, I>
where
    I: IntoIterator<Item = &'h [u8]>,
{
    headers
        .into_iter()
        .flat_map(pairs)
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// What a request presents for the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCookie<'h> {
    /// No cookie of that name.
    Absent,
    /// One value, possibly sent several times.
    One(&'h [u8]),
    /// Several different values. A browser holds two cookies of one name
    /// only when one was set for another path or a parent domain: a sibling
    /// site may have planted it (cookie tossing). Which one is the user's
    /// cannot be told, so the request has no session; taking the first that
    /// verifies would let the planted one win.
    Conflicting,
}

/// The session cookie `name` under the duplicate rule: one value (sent once
/// or repeated) or [`SessionCookie::Conflicting`], never a guess.
pub fn session_cookie<'h, I>(headers: I, name: &[u8]) -> SessionCookie<'h>
where
    I: IntoIterator<Item = &'h [u8]>,
{
    let [found] = session_cookies(headers, [name]);
    found
}

/// [`session_cookie`] for each of several names, in one pass over the
/// headers (the browser layer reads the session cookie and the CSRF
/// nonce of every request).
pub fn session_cookies<'h, I, const N: usize>(headers: I, names: [&[u8]; N]) -> [SessionCookie<'h>; N]
where
    I: IntoIterator<Item = &'h [u8]>,
{
    let mut found = [SessionCookie::Absent; N];
    for (n, v) in headers.into_iter().flat_map(pairs) {
        for (name, seen) in names.iter().zip(found.iter_mut()) {
            if n == *name {
                *seen = match *seen {
                    SessionCookie::Absent => SessionCookie::One(v),
                    SessionCookie::One(f) if f == v => SessionCookie::One(f),
                    SessionCookie::One(_) | SessionCookie::Conflicting => SessionCookie::Conflicting,
                };
            }
        }
    }
    found
}

/// The distinct values of the cookie `name`, in order, at most `max` of
/// them: what a logout revokes (every session the browser may hold here).
pub fn distinct_values<'h, I>(headers: I, name: &[u8], max: usize) -> Vec<&'h [u8]>
where
    I: IntoIterator<Item = &'h [u8]>,
{
    let mut out: Vec<&[u8]> = Vec::new();
    for v in values(headers, name) {
        if out.len() >= max {
            break;
        }
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NAME: &[u8] = b"__Host-tessera";

    fn one(h: &[u8]) -> SessionCookie<'_> {
        session_cookie([h], NAME)
    }

    /// The straightforward reading `pairs` must agree with.
    fn plain_pairs(header: &[u8]) -> Vec<(&[u8], &[u8])> {
        header
            .split(|&b| b == b';')
            .filter_map(|pair| {
                let eq = pair.iter().position(|&b| b == b'=')?;
                let (name, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
                (!name.is_empty()).then_some((name, value))
            })
            .collect()
    }

    /// The duplicate rule read plainly, for one name.
    fn plain_session_cookie<'h>(header: &'h [u8], name: &[u8]) -> SessionCookie<'h> {
        let vs: Vec<&[u8]> = plain_pairs(header)
            .into_iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .collect();
        match vs.first() {
            None => SessionCookie::Absent,
            Some(f) if vs.iter().all(|v| v == f) => SessionCookie::One(f),
            Some(_) => SessionCookie::Conflicting,
        }
    }

    proptest! {
        #[test]
        fn several_names_in_one_pass_read_as_each_alone(header in proptest::collection::vec(
            prop_oneof![Just(b';'), Just(b'='), Just(b' '), Just(b'a'), Just(b'b'), Just(b'1'), Just(b'2')],
            0..48,
        )) {
            let got = session_cookies([&header[..]], [&b"a"[..], &b"b"[..], &b"ab"[..]]);
            let want = [b"a".as_slice(), b"b", b"ab"].map(|n| plain_session_cookie(&header, n));
            prop_assert_eq!(got, want);
        }

        #[test]
        fn pairs_match_a_plain_split(header in proptest::collection::vec(
            prop_oneof![Just(b';'), Just(b'='), Just(b' '), Just(b'\t'), Just(b'a'), Just(b'b'), any::<u8>()],
            0..64,
        )) {
            prop_assert_eq!(pairs(&header).collect::<Vec<_>>(), plain_pairs(&header));
        }
    }

    #[test]
    fn pairs_split_like_browsers_send_them() {
        let got: Vec<_> = pairs(b" a=1;b = 2 ;;noeq; =x;c=;d=e=f\t").collect();
        let want: Vec<(&[u8], &[u8])> = vec![(b"a", b"1"), (b"b", b"2"), (b"c", b""), (b"d", b"e=f")];
        assert_eq!(got, want);
        assert_eq!(pairs(b"").count(), 0);
    }

    #[test]
    fn a_non_ascii_pair_hides_nothing_beside_it() {
        // The defect: one byte outside visible ASCII in another cookie made
        // the whole header unreadable, so the session cookie was "absent".
        for header in [
            "__Host-tessera=tss_abc; x=\u{e9}".as_bytes(),
            "x=\u{e9}; __Host-tessera=tss_abc".as_bytes(),
            b"\xff\xfe=\x00\x01; __Host-tessera=tss_abc; y=\x80\x81",
            b"garbage \xc3; __Host-tessera=tss_abc",
        ] {
            assert_eq!(one(header), SessionCookie::One(b"tss_abc"), "{header:?}");
        }
    }

    #[test]
    fn duplicates_are_one_value_or_a_conflict() {
        assert_eq!(one(b"a=b"), SessionCookie::Absent);
        assert_eq!(
            one(b"__Host-tessera=tss_a; __Host-tessera=tss_a"),
            SessionCookie::One(b"tss_a")
        );
        assert_eq!(
            one(b"__Host-tessera=tss_a; __Host-tessera=tss_b"),
            SessionCookie::Conflicting
        );
        // Across header values too (HTTP/2 splits cookies).
        let split: [&[u8]; 2] = [b"__Host-tessera=tss_a", b"x=1; __Host-tessera=tss_b"];
        assert_eq!(session_cookie(split, NAME), SessionCookie::Conflicting);
        // A garbled second value is a different value: still a conflict.
        assert_eq!(
            one("__Host-tessera=tss_a; __Host-tessera=\u{e9}".as_bytes()),
            SessionCookie::Conflicting
        );
        // Names are case-sensitive and must match exactly.
        assert_eq!(
            one(b"__host-tessera=tss_a; __Host-tesseraX=tss_b; tessera=tss_c"),
            SessionCookie::Absent
        );
    }

    #[test]
    fn distinct_values_keep_order_and_bound() {
        let h: &[u8] = b"n=a; n=b; n=a; n=c; n=d";
        assert_eq!(distinct_values([h], b"n", 8), [&b"a"[..], b"b", b"c", b"d"]);
        assert_eq!(distinct_values([h], b"n", 2), [&b"a"[..], b"b"]);
        assert!(distinct_values([h], b"m", 2).is_empty());
    }

    proptest! {
        /// Whatever other pairs surround it, with whatever bytes, the
        /// session cookie is found, and only it.
        #[test]
        fn the_session_cookie_survives_any_neighbours(
            before in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 0..4),
            after in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 0..4),
            token in "tss_[A-Za-z0-9_-]{1,43}",
        ) {
            let mut header = Vec::new();
            let own = format!("{}={token}", std::str::from_utf8(NAME).unwrap_or_default());
            // Neighbours may hold any byte but the separator, and never our
            // name (a second value of it would be a conflict, rightly).
            let clean = |p: &Vec<u8>| -> Vec<u8> {
                let mut p: Vec<u8> = p.iter().copied().filter(|&b| b != b';').collect();
                p.insert(0, b'x');
                p
            };
            for p in &before {
                header.extend(clean(p));
                header.push(b';');
            }
            header.extend_from_slice(own.as_bytes());
            for p in &after {
                header.push(b';');
                header.extend(clean(p));
            }
            prop_assert_eq!(one(&header), SessionCookie::One(token.as_bytes()));
        }

        #[test]
        fn never_panics_and_agrees_with_values(header in proptest::collection::vec(any::<u8>(), 0..256)) {
            let all: Vec<&[u8]> = values([header.as_slice()], b"n").collect();
            match session_cookie([header.as_slice()], b"n") {
                SessionCookie::Absent => prop_assert!(all.is_empty()),
                SessionCookie::One(v) => prop_assert!(!all.is_empty() && all.iter().all(|x| *x == v)),
                SessionCookie::Conflicting => prop_assert!(all.iter().any(|x| *x != all[0])),
            }
        }
    }
}
