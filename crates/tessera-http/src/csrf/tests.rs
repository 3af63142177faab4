//! The rule of [`judge`] row by row; the parity test in
//! `tessera-server/tests/integration/parity.rs` sends such rows through
//! both faces. Tables are one row a line (`rustfmt::skip`).

use super::*;

const HOST: &str = "app.example";
const POST: Option<&str> = Some("POST");

type Row = (
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
    Verdict,
);

fn ctx(
    method: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
) -> FetchContext<'static> {
    let get = |n: &str| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_bytes());
    FetchContext {
        method: method.map(str::as_bytes),
        sec_fetch_site: get("sec-fetch-site"),
        origin: get("origin"),
        referer: get("referer"),
        host: get("host").or(Some(HOST.as_bytes())),
        forwarded_host: get("x-forwarded-host"),
        forwarded_proto: get("x-forwarded-proto"),
    }
}

#[track_caller]
fn check(policy: &CsrfPolicy<'_>, rows: &[Row]) {
    for (i, (method, headers, want)) in rows.iter().enumerate() {
        assert_eq!(
            judge(&ctx(*method, headers), policy),
            *want,
            "row {i}: {method:?} {headers:?}"
        );
    }
}

use Evidence as E;
use Reason as R;
use Verdict::{Allow, Refuse};

const CROSS: &[(&str, &str)] = &[
    ("sec-fetch-site", "cross-site"),
    ("origin", "https://evil.example"),
];

#[rustfmt::skip]
#[test]
fn cs_02_safe_methods_and_fetch_metadata() {
    check(&CsrfPolicy::default(), &[
        (Some("GET"), CROSS, Allow(E::SafeMethod)),
        (Some("HEAD"), CROSS, Allow(E::SafeMethod)),
        (Some("OPTIONS"), CROSS, Allow(E::SafeMethod)),
        // TRACE and lower-case methods are judged, and so is an unknown one.
        (Some("TRACE"), CROSS, Refuse(R::CrossSite)),
        (Some("get"), CROSS, Refuse(R::CrossSite)),
        (None, CROSS, Refuse(R::CrossSite)),
        (POST, &[("sec-fetch-site", "same-origin")], Allow(E::FetchMetadata)),
        (POST, &[("sec-fetch-site", "none")], Allow(E::FetchMetadata)),
        (POST, &[("sec-fetch-site", "same-site")], Refuse(R::SameSite)),
        (POST, &[("sec-fetch-site", "cross-site")], Refuse(R::CrossSite)),
        // Browsers send the values in lower case; anything else is unknown.
        (POST, &[("sec-fetch-site", "Same-Origin")], Refuse(R::UnknownFetchSite)),
        (POST, &[("sec-fetch-site", "")], Refuse(R::UnknownFetchSite)),
        (POST, &[("sec-fetch-site", "same-origin ")], Refuse(R::UnknownFetchSite)),
        // Fetch Metadata wins over the origin headers either way.
        (POST, &[("sec-fetch-site", "same-origin"), ("origin", "https://evil.example")], Allow(E::FetchMetadata)),
        (POST, &[("sec-fetch-site", "cross-site"), ("origin", "https://app.example")], Refuse(R::CrossSite)),
    ]);
}

#[rustfmt::skip]
#[test]
fn cs_02_same_site_needs_the_switch_not_a_listed_origin() {
    let listed = ["https://admin.example".to_owned()];
    let p = CsrfPolicy { allowed_origins: &listed, ..CsrfPolicy::default() };
    let from_listed: &[(&str, &str)] = &[("sec-fetch-site", "same-site"), ("origin", "https://admin.example")];
    check(&p, &[(POST, from_listed, Refuse(R::SameSite))]);
    let p = CsrfPolicy { allow_same_site: true, ..p };
    check(&p, &[
        (POST, from_listed, Allow(E::FetchMetadata)),
        (POST, &[("sec-fetch-site", "cross-site")], Refuse(R::CrossSite)),
    ]);
}

#[rustfmt::skip]
#[test]
fn cs_03_origin_then_referer() {
    check(&CsrfPolicy::default(), &[
        (POST, &[("origin", "https://app.example")], Allow(E::Origin)),
        (POST, &[("origin", "http://app.example")], Allow(E::Origin)),
        (POST, &[("origin", "HTTPS://APP.EXAMPLE")], Allow(E::Origin)),
        (POST, &[("origin", "https://evil.example")], Refuse(R::OriginNotAllowed)),
        (POST, &[("origin", "https://app.example.evil")], Refuse(R::OriginNotAllowed)),
        (POST, &[("origin", "https://app.example:8443")], Refuse(R::OriginNotAllowed)),
        (POST, &[("origin", "null")], Refuse(R::NullOrigin)),
        // `null` refuses even with a good Referer beside it.
        (POST, &[("origin", "null"), ("referer", "https://app.example/form")], Refuse(R::NullOrigin)),
        (POST, &[("origin", "")], Refuse(R::MalformedOrigin)),
        (POST, &[("origin", "https://app.example/")], Refuse(R::MalformedOrigin)),
        (POST, &[("origin", "https://app.example:443")], Refuse(R::MalformedOrigin)),
        (POST, &[("origin", "https://u@app.example")], Refuse(R::MalformedOrigin)),
        (POST, &[("origin", "ftp://app.example")], Refuse(R::MalformedOrigin)),
        (POST, &[("referer", "https://app.example/form?x")], Allow(E::Referer)),
        (POST, &[("referer", "https://evil.example/")], Refuse(R::RefererNotAllowed)),
        (POST, &[("referer", "not a url")], Refuse(R::RefererNotAllowed)),
        (POST, &[], Allow(E::None)),
        // The default port of the Host is ignored.
        (POST, &[("origin", "https://app.example"), ("host", "app.example:443")], Allow(E::Origin)),
    ]);
}

#[rustfmt::skip]
#[test]
fn cs_03_listed_origins_replace_the_requests_own() {
    let listed = ["https://admin.example".to_owned()];
    check(&CsrfPolicy { allowed_origins: &listed, ..CsrfPolicy::default() }, &[
        (POST, &[("origin", "https://admin.example")], Allow(E::Origin)),
        (POST, &[("origin", "https://ADMIN.example")], Allow(E::Origin)),
        (POST, &[("origin", "https://app.example")], Refuse(R::OriginNotAllowed)),
        (POST, &[("referer", "https://admin.example/x")], Allow(E::Referer)),
        (POST, &[("referer", "https://app.example/x")], Refuse(R::RefererNotAllowed)),
    ]);
}

#[rustfmt::skip]
#[test]
fn cs_03_forwarded_host_and_proto_only_when_trusted() {
    const TRAEFIK: &[(&str, &str)] = &[
        ("host", "tessera:8080"),
        ("x-forwarded-host", "app.example"),
        ("x-forwarded-proto", "https"),
        ("origin", "https://app.example"),
    ];
    const HTTP_ORIGIN: &[(&str, &str)] = &[("x-forwarded-proto", "https"), ("origin", "http://app.example")];
    let trusted = CsrfPolicy { trust_forwarded_headers: true, ..CsrfPolicy::default() };
    check(&trusted, &[
        (POST, TRAEFIK, Allow(E::Origin)),
        (POST, HTTP_ORIGIN, Refuse(R::OriginNotAllowed)),
        // A chain of proxies: the first scheme is the browser's.
        (POST, &[("x-forwarded-proto", "HTTPS, http"), ("origin", "https://app.example")], Allow(E::Origin)),
        (POST, &[("host", "tessera:8080"), ("x-forwarded-host", "app.example"), ("origin", "https://tessera:8080")], Refuse(R::OriginNotAllowed)),
    ]);
    // Untrusted, the forwarded headers are not read at all.
    check(&CsrfPolicy::default(), &[
        (POST, TRAEFIK, Refuse(R::OriginNotAllowed)),
        (POST, HTTP_ORIGIN, Allow(E::Origin)),
    ]);
}

#[test]
fn no_host_means_no_own_origin() {
    let ctx = FetchContext {
        method: Some(b"POST"),
        origin: Some(b"https://app.example"),
        ..FetchContext::default()
    };
    assert_eq!(judge(&ctx, &CsrfPolicy::default()), Refuse(R::OriginNotAllowed));
    // HTTP/2 carries the host in the URI's authority.
    let h2 = HeaderMap::new();
    let ctx = FetchContext::from_headers(&h2, Some(b"POST"), Some("app.example"));
    assert_eq!(ctx.host, Some(&b"app.example"[..]));
    assert_eq!(judge(&ctx, &CsrfPolicy::default()), Allow(E::None));
}
