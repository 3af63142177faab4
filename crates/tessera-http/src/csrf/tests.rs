//! The rule of [`judge`] row by row; the parity test in
//! `tessera-server/tests/integration/parity.rs` sends such rows through
//! both faces.

use super::*;

const HOST: &str = "app.example";

struct Row {
    method: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
}

fn ctx<'h>(row: &'h Row) -> FetchContext<'h> {
    let get = |n: &str| {
        row.headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_bytes())
    };
    FetchContext {
        method: row.method.map(str::as_bytes),
        sec_fetch_site: get("sec-fetch-site"),
        origin: get("origin"),
        referer: get("referer"),
        host: get("host").or(Some(HOST.as_bytes())),
        forwarded_host: get("x-forwarded-host"),
        forwarded_proto: get("x-forwarded-proto"),
    }
}

fn post(headers: &'static [(&'static str, &'static str)]) -> Row {
    Row {
        method: Some("POST"),
        headers,
    }
}

use Evidence as E;
use Reason as R;
use Verdict::{Allow, Refuse};

#[track_caller]
fn check(policy: &CsrfPolicy<'_>, rows: &[(Row, Verdict)]) {
    for (i, (row, want)) in rows.iter().enumerate() {
        assert_eq!(
            judge(&ctx(row), policy),
            *want,
            "row {i}: {:?} {:?}",
            row.method,
            row.headers
        );
    }
}

#[test]
fn cs_02_safe_methods_and_fetch_metadata() {
    let p = CsrfPolicy::default();
    let cross = &[
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ][..];
    check(
        &p,
        &[
            (
                Row {
                    method: Some("GET"),
                    headers: cross,
                },
                Allow(E::SafeMethod),
            ),
            (
                Row {
                    method: Some("HEAD"),
                    headers: cross,
                },
                Allow(E::SafeMethod),
            ),
            (
                Row {
                    method: Some("OPTIONS"),
                    headers: cross,
                },
                Allow(E::SafeMethod),
            ),
            // TRACE and lower-case methods are judged.
            (
                Row {
                    method: Some("TRACE"),
                    headers: cross,
                },
                Refuse(R::CrossSite),
            ),
            (
                Row {
                    method: Some("get"),
                    headers: cross,
                },
                Refuse(R::CrossSite),
            ),
            // No method known: judged.
            (
                Row {
                    method: None,
                    headers: cross,
                },
                Refuse(R::CrossSite),
            ),
            (
                post(&[("sec-fetch-site", "same-origin")]),
                Allow(E::FetchMetadata),
            ),
            (post(&[("sec-fetch-site", "none")]), Allow(E::FetchMetadata)),
            (post(&[("sec-fetch-site", "same-site")]), Refuse(R::SameSite)),
            (post(&[("sec-fetch-site", "cross-site")]), Refuse(R::CrossSite)),
            // Browsers send the values in lower case; anything else is unknown.
            (
                post(&[("sec-fetch-site", "Same-Origin")]),
                Refuse(R::UnknownFetchSite),
            ),
            (post(&[("sec-fetch-site", "")]), Refuse(R::UnknownFetchSite)),
            (
                post(&[("sec-fetch-site", "same-origin ")]),
                Refuse(R::UnknownFetchSite),
            ),
            // Fetch Metadata wins over the origin headers either way.
            (
                post(&[
                    ("sec-fetch-site", "same-origin"),
                    ("origin", "https://evil.example"),
                ]),
                Allow(E::FetchMetadata),
            ),
            (
                post(&[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://app.example"),
                ]),
                Refuse(R::CrossSite),
            ),
        ],
    );
}

#[test]
fn cs_02_same_site_needs_the_switch_not_a_listed_origin() {
    let listed = ["https://admin.example".to_owned()];
    let p = CsrfPolicy {
        allowed_origins: &listed,
        ..CsrfPolicy::default()
    };
    let from_listed = &[
        ("sec-fetch-site", "same-site"),
        ("origin", "https://admin.example"),
    ][..];
    check(&p, &[(post(from_listed), Refuse(R::SameSite))]);
    let p = CsrfPolicy {
        allow_same_site: true,
        ..p
    };
    check(
        &p,
        &[
            (post(from_listed), Allow(E::FetchMetadata)),
            (post(&[("sec-fetch-site", "cross-site")]), Refuse(R::CrossSite)),
        ],
    );
}

#[test]
fn cs_03_origin_then_referer() {
    let p = CsrfPolicy::default();
    check(
        &p,
        &[
            (post(&[("origin", "https://app.example")]), Allow(E::Origin)),
            (post(&[("origin", "http://app.example")]), Allow(E::Origin)),
            (post(&[("origin", "HTTPS://APP.EXAMPLE")]), Allow(E::Origin)),
            (
                post(&[("origin", "https://evil.example")]),
                Refuse(R::OriginNotAllowed),
            ),
            (
                post(&[("origin", "https://app.example.evil")]),
                Refuse(R::OriginNotAllowed),
            ),
            (
                post(&[("origin", "https://app.example:8443")]),
                Refuse(R::OriginNotAllowed),
            ),
            (post(&[("origin", "null")]), Refuse(R::NullOrigin)),
            // `null` refuses even with a good Referer beside it.
            (
                post(&[("origin", "null"), ("referer", "https://app.example/form")]),
                Refuse(R::NullOrigin),
            ),
            (post(&[("origin", "")]), Refuse(R::MalformedOrigin)),
            (
                post(&[("origin", "https://app.example/")]),
                Refuse(R::MalformedOrigin),
            ),
            (
                post(&[("origin", "https://app.example:443")]),
                Refuse(R::MalformedOrigin),
            ),
            (
                post(&[("origin", "https://u@app.example")]),
                Refuse(R::MalformedOrigin),
            ),
            (
                post(&[("origin", "ftp://app.example")]),
                Refuse(R::MalformedOrigin),
            ),
            (
                post(&[("referer", "https://app.example/form?x")]),
                Allow(E::Referer),
            ),
            (
                post(&[("referer", "https://evil.example/")]),
                Refuse(R::RefererNotAllowed),
            ),
            (post(&[("referer", "not a url")]), Refuse(R::RefererNotAllowed)),
            (post(&[]), Allow(E::None)),
            // The default port of the Host is ignored.
            (
                post(&[("origin", "https://app.example"), ("host", "app.example:443")]),
                Allow(E::Origin),
            ),
        ],
    );
}

#[test]
fn cs_03_listed_origins_replace_the_requests_own() {
    let listed = ["https://admin.example".to_owned()];
    let p = CsrfPolicy {
        allowed_origins: &listed,
        ..CsrfPolicy::default()
    };
    check(
        &p,
        &[
            (post(&[("origin", "https://admin.example")]), Allow(E::Origin)),
            (post(&[("origin", "https://ADMIN.example")]), Allow(E::Origin)),
            (
                post(&[("origin", "https://app.example")]),
                Refuse(R::OriginNotAllowed),
            ),
            (post(&[("referer", "https://admin.example/x")]), Allow(E::Referer)),
            (
                post(&[("referer", "https://app.example/x")]),
                Refuse(R::RefererNotAllowed),
            ),
        ],
    );
}

#[test]
fn cs_03_forwarded_host_and_proto_only_when_trusted() {
    let traefik = &[
        ("host", "tessera:8080"),
        ("x-forwarded-host", "app.example"),
        ("x-forwarded-proto", "https"),
        ("origin", "https://app.example"),
    ][..];
    let http_origin = &[("x-forwarded-proto", "https"), ("origin", "http://app.example")][..];
    let chained = &[
        ("x-forwarded-proto", "HTTPS, http"),
        ("origin", "https://app.example"),
    ][..];
    let trusted = CsrfPolicy {
        trust_forwarded_headers: true,
        ..CsrfPolicy::default()
    };
    check(
        &trusted,
        &[
            (post(traefik), Allow(E::Origin)),
            (post(http_origin), Refuse(R::OriginNotAllowed)),
            (post(chained), Allow(E::Origin)),
            (
                post(&[
                    ("x-forwarded-host", "app.example"),
                    ("origin", "https://tessera:8080"),
                    ("host", "tessera:8080"),
                ]),
                Refuse(R::OriginNotAllowed),
            ),
        ],
    );
    let untrusted = CsrfPolicy::default();
    check(
        &untrusted,
        &[
            // Host is Tessera's own, and the forwarded one is not believed.
            (post(traefik), Refuse(R::OriginNotAllowed)),
            (post(http_origin), Allow(E::Origin)),
        ],
    );
}

#[test]
fn no_host_means_no_own_origin() {
    let ctx = FetchContext {
        method: Some(b"POST"),
        origin: Some(b"https://app.example"),
        ..FetchContext::default()
    };
    assert_eq!(judge(&ctx, &CsrfPolicy::default()), Refuse(R::OriginNotAllowed));
    let h2 = HeaderMap::new();
    let ctx = FetchContext::from_headers(&h2, Some(b"POST"), Some("app.example"));
    assert_eq!(ctx.host, Some(&b"app.example"[..]));
}
