//! Parity of the two browser faces (SPEC §5, "one rule per concern"): every
//! row of one table goes (a) through the service's `GET /auth/verify`, the
//! row's method in `X-Forwarded-Method` as a proxy sends it, and (b) through
//! an axum app behind the library's `SessionLayer`, as that request itself.
//! Both run in process over one store, one clock and the same sessions, and
//! both must answer the row's verdict: allowed, refused as CSRF, or refused
//! for want of a valid session. The rules are `tessera_http`'s; this test
//! holds the two adapters to them (`docs/http-rules.md`).
//!
//! The library app stands where the service does: behind a proxy that sets
//! `X-Forwarded-Host`/`-Proto` (`trust_forwarded_headers`). A row marked
//! `token` has no Fetch Metadata, `Origin` or `Referer`: the shared rule
//! allows it on no evidence, the service lets it through, and the library
//! asks for its CSRF token, which a page of the app sends; each such row is
//! also sent to the library without the token, which must refuse it. Rows
//! without a valid cookie and without evidence are therefore left out: the
//! library refuses them for the missing token where the service answers 401.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use axum::routing::{any, get};
use tessera::browser::{
    CookieConfig, CsrfConfig, CsrfKey, PublicSession, RequireSession, Session, SessionLayer,
};
use tessera::core::{
    AuthInput, Clock, CreateSession, ManualClock, MemoryStore, RevokeReason, SessionPolicy, Sessions, Store,
    Timestamp,
};
use tessera_server::config::Config;
use tower::ServiceExt;

const NAME: &str = "__Host-tessera";
const LISTED: &str = "https://admin.example";

/// What a face answered, reduced to the three verdicts both faces share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// 200: the session was accepted.
    Allowed,
    /// 403 `csrf_rejected`.
    Csrf,
    /// 401: no session cookie, or one that is invalid, conflicting, revoked.
    NoSession,
}
use Verdict::{Allowed, Csrf, NoSession};

/// The CSRF policy both faces are configured with for a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// No listed origin: the request's own is the one accepted.
    Own,
    /// `allowed_origins = ["https://admin.example"]`.
    Listed,
    /// `allow_same_site = true`.
    SameSite,
}
use Policy::{Listed, Own, SameSite};

/// The `Cookie` header(s) of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Jar {
    None,
    Valid,
    /// The valid value twice in one header.
    Twice,
    /// The valid value beside another cookie, over two `Cookie` headers.
    Split,
    /// The valid value and another session's: a planted cookie.
    Conflicting,
    Garbage,
    Empty,
    NotUtf8,
    /// The valid value beside another application's non-ASCII cookie.
    NonAsciiNeighbour,
    /// The valid value under another name.
    WrongName,
    Revoked,
}

struct Row {
    policy: Policy,
    method: &'static str,
    jar: Jar,
    headers: &'static [(&'static str, &'static str)],
    /// The library sends its CSRF token (see the module docs).
    token: bool,
    expect: Verdict,
}

const fn row(
    policy: Policy,
    method: &'static str,
    jar: Jar,
    headers: &'static [(&'static str, &'static str)],
    expect: Verdict,
) -> Row {
    Row {
        policy,
        method,
        jar,
        headers,
        token: false,
        expect,
    }
}

const fn with_token(method: &'static str, headers: &'static [(&'static str, &'static str)]) -> Row {
    Row {
        policy: Own,
        method,
        jar: Jar::Valid,
        headers,
        token: true,
        expect: Allowed,
    }
}

const SAME_ORIGIN: &[(&str, &str)] = &[("sec-fetch-site", "same-origin")];
const CROSS_SITE: &[(&str, &str)] = &[("sec-fetch-site", "cross-site")];
const NOTHING: &[(&str, &str)] = &[];

/// Host is `app.example` unless a row says otherwise. One row a line, so
/// the table reads as one.
#[rustfmt::skip]
const ROWS: &[Row] = &[
    // Safe methods pass from anywhere; TRACE and lower-case methods are judged.
    row(Own, "GET", Jar::Valid, &[("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")], Allowed),
    row(Own, "HEAD", Jar::Valid, CROSS_SITE, Allowed),
    row(Own, "OPTIONS", Jar::Valid, CROSS_SITE, Allowed),
    row(Own, "TRACE", Jar::Valid, CROSS_SITE, Csrf),
    row(Own, "get", Jar::Valid, CROSS_SITE, Csrf),
    row(Own, "post", Jar::Valid, SAME_ORIGIN, Allowed),
    row(Own, "post", Jar::Valid, CROSS_SITE, Csrf),
    // Every Sec-Fetch-Site value, as browsers send them and not.
    row(Own, "POST", Jar::Valid, SAME_ORIGIN, Allowed),
    row(Own, "PUT", Jar::Valid, &[("sec-fetch-site", "none")], Allowed),
    row(Own, "DELETE", Jar::Valid, &[("sec-fetch-site", "same-site")], Csrf),
    row(Own, "PATCH", Jar::Valid, CROSS_SITE, Csrf),
    row(Own, "POST", Jar::Valid, &[("sec-fetch-site", "Same-Origin")], Csrf),
    row(Own, "POST", Jar::Valid, &[("sec-fetch-site", "CROSS-SITE")], Csrf),
    row(Own, "POST", Jar::Valid, &[("sec-fetch-site", "bogus")], Csrf),
    row(Own, "POST", Jar::Valid, &[("sec-fetch-site", "")], Csrf),
    row(Own, "POST", Jar::Valid, &[("sec-fetch-site", "same-origin"), ("origin", "https://evil.example")], Allowed),
    row(Own, "POST", Jar::Valid, &[("sec-fetch-site", "cross-site"), ("origin", "https://app.example")], Csrf),
    // Origin, then Referer, without Fetch Metadata.
    row(Own, "POST", Jar::Valid, &[("origin", "https://app.example")], Allowed),
    row(Own, "POST", Jar::Valid, &[("origin", "HTTPS://APP.EXAMPLE")], Allowed),
    row(Own, "POST", Jar::Valid, &[("origin", "https://evil.example")], Csrf),
    row(Own, "POST", Jar::Valid, &[("origin", "https://app.example.evil")], Csrf),
    row(Own, "POST", Jar::Valid, &[("origin", "null")], Csrf),
    row(Own, "POST", Jar::Valid, &[("origin", "null"), ("referer", "https://app.example/form")], Csrf),
    row(Own, "POST", Jar::Valid, &[("origin", "https://app.example/")], Csrf),
    row(Own, "POST", Jar::Valid, &[("origin", "https://app.example:443")], Csrf),
    row(Own, "POST", Jar::Valid, &[("origin", "https://u@app.example")], Csrf),
    row(Own, "POST", Jar::Valid, &[("origin", "not an origin")], Csrf),
    row(Own, "POST", Jar::Valid, &[("referer", "https://app.example/form?x=1")], Allowed),
    row(Own, "POST", Jar::Valid, &[("referer", "https://evil.example/")], Csrf),
    row(Own, "POST", Jar::Valid, &[("referer", "::not a url::")], Csrf),
    with_token("POST", NOTHING),
    with_token("DELETE", NOTHING),
    // A listed origin replaces the request's own and opens nothing else.
    row(Listed, "POST", Jar::Valid, &[("origin", LISTED)], Allowed),
    row(Listed, "POST", Jar::Valid, &[("referer", "https://admin.example/x")], Allowed),
    row(Listed, "POST", Jar::Valid, &[("origin", "https://app.example")], Csrf),
    row(Listed, "POST", Jar::Valid, &[("sec-fetch-site", "same-site"), ("origin", LISTED)], Csrf),
    row(Listed, "POST", Jar::Valid, &[("sec-fetch-site", "cross-site"), ("origin", LISTED)], Csrf),
    row(Listed, "POST", Jar::Valid, SAME_ORIGIN, Allowed),
    row(SameSite, "POST", Jar::Valid, &[("sec-fetch-site", "same-site")], Allowed),
    row(SameSite, "POST", Jar::Valid, CROSS_SITE, Csrf),
    // The proxy's scheme and host.
    row(Own, "POST", Jar::Valid, &[("x-forwarded-proto", "https"), ("origin", "https://app.example")], Allowed),
    row(Own, "POST", Jar::Valid, &[("x-forwarded-proto", "http"), ("origin", "https://app.example")], Csrf),
    row(Own, "POST", Jar::Valid, &[("x-forwarded-proto", "https"), ("origin", "http://app.example")], Csrf),
    row(Own, "POST", Jar::Valid, &[("origin", "http://app.example")], Allowed),
    row(Own, "POST", Jar::Valid, &[("x-forwarded-proto", "https, http"), ("origin", "https://app.example")], Allowed),
    row(Own, "POST", Jar::Valid, &[("host", "tessera:8080"), ("x-forwarded-host", "app.example"), ("x-forwarded-proto", "https"), ("origin", "https://app.example")], Allowed),
    row(Own, "POST", Jar::Valid, &[("host", "tessera:8080"), ("x-forwarded-host", "app.example"), ("origin", "https://tessera:8080")], Csrf),
    row(Own, "POST", Jar::Valid, &[("host", "app.example:443"), ("origin", "https://app.example")], Allowed),
    // Cookies: duplicates, conflicts, garbage; CSRF is judged first.
    row(Own, "POST", Jar::None, SAME_ORIGIN, NoSession),
    row(Own, "POST", Jar::None, CROSS_SITE, Csrf),
    row(Own, "POST", Jar::Twice, SAME_ORIGIN, Allowed),
    row(Own, "POST", Jar::Split, SAME_ORIGIN, Allowed),
    row(Own, "POST", Jar::Conflicting, SAME_ORIGIN, NoSession),
    row(Own, "POST", Jar::Conflicting, CROSS_SITE, Csrf),
    row(Own, "POST", Jar::Garbage, SAME_ORIGIN, NoSession),
    row(Own, "POST", Jar::Empty, &[("origin", "https://app.example")], NoSession),
    row(Own, "POST", Jar::NotUtf8, SAME_ORIGIN, NoSession),
    row(Own, "POST", Jar::NonAsciiNeighbour, SAME_ORIGIN, Allowed),
    row(Own, "POST", Jar::WrongName, SAME_ORIGIN, NoSession),
    row(Own, "POST", Jar::Revoked, SAME_ORIGIN, NoSession),
    row(Own, "GET", Jar::None, NOTHING, NoSession),
    row(Own, "GET", Jar::Conflicting, CROSS_SITE, NoSession),
    row(Own, "GET", Jar::Revoked, NOTHING, NoSession),
];

/// One face pair (service and library) configured with one policy.
struct Faces {
    service: Router,
    library: Router,
    /// The library's CSRF token for the valid session.
    token: String,
}

struct Fixture {
    store: Arc<dyn Store>,
    clock: ManualClock,
    valid: String,
    other: String,
    revoked: String,
    handle: String,
}

fn service_config(policy: Policy) -> Config {
    let mut c = Config {
        store: Some("memory://".into()),
        ..Config::default()
    };
    match policy {
        Own => {}
        Listed => c.forward_auth.allowed_origins = vec![LISTED.into()],
        SameSite => c.forward_auth.allow_same_site = true,
    }
    c
}

fn csrf_config(policy: Policy) -> CsrfConfig {
    let c = CsrfConfig::new()
        .key(CsrfKey::from_bytes(&[9; 32]))
        .trust_forwarded_headers(true);
    match policy {
        Own => c,
        Listed => c.allowed_origin(LISTED).unwrap(),
        SameSite => c.allow_same_site(true),
    }
}

fn library_app(f: &Fixture, policy: Policy) -> Router {
    let sessions = Sessions::new(
        f.store.clone(),
        Arc::new(f.clock.clone()),
        SessionPolicy::default(),
    );
    let layer = SessionLayer::new(sessions, CookieConfig::default()).with_csrf(csrf_config(policy));
    let protected = |RequireSession(s): RequireSession| async move { s.subject().unwrap_or_default() };
    Router::new()
        .route("/csrf", get(|s: Session| async move { s.csrf_token() }))
        .route(
            "/me",
            get(|RequireSession(s): RequireSession| async move {
                let rec = s.record().unwrap();
                serde_json::to_string(&PublicSession::of(&rec)).unwrap()
            }),
        )
        .route("/orders", any(protected))
        .layer(layer)
}

async fn fixture() -> Fixture {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
    let sessions = Sessions::new(store.clone(), Arc::new(clock.clone()), SessionPolicy::default());
    let login = |subject: &'static str| {
        let sessions = sessions.clone();
        async move {
            let issued = sessions
                .create(CreateSession {
                    subject: subject.into(),
                    auth: Some(AuthInput {
                        level: Some(1),
                        methods: vec!["pwd".into()],
                    }),
                    ..CreateSession::default()
                })
                .await
                .unwrap();
            (issued.token.expose().to_owned(), issued.session.handle.clone())
        }
    };
    let (valid, handle) = login("alice").await;
    let (other, _) = login("mallory").await;
    let (revoked, gone) = login("bob").await;
    sessions.revoke(&gone, RevokeReason::Logout).await.unwrap();
    Fixture {
        store,
        clock,
        valid,
        other,
        revoked,
        handle,
    }
}

impl Fixture {
    async fn faces(&self, policy: Policy) -> Faces {
        let library = library_app(self, policy);
        let service = tessera_server::app::build_with_clock(
            service_config(policy),
            self.store.clone(),
            Arc::new(self.clock.clone()),
        )
        .router;
        let r = send(
            &library,
            get_with_cookie("/csrf", &format!("{NAME}={}", self.valid)),
        )
        .await;
        assert_eq!(r.0, StatusCode::OK);
        Faces {
            service,
            library,
            token: r.2,
        }
    }

    /// The `Cookie` header values of a jar.
    fn cookies(&self, jar: Jar) -> Vec<HeaderValue> {
        let v = |s: String| HeaderValue::from_str(&s).unwrap();
        match jar {
            Jar::None => vec![],
            Jar::Valid => vec![v(format!("{NAME}={}", self.valid))],
            Jar::Twice => vec![v(format!("{NAME}={0}; {NAME}={0}", self.valid))],
            Jar::Split => vec![v("theme=dark".into()), v(format!("a=b; {NAME}={}", self.valid))],
            Jar::Conflicting => vec![v(format!("{NAME}={}; {NAME}={}", self.other, self.valid))],
            Jar::Garbage => vec![v(format!("{NAME}=garbage"))],
            Jar::Empty => vec![v(format!("{NAME}="))],
            Jar::NotUtf8 => vec![HeaderValue::from_bytes(b"__Host-tessera=tss_\xff\xfe").unwrap()],
            Jar::NonAsciiNeighbour => {
                let mut bytes = b"x=\xe9t\xe9; ".to_vec();
                bytes.extend_from_slice(format!("{NAME}={}", self.valid).as_bytes());
                vec![HeaderValue::from_bytes(&bytes).unwrap()]
            }
            Jar::WrongName => vec![v(format!("tessera={}", self.valid))],
            Jar::Revoked => vec![v(format!("{NAME}={}", self.revoked))],
        }
    }
}

fn get_with_cookie(uri: &str, cookie: &str) -> Request<Body> {
    Request::get(uri)
        .header("host", "app.example")
        .header("cookie", cookie)
        .header("sec-fetch-site", "same-origin")
        .body(Body::empty())
        .unwrap()
}

/// Status, problem code (if any), body.
async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Option<String>, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
    let body = String::from_utf8_lossy(&bytes).into_owned();
    let code = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned));
    (status, code, body)
}

fn verdict(face: &str, i: usize, (status, code, body): &(StatusCode, Option<String>, String)) -> Verdict {
    match (status.as_u16(), code.as_deref()) {
        (200, _) => Allowed,
        (403, Some("csrf_rejected")) => Csrf,
        (401, _) => NoSession,
        _ => panic!("row {i}: the {face} answered {status} {body}"),
    }
}

/// The request of a row: its method, headers and cookies; `extra` on top.
fn request(
    row: &Row,
    method: &str,
    uri: &str,
    cookies: &[HeaderValue],
    extra: &[(&str, &str)],
) -> Request<Body> {
    let mut b = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri);
    if !row.headers.iter().any(|(k, _)| *k == "host") {
        b = b.header("host", "app.example");
    }
    for (k, v) in row.headers.iter().chain(extra) {
        b = b.header(*k, *v);
    }
    for c in cookies {
        b = b.header("cookie", c.clone());
    }
    b.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn cs_02_cs_03_sc_13_both_faces_judge_every_row_alike() {
    assert!(ROWS.len() >= 40, "the table has {} rows", ROWS.len());
    let f = fixture().await;
    let faces = [
        (Own, f.faces(Own).await),
        (Listed, f.faces(Listed).await),
        (SameSite, f.faces(SameSite).await),
    ];
    let mut failures = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        let faces = &faces.iter().find(|(p, _)| *p == row.policy).unwrap().1;
        let cookies = f.cookies(row.jar);
        // (a) The service, asked by a proxy about the row's request.
        let service = request(
            row,
            "GET",
            "/auth/verify",
            &cookies,
            &[("x-forwarded-method", row.method)],
        );
        let service = verdict("service", i, &send(&faces.service, service).await);
        // (b) The library, handling the row's request itself.
        let token: &[(&str, &str)] = if row.token {
            &[("x-csrf-token", &faces.token)]
        } else {
            &[]
        };
        let library = request(row, row.method, "/orders", &cookies, token);
        let library = verdict("library", i, &send(&faces.library, library).await);
        if (service, library) != (row.expect, row.expect) {
            failures.push(format!(
                "row {i} {:?} {} {:?} {:?}: expected {:?}, service {service:?}, library {library:?}",
                row.policy, row.method, row.jar, row.headers, row.expect
            ));
        }
        if row.token {
            // Without the token the library's own defence refuses it.
            let bare = request(row, row.method, "/orders", &cookies, &[]);
            let bare = verdict("library", i, &send(&faces.library, bare).await);
            if bare != Csrf {
                failures.push(format!(
                    "row {i}: the library took it without its token: {bare:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n")
    );
    for v in [Allowed, Csrf, NoSession] {
        assert!(ROWS.iter().any(|r| r.expect == v), "no row expects {v:?}");
    }
}

/// Both faces show a session as the one public view (SPEC §4.1).
#[tokio::test]
async fn both_faces_show_the_same_session_view() {
    let f = fixture().await;
    let (_, key) = tessera_server::auth::create_api_key(
        f.store.as_ref(),
        "parity",
        &[tessera::core::ApiKeyScope::Sessions],
        f.clock.now(),
    )
    .await
    .unwrap();
    let faces = f.faces(Own).await;
    let service = Request::get(format!("/v1/sessions/{}", f.handle))
        .header("authorization", format!("Bearer {}", key.expose()))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&faces.service, service).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let service: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (status, _, body) = send(
        &faces.library,
        get_with_cookie("/me", &format!("{NAME}={}", f.valid)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let library: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(service["session"], library);
    assert!(!body.contains(&f.valid), "the view carries the token");
}
