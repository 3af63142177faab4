//! Origins as browsers serialize them in `Origin` (RFC 6454 §6.2):
//! `scheme://host[:port]`, scheme `http` or `https`, no default port, no
//! path, no user name. The same rule reads an allowed origin from
//! configuration and an `Origin` header, so one never matches the other by
//! a normalisation the other did not make.

/// An origin that is not written the way browsers send one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an origin as browsers send it: scheme://host[:port] with scheme http or https, \
     no path or trailing slash, no user name, no default port"
)]
pub struct OriginError(pub String);

/// An allowed origin from configuration, in the lowercase form browsers
/// send (`HTTPS://App.Example` is accepted as `https://app.example`).
pub fn parse_allowed(s: &str) -> Result<String, OriginError> {
    serialized(s).ok_or_else(|| OriginError(s.to_owned()))
}

/// `s` as its lowercase serialization if it is exactly an origin's
/// serialization up to ASCII case; `None` for anything a browser would not
/// send (`null`, a path, a trailing slash, `:443` on https, `user@`, IDN in
/// Unicode, a wildcard).
pub(crate) fn serialized(s: &str) -> Option<String> {
    let url = url::Url::parse(s).ok()?;
    let ser = origin_of(&url)?;
    ser.eq_ignore_ascii_case(s).then_some(ser)
}

/// The origin of a URL such as a `Referer`, if it is an http(s) one.
pub(crate) fn of_url(s: &str) -> Option<String> {
    origin_of(&url::Url::parse(s).ok()?)
}

fn origin_of(url: &url::Url) -> Option<String> {
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    // `url` keeps characters in a host that no DNS name has (`*`, `_`);
    // such an "origin" can only be a mistake or a trick.
    if let Some(url::Host::Domain(d)) = url.host()
        && !d
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return None;
    }
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_a_browser_sends_is_an_origin() {
        for (input, want) in [
            ("https://app.example", "https://app.example"),
            ("HTTPS://App.Example", "https://app.example"),
            ("http://localhost:3000", "http://localhost:3000"),
            ("https://[::1]:8443", "https://[::1]:8443"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
        ] {
            assert_eq!(parse_allowed(input).as_deref(), Ok(want), "{input}");
        }
        for bad in [
            "",
            "*",
            "null",
            "app.example",
            "https://",
            "https://app.example/",
            "https://app.example/path",
            "https://app.example?q",
            "https://app.example:443",
            "http://app.example:80",
            "https://app.example:x",
            "https://user@app.example",
            "ftp://app.example",
            "ws://app.example",
            "file:///etc/passwd",
            " https://app.example",
            "https://*.example",
            "https://a_b.example",
            "https://bücher.example",
        ] {
            assert!(parse_allowed(bad).is_err(), "{bad:?}");
        }
        let e = parse_allowed("https://app.example/").unwrap_err().to_string();
        assert!(e.contains("no path or trailing slash"), "{e}");
    }

    #[test]
    fn a_referer_gives_its_origin() {
        assert_eq!(
            of_url("https://app.example/form?x=1#y").as_deref(),
            Some("https://app.example")
        );
        assert_eq!(
            of_url("https://app.example:443/").as_deref(),
            Some("https://app.example")
        );
        assert_eq!(of_url("about:blank"), None);
        assert_eq!(of_url("/relative"), None);
    }
}
