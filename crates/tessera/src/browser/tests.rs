//! In-process tests of the browser layer, named after the checklist IDs
//! they cover (`shared/reference/standards-checklist.md`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde_json::json;
use tessera_core::{AuthInput, DeviceInput, ManualClock, MemoryStore, SessionPolicy, Sessions, Timestamp};
use tower::ServiceExt;

use super::*;

const NAME: &str = "__Host-tessera";

struct Fixture {
    app: Router,
    sessions: Sessions,
    clock: ManualClock,
}

fn fixture() -> Fixture {
    fixture_with(|l| l)
}

fn fixture_with(f: impl FnOnce(SessionLayer) -> SessionLayer) -> Fixture {
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
    let sessions = Sessions::new(
        Arc::new(MemoryStore::new()),
        Arc::new(clock.clone()),
        SessionPolicy::default(),
    );
    let csrf = CsrfConfig::new()
        .allowed_origin("https://app.example")
        .unwrap()
        .key(CsrfKey::from_bytes(&[7; 32]));
    let layer = f(SessionLayer::new(sessions.clone(), CookieConfig::default()).with_csrf(csrf));
    Fixture {
        app: routes().layer(layer),
        sessions,
        clock,
    }
}

async fn login(
    s: Session,
    axum::extract::Query(q): axum::extract::Query<Vec<(String, String)>>,
) -> Result<String, Error> {
    let user = q
        .iter()
        .find(|(k, _)| k == "user")
        .map_or("alice".to_owned(), |(_, v)| v.clone());
    s.login(
        &user,
        AuthInput {
            level: Some(1),
            methods: vec!["pwd".into()],
        },
        DeviceInput::default(),
    )
    .await?;
    Ok(s.handle().unwrap_or_default())
}

fn routes() -> Router {
    Router::new()
        .route(
            "/whoami",
            get(|MaybeSession(s): MaybeSession| async move {
                s.and_then(|s| s.subject()).unwrap_or_else(|| "anonymous".into())
            }),
        )
        .route(
            "/me",
            get(|RequireSession(s): RequireSession| async move { s.subject().unwrap_or_default() }),
        )
        .route("/login", post(login))
        .route(
            "/elevate",
            post(|RequireSession(s): RequireSession| async move {
                s.elevate(AuthInput {
                    level: Some(2),
                    methods: vec!["otp".into()],
                })
                .await
                .map(|()| "elevated")
            }),
        )
        .route(
            "/admin",
            get(|RequireLevel::<2>(s): RequireLevel<2>| async move { s.subject().unwrap_or_default() }),
        )
        .route(
            "/recent",
            get(|RequireRecentAuth::<1, 300>(_s): RequireRecentAuth<1, 300>| async { "recent" }),
        )
        .route(
            "/logout",
            post(|s: Session| async move { s.logout().await.map(|()| "bye") }),
        )
        .route("/csrf", get(|s: Session| async move { s.csrf_token() }))
        .route(
            "/data",
            get(|RequireSession(s): RequireSession| async move { serde_json::Value::Object(s.data()).to_string() })
                .post(|RequireSession(s): RequireSession, body: String| async move {
                    let patch: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    s.set_data(patch).await.map(|()| "ok")
                }),
        )
        .route("/action", post(|RequireSession(_s): RequireSession| async { "done" }))
        .route(
            "/sessions",
            get(|RequireSession(s): RequireSession| async move {
                let l = s.list_sessions().await?;
                Ok::<_, Error>(l.iter().map(|r| r.handle.clone()).collect::<Vec<_>>().join(","))
            }),
        )
        .route(
            "/revoke/{handle}",
            post(
                |RequireSession(s): RequireSession, axum::extract::Path(h): axum::extract::Path<String>| async move {
                    s.revoke(&h).await.map(|()| "revoked")
                },
            ),
        )
        .route(
            "/revoke-others",
            post(|RequireSession(s): RequireSession| async move {
                s.revoke_others().await.map(|n| n.to_string())
            }),
        )
        .route(
            "/json",
            post(|| async { "json ok" }).layer(axum::middleware::from_fn(json_only)),
        )
}

/// A request as a same-origin browser page would send it.
fn req(method: Method, uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, format!("{NAME}={c}"));
    }
    b.header("sec-fetch-site", "same-origin")
        .body(Body::empty())
        .unwrap()
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The session cookie's `Set-Cookie` line, if any.
    fn session_cookie(&self) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{NAME}=")))
    }

    /// The value the session cookie was set to.
    fn token(&self) -> String {
        let c = self.session_cookie().expect("a session Set-Cookie");
        c.split(';').next().unwrap()[NAME.len() + 1..].to_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn send(app: &Router, r: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(r).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn do_login(app: &Router, user: &str, cookie: Option<&str>) -> Resp {
    let r = send(app, req(Method::POST, &format!("/login?user={user}"), cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r
}

fn attrs(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

// ---- SC: session IDs and cookies ----

#[tokio::test]
async fn sc_03_fx_04_planted_cookie_never_adopted() {
    let f = fixture();
    // Well-formed but never issued, and plain garbage.
    let planted_ok_shape = format!("tss_{}", "A".repeat(43));
    for planted in [planted_ok_shape.as_str(), "fixed123"] {
        let r = send(&f.app, req(Method::GET, "/me", Some(planted))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // The refused cookie is expired, never echoed.
        let sc = r.session_cookie().expect("expiring Set-Cookie");
        assert!(sc.starts_with(&format!("{NAME}=;")), "{sc}");
        assert!(sc.contains("Max-Age=0"), "{sc}");

        // Logging in while carrying it issues a different value…
        let r = do_login(&f.app, "alice", Some(planted)).await;
        let issued = r.token();
        assert_ne!(issued, planted);
        assert!(issued.starts_with("tss_"));
        // …and the planted value stays unauthenticated.
        let r = send(&f.app, req(Method::GET, "/me", Some(planted))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = send(&f.app, req(Method::GET, "/me", Some(&issued))).await;
        assert_eq!(r.body, "alice");
    }
}

#[tokio::test]
async fn sc_04_token_in_query_form_or_other_headers_ignored() {
    let f = fixture();
    let token = do_login(&f.app, "alice", None).await.token();
    for uri in [
        format!("/me?{NAME}={token}"),
        format!("/me?session={token}"),
        format!("/me?session_token={token}"),
    ] {
        let r = send(&f.app, req(Method::GET, &uri, None)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(r.header("location").is_none());
    }
    let r = send(
        &f.app,
        Request::get("/me")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header("x-session-token", token.clone())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(
        &f.app,
        Request::post("/action")
            .header("sec-fetch-site", "same-origin")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("{NAME}={token}&session_token={token}")))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A redirect never carries the token either.
    let f = fixture_with(|l| l.login_redirect("/login?next={next}"));
    let r = send(&f.app, req(Method::GET, &format!("/me?session={token}"), None)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/login?next=/me"));
}

async fn login_cookie() -> String {
    let f = fixture();
    do_login(&f.app, "alice", None).await.session_cookie().unwrap()
}

#[tokio::test]
async fn sc_05_secure_and_prefixed() {
    let c = login_cookie().await;
    assert!(c.starts_with("__Host-"), "{c}");
    assert!(attrs(&c).contains(&"secure".to_owned()), "{c}");
}

#[tokio::test]
async fn sc_06_host_prefix_path_and_no_domain() {
    let c = login_cookie().await;
    let a = attrs(&c);
    assert!(a.contains(&"path=/".to_owned()), "{c}");
    assert!(a.contains(&"secure".to_owned()), "{c}");
    assert!(!a.iter().any(|x| x.starts_with("domain")), "{c}");
}

#[tokio::test]
async fn sc_07_http_only_and_token_never_in_body() {
    let f = fixture();
    let r = do_login(&f.app, "alice", None).await;
    assert!(attrs(&r.session_cookie().unwrap()).contains(&"httponly".to_owned()));
    assert!(!r.body.contains(&r.token()));
    for (name, v) in &r.headers {
        if name != header::SET_COOKIE {
            assert!(!v.to_str().unwrap_or("").contains(&r.token()), "{name}");
        }
    }
}

#[tokio::test]
async fn sc_08_same_site_explicit() {
    let c = login_cookie().await;
    assert!(attrs(&c).contains(&"samesite=lax".to_owned()), "{c}");
    let f = fixture_with(|l| {
        let cfg = CookieConfig {
            same_site: SameSite::Strict,
            ..CookieConfig::default()
        };
        SessionLayer::new(l.sessions().clone(), cfg)
    });
    let c = do_login(&f.app, "alice", None).await.session_cookie().unwrap();
    assert!(attrs(&c).contains(&"samesite=strict".to_owned()), "{c}");
}

#[tokio::test]
async fn sc_09_cookie_size() {
    let f = fixture();
    let r = do_login(&f.app, "alice", None).await;
    // Data lives server-side; the cookie stays one token however big it is.
    let big = json!({"blob": "x".repeat(15_000)});
    let req_data = Request::post("/data")
        .header(header::COOKIE, format!("{NAME}={}", r.token()))
        .header("sec-fetch-site", "same-origin")
        .body(Body::from(big.to_string()))
        .unwrap();
    assert_eq!(send(&f.app, req_data).await.status, StatusCode::OK);
    let r = do_login(&f.app, "alice", Some(&r.token())).await;
    let c = r.session_cookie().unwrap();
    let pair = c.split(';').next().unwrap();
    assert!(pair.len() <= 4096, "{}", pair.len());
    assert_eq!(pair.len(), NAME.len() + 1 + 47);
}

#[tokio::test]
async fn sc_10_max_age_within_absolute_lifetime() {
    let f = fixture();
    let c = do_login(&f.app, "alice", None).await.session_cookie().unwrap();
    let max_age: i64 = attrs(&c)
        .iter()
        .find_map(|a| a.strip_prefix("max-age=").map(|v| v.parse().unwrap()))
        .expect("Max-Age");
    assert!(max_age > 0 && max_age <= SessionPolicy::default().absolute_timeout_secs);
    assert!(!attrs(&c).iter().any(|a| a.starts_with("expires")));
    // Non-persistent: no Max-Age at all.
    let f = fixture_with(|l| {
        let cfg = CookieConfig {
            persistent: false,
            ..CookieConfig::default()
        };
        SessionLayer::new(l.sessions().clone(), cfg)
    });
    let c = do_login(&f.app, "alice", None).await.session_cookie().unwrap();
    assert!(!attrs(&c).iter().any(|a| a.starts_with("max-age")), "{c}");
}

#[tokio::test]
async fn sc_11_generic_cookie_name() {
    let c = login_cookie().await;
    let name = c.split('=').next().unwrap().to_ascii_lowercase();
    for framework in [
        "jsessionid",
        "phpsessid",
        "connect.sid",
        "actix-session",
        "id",
        "session",
    ] {
        assert_ne!(name, framework);
    }
}

#[tokio::test]
async fn sc_13_malformed_cookies_never_5xx() {
    let f = fixture();
    let long = "A".repeat(10_000);
    for bad in [
        long.as_str(),
        "%00",
        "' OR 1=1--",
        "tss_%00%00",
        "tss_\u{e9}\u{e9}",
    ] {
        let r = Request::get("/me")
            .header(header::COOKIE, format!("{NAME}={bad}").as_bytes())
            .body(Body::empty())
            .unwrap();
        let r = send(&f.app, r).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad:?}");
    }
    let r = Request::get("/me")
        .header(
            header::COOKIE,
            axum::http::HeaderValue::from_bytes(b"__Host-tessera=\xff\xfe").unwrap(),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, r).await.status, StatusCode::UNAUTHORIZED);
}

/// Another application's cookie with a byte outside visible ASCII (`x=é`)
/// once voided the whole `Cookie` header: the session looked absent, and a
/// logout cleared the browser but left the session live on the server.
#[tokio::test]
async fn a_non_ascii_neighbour_cookie_hides_nothing() {
    let f = fixture();
    let tok = do_login(&f.app, "alice", None).await.token();
    for cookie in [format!("{tok}; x=\u{e9}"), format!("{tok}; y=\u{e9}t\u{e9}; z=1")] {
        // Safe methods take the layer's fast path, state-changing ones the general one.
        let r = send(&f.app, req(Method::GET, "/me", Some(&cookie))).await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "alice"), "{cookie}");
        let r = send(&f.app, req(Method::POST, "/action", Some(&cookie))).await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "done"), "{cookie}");
    }
    let cookie = format!("{tok}; x=\u{e9}");
    let r = send(&f.app, req(Method::POST, "/logout", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        f.sessions.verify(&tok).await.is_err(),
        "logout cleared the browser but left the session live"
    );
    let r = send(&f.app, req(Method::GET, "/me", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// Two different values for the session cookie (one planted by a sibling
/// site, "cookie tossing") are refused, as the service's forward auth
/// refuses them: taking the first that verifies would let a planted valid
/// session win.
#[tokio::test]
async fn conflicting_session_cookies_are_refused_like_the_service_does() {
    let f = fixture();
    let alice = do_login(&f.app, "alice", None).await.token();
    let mallory = do_login(&f.app, "mallory", None).await.token();
    for (first, second) in [(&mallory, &alice), (&alice, &mallory)] {
        let both = format!("{first}; {NAME}={second}");
        let r = send(&f.app, req(Method::GET, "/me", Some(&both))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        let r = send(&f.app, req(Method::GET, "/whoami", Some(&both))).await;
        assert_eq!(r.body, "anonymous");
        // Expiring the host's cookie would only leave the planted one.
        assert!(r.session_cookie().is_none(), "{:?}", r.set_cookies());
        let r = send(&f.app, req(Method::POST, "/action", Some(&both))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        // Split over two Cookie headers (HTTP/2) it is the same.
        let split = Request::get("/me")
            .header(header::COOKIE, format!("{NAME}={first}"))
            .header(header::COOKIE, format!("a=b; {NAME}={second}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&f.app, split).await.status, StatusCode::UNAUTHORIZED);
    }
    // A garbled second value conflicts too.
    let r = send(
        &f.app,
        req(Method::GET, "/me", Some(&format!("{alice}; {NAME}=x"))),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The same value twice is one cookie.
    let r = send(
        &f.app,
        req(Method::GET, "/me", Some(&format!("{alice}; {NAME}={alice}"))),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "alice"));
    // Logging out with both revokes both, as the service's logout does,
    // so neither can come back alone.
    let both = format!("{mallory}; {NAME}={alice}");
    let r = send(&f.app, req(Method::POST, "/logout", Some(&both))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(f.sessions.verify(&alice).await.is_err());
    assert!(f.sessions.verify(&mallory).await.is_err());
}

#[tokio::test]
async fn insecure_dev_drops_secure_and_prefix() {
    let f = fixture_with(|l| SessionLayer::new(l.sessions().clone(), CookieConfig::insecure_dev()));
    let r = send(&f.app, req(Method::POST, "/login?user=alice", None)).await;
    let c = r.set_cookies().into_iter().next().unwrap();
    assert!(c.starts_with("tessera=tss_"), "{c}");
    assert!(!attrs(&c).contains(&"secure".to_owned()), "{c}");
    assert!(attrs(&c).contains(&"httponly".to_owned()), "{c}");
}

// ---- FX: fixation and regeneration ----

#[tokio::test]
async fn fx_01_login_rotates_kills_pre_login_token_and_carries_data() {
    let f = fixture();
    // A session of the same subject holding a cart (a re-login).
    let s0 = do_login(&f.app, "alice", None).await.token();
    let put = Request::post("/data")
        .header(header::COOKIE, format!("{NAME}={s0}"))
        .header("sec-fetch-site", "same-origin")
        .body(Body::from(r#"{"cart":[1,2]}"#))
        .unwrap();
    assert_eq!(send(&f.app, put).await.status, StatusCode::OK);

    let r = do_login(&f.app, "alice", Some(&s0)).await;
    let s1 = r.token();
    assert_ne!(s0, s1);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // S0 is dead.
    assert_eq!(
        send(&f.app, req(Method::GET, "/me", Some(&s0))).await.status,
        StatusCode::UNAUTHORIZED
    );
    // S1 works and carries the cart.
    let r = send(&f.app, req(Method::GET, "/data", Some(&s1))).await;
    assert_eq!(r.body, r#"{"cart":[1,2]}"#);
    let r = send(&f.app, req(Method::GET, "/me", Some(&s1))).await;
    assert_eq!(r.body, "alice");
}

/// A shared browser: bob signs in while alice's cookie is still there. Her
/// session ends with his login, and none of her data reaches his session.
#[tokio::test]
async fn fx_01_login_of_another_subject_drops_the_cookie_sessions_data() {
    let f = fixture();
    let alice = do_login(&f.app, "alice", None).await.token();
    let put = Request::post("/data")
        .header(header::COOKIE, format!("{NAME}={alice}"))
        .header("sec-fetch-site", "same-origin")
        .body(Body::from(r#"{"role":"admin"}"#))
        .unwrap();
    assert_eq!(send(&f.app, put).await.status, StatusCode::OK);

    let bob = do_login(&f.app, "bob", Some(&alice)).await.token();
    let r = send(&f.app, req(Method::GET, "/data", Some(&bob))).await;
    assert_eq!(r.body, "{}", "bob inherits nothing of alice's session");
    let r = send(&f.app, req(Method::GET, "/me", Some(&bob))).await;
    assert_eq!(r.body, "bob");
    assert_eq!(
        send(&f.app, req(Method::GET, "/me", Some(&alice))).await.status,
        StatusCode::UNAUTHORIZED,
        "alice's session ended with bob's login"
    );
    let stored = f.sessions.store().list_by_subject("bob").await.unwrap();
    assert!(stored.iter().all(|s| s.data.is_empty()), "{stored:?}");
}

#[tokio::test]
async fn fx_02_step_up_rotates_and_kills_the_old_token() {
    let f = fixture();
    let s1 = do_login(&f.app, "alice", None).await.token();
    let r = send(&f.app, req(Method::GET, "/admin", Some(&s1))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let www = r.header("www-authenticate").unwrap();
    assert!(
        www.starts_with("Bearer error=\"insufficient_user_authentication\""),
        "{www}"
    );
    assert!(www.contains("acr_values=\"2\""), "{www}");

    let r = send(&f.app, req(Method::POST, "/elevate", Some(&s1))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let s2 = r.token();
    assert_ne!(s1, s2);
    assert_eq!(
        send(&f.app, req(Method::GET, "/me", Some(&s1))).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = send(&f.app, req(Method::GET, "/admin", Some(&s2))).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "alice"));
}

#[tokio::test]
async fn fx_03_privilege_change_rotates_keeping_the_handle() {
    let f = fixture();
    let r = do_login(&f.app, "alice", None).await;
    let (handle, s1) = (r.body.clone(), r.token());
    let s2 = send(&f.app, req(Method::POST, "/elevate", Some(&s1)))
        .await
        .token();
    let rec = f.sessions.get(&handle).await.unwrap();
    assert_eq!(rec.auth.level, 2);
    assert_eq!(rec.auth.methods, vec!["pwd".to_owned(), "otp".to_owned()]);
    assert_ne!(s1, s2);
    assert!(f.sessions.verify(&s1).await.is_err());
    assert_eq!(f.sessions.verify(&s2).await.unwrap().handle, handle);
}

#[tokio::test]
async fn fx_06_login_csrf() {
    let f = fixture();
    let cross = |h: (&str, &str)| {
        Request::post("/login?user=mallory")
            .header(h.0, h.1)
            .body(Body::empty())
            .unwrap()
    };
    for h in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
        ("referer", "https://evil.example/page"),
    ] {
        let r = send(&f.app, cross(h)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{h:?}");
        assert!(r.body.contains("csrf_rejected"));
        assert!(r.set_cookies().is_empty(), "{h:?}");
    }
    // No headers and no token: refused too.
    let r = send(&f.app, Request::post("/login").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.set_cookies().is_empty());

    // The login form's pre-session token, with its nonce cookie, passes.
    let page = send(&f.app, Request::get("/csrf").body(Body::empty()).unwrap()).await;
    let nonce_cookie = page.set_cookies().into_iter().next().unwrap();
    assert!(nonce_cookie.starts_with("__Host-tessera-csrf="), "{nonce_cookie}");
    let a = attrs(&nonce_cookie);
    assert!(a.contains(&"httponly".into()) && a.contains(&"secure".into()) && a.contains(&"path=/".into()));
    let nonce = nonce_cookie.split(';').next().unwrap().to_owned();
    let token = page.body.clone();
    let form = |cookie: Option<&str>, token: &str| {
        let mut b = Request::post("/login?user=alice")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.body(Body::from(format!("username=alice&csrf_token={token}")))
            .unwrap()
    };
    let r = send(&f.app, form(Some(&nonce), &token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The session cookie is set and the nonce cookie retired.
    assert!(r.session_cookie().is_some());
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("__Host-tessera-csrf=;"))
    );
    // Without its nonce cookie, or with another one, the token is useless.
    let r = send(&f.app, form(None, &token)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let other = format!("__Host-tessera-csrf={}", "B".repeat(43));
    let r = send(&f.app, form(Some(&other), &token)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // It expires.
    f.clock.advance_secs(3 * 3600);
    let r = send(&f.app, form(Some(&nonce), &token)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

// ---- EX: expiry and invalidation ----

#[tokio::test]
async fn ex_12_logout_clears_site_data_and_expires_the_cookie() {
    let f = fixture();
    let s = do_login(&f.app, "alice", None).await.token();
    let r = send(&f.app, req(Method::POST, "/logout", Some(&s))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("clear-site-data"),
        Some("\"cache\", \"cookies\", \"storage\"")
    );
    let c = r.session_cookie().unwrap();
    let mut a = attrs(&c);
    a.sort();
    assert!(c.starts_with(&format!("{NAME}=;")), "{c}");
    assert_eq!(
        a,
        ["httponly", "max-age=0", "path=/", "samesite=lax", "secure"],
        "{c}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(
        send(&f.app, req(Method::GET, "/me", Some(&s))).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn ex_13_no_store_on_every_cookie_response() {
    let f = fixture();
    let r = do_login(&f.app, "alice", None).await;
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let s = r.token();
    let r = send(&f.app, req(Method::GET, "/me", Some(&s))).await;
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = send(&f.app, req(Method::POST, "/elevate", Some(&s))).await;
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = send(&f.app, Request::get("/csrf").body(Body::empty()).unwrap()).await;
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = send(&f.app, req(Method::GET, "/me", Some("bogus"))).await;
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn ex_expired_session_is_signed_out() {
    let f = fixture();
    let s = do_login(&f.app, "alice", None).await.token();
    f.clock.advance_secs(31 * 60);
    let r = send(&f.app, req(Method::GET, "/whoami", Some(&s))).await;
    assert_eq!(r.body, "anonymous");
    assert!(r.session_cookie().unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn ex_14_recent_authentication() {
    let f = fixture_with(|l| l.step_up_redirect("/reauth?next={next}"));
    let s = do_login(&f.app, "alice", None).await.token();
    assert_eq!(
        send(&f.app, req(Method::GET, "/recent", Some(&s))).await.status,
        StatusCode::OK
    );
    f.clock.advance_secs(301);
    let r = send(&f.app, req(Method::GET, "/recent", Some(&s))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/reauth?next=/recent"));
    let r = send(&f.app, req(Method::POST, "/elevate", Some(&s))).await;
    let s = r.token();
    assert_eq!(
        send(&f.app, req(Method::GET, "/recent", Some(&s))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn ex_10_sessions_are_listed_and_revoked_only_within_the_subject() {
    let f = fixture();
    let a1 = do_login(&f.app, "alice", None).await;
    let a2 = do_login(&f.app, "alice", None).await;
    let a3 = do_login(&f.app, "alice", None).await;
    let b = do_login(&f.app, "bob", None).await;
    let list = send(&f.app, req(Method::GET, "/sessions", Some(&a1.token())))
        .await
        .body;
    assert_eq!(list.split(',').count(), 3);
    assert!(!list.contains(&b.body));

    // Bob's handle is "not found" for Alice, and Bob stays signed in.
    let r = send(
        &f.app,
        req(Method::POST, &format!("/revoke/{}", b.body), Some(&a1.token())),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        send(&f.app, req(Method::GET, "/me", Some(&b.token())))
            .await
            .status,
        StatusCode::OK
    );
    // Alice ends her second session from the first.
    let r = send(
        &f.app,
        req(Method::POST, &format!("/revoke/{}", a2.body), Some(&a1.token())),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        send(&f.app, req(Method::GET, "/me", Some(&a2.token())))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // And every other one.
    let r = send(&f.app, req(Method::POST, "/revoke-others", Some(&a1.token()))).await;
    assert_eq!(r.body, "1");
    assert_eq!(
        send(&f.app, req(Method::GET, "/me", Some(&a3.token())))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&f.app, req(Method::GET, "/me", Some(&a1.token())))
            .await
            .status,
        StatusCode::OK
    );
    // Revoking one's own handle is a logout.
    let r = send(
        &f.app,
        req(Method::POST, &format!("/revoke/{}", a1.body), Some(&a1.token())),
    )
    .await;
    assert!(r.header("clear-site-data").is_some());
    assert_eq!(
        send(&f.app, req(Method::GET, "/me", Some(&a1.token())))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

// ---- CS: CSRF ----

fn post_with(uri: &str, cookie: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::post(uri).header(header::COOKIE, format!("{NAME}={cookie}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn cs_01_state_change_needs_a_token_or_origin_header() {
    let f = fixture();
    let s = do_login(&f.app, "alice", None).await.token();
    let r = send(&f.app, post_with("/action", &s, &[])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("\"code\":\"csrf_rejected\""), "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));

    let token = send(&f.app, req(Method::GET, "/csrf", Some(&s))).await.body;
    let r = send(&f.app, post_with("/action", &s, &[("x-csrf-token", &token)])).await;
    assert_eq!(r.status, StatusCode::OK);
    // The same token as a form field.
    let r = Request::post("/action")
        .header(header::COOKIE, format!("{NAME}={s}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("a=1&csrf_token={token}")))
        .unwrap();
    assert_eq!(send(&f.app, r).await.status, StatusCode::OK);
}

#[tokio::test]
async fn cs_02_fetch_metadata() {
    let f = fixture();
    let s = do_login(&f.app, "alice", None).await.token();
    let status = |site: &'static str| {
        let app = f.app.clone();
        let s = s.clone();
        async move {
            send(&app, post_with("/action", &s, &[("sec-fetch-site", site)]))
                .await
                .status
        }
    };
    assert_eq!(status("cross-site").await, StatusCode::FORBIDDEN);
    assert_eq!(status("same-site").await, StatusCode::FORBIDDEN);
    assert_eq!(status("same-origin").await, StatusCode::OK);
    // The session was not touched by the refused requests.
    assert_eq!(status("bogus").await, StatusCode::FORBIDDEN);
    // Browsers send the values in lower case: anything else is unknown.
    assert_eq!(status("Same-Origin").await, StatusCode::FORBIDDEN);
    // TRACE and a lower-case method are judged like any state-changing one.
    for method in ["TRACE", "post", "get"] {
        let r = Request::builder()
            .method(method)
            .uri("/whoami")
            .header(header::COOKIE, format!("{NAME}={s}"))
            .header("sec-fetch-site", "cross-site")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&f.app, r).await.status, StatusCode::FORBIDDEN, "{method}");
    }

    let f = fixture_with(|l| {
        let csrf = CsrfConfig::new().allow_same_site(true);
        l.with_csrf(csrf)
    });
    let s = do_login(&f.app, "alice", None).await.token();
    let r = send(
        &f.app,
        post_with("/action", &s, &[("sec-fetch-site", "same-site")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn cs_03_origin_and_referer_fallback() {
    let f = fixture();
    let s = do_login(&f.app, "alice", None).await.token();
    let st = |h: &[(&str, &str)]| {
        let r = post_with("/action", &s, h);
        let app = f.app.clone();
        async move { send(&app, r).await.status }
    };
    assert_eq!(
        st(&[("origin", "https://evil.example")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(st(&[("origin", "https://app.example")]).await, StatusCode::OK);
    // Only an origin as browsers write it: never a default port, a path or
    // a trailing slash (the service's rule, docs/http-rules.md).
    for odd in [
        "https://app.example:443",
        "https://app.example/",
        "https://u@app.example",
    ] {
        assert_eq!(st(&[("origin", odd)]).await, StatusCode::FORBIDDEN, "{odd}");
    }
    assert_eq!(
        st(&[("origin", "http://app.example")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        st(&[("referer", "https://evil.example/x?y")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        st(&[("referer", "https://app.example/form")]).await,
        StatusCode::OK
    );
    // `Origin: null` (an opaque origin: a sandboxed frame, a `data:` page)
    // is refused, whatever Referer comes with it, as the service refuses it.
    assert_eq!(st(&[("origin", "null")]).await, StatusCode::FORBIDDEN);
    assert_eq!(
        st(&[("origin", "null"), ("referer", "https://app.example/")]).await,
        StatusCode::FORBIDDEN
    );

    // With no configured origin the request's own Host is the origin.
    let f = fixture_with(|l| l.with_csrf(CsrfConfig::new()));
    let s = do_login(&f.app, "alice", None).await.token();
    let st = |h: &[(&str, &str)]| {
        let r = post_with("/action", &s, h);
        let app = f.app.clone();
        async move { send(&app, r).await.status }
    };
    assert_eq!(
        st(&[("host", "127.0.0.1:3000"), ("origin", "http://127.0.0.1:3000")]).await,
        StatusCode::OK
    );
    assert_eq!(
        st(&[("host", "app.example"), ("origin", "https://app.example")]).await,
        StatusCode::OK
    );
    assert_eq!(
        st(&[("host", "127.0.0.1:3000"), ("origin", "http://evil.example:3000")]).await,
        StatusCode::FORBIDDEN
    );
    // Forwarded headers are believed only when the app says a proxy sets
    // them.
    let behind_proxy = [
        ("host", "app:3000"),
        ("x-forwarded-host", "app.example"),
        ("x-forwarded-proto", "https"),
        ("origin", "https://app.example"),
    ];
    assert_eq!(st(&behind_proxy).await, StatusCode::FORBIDDEN);
    let f = fixture_with(|l| l.with_csrf(CsrfConfig::new().trust_forwarded_headers(true)));
    let s = do_login(&f.app, "alice", None).await.token();
    let st = |h: &[(&str, &str)]| {
        let r = post_with("/action", &s, h);
        let app = f.app.clone();
        async move { send(&app, r).await.status }
    };
    assert_eq!(st(&behind_proxy).await, StatusCode::OK);
    // The scheme the proxy saw must be the Origin's.
    assert_eq!(
        st(&[
            ("x-forwarded-host", "app.example"),
            ("x-forwarded-proto", "https"),
            ("origin", "http://app.example"),
        ])
        .await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn cs_04_logout_is_not_a_get() {
    let f = fixture();
    let s = do_login(&f.app, "alice", None).await.token();
    let r = send(&f.app, req(Method::GET, "/logout", Some(&s))).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        send(&f.app, req(Method::GET, "/me", Some(&s))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn cs_05_json_routes_refuse_simple_content_types() {
    let f = fixture();
    let s = do_login(&f.app, "alice", None).await.token();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = post_with(
            "/json",
            &s,
            &[("sec-fetch-site", "same-origin"), ("content-type", ct)],
        );
        let r = send(&f.app, r).await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}");
    }
    let r = post_with("/json", &s, &[("sec-fetch-site", "same-origin")]);
    assert_eq!(send(&f.app, r).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "application/merge-patch+json",
    ] {
        let r = post_with(
            "/json",
            &s,
            &[("sec-fetch-site", "same-origin"), ("content-type", ct)],
        );
        assert_eq!(send(&f.app, r).await.status, StatusCode::OK, "{ct}");
    }
}

#[tokio::test]
async fn cs_07_token_bound_to_the_session_and_its_rotation() {
    let f = fixture();
    // The pre-login token stops counting once there is a session.
    let page = send(&f.app, Request::get("/csrf").body(Body::empty()).unwrap()).await;
    let pre_token = page.body.clone();
    assert!(pre_token.starts_with("p."));
    let a = do_login(&f.app, "alice", None).await.token();
    let b = do_login(&f.app, "bob", None).await.token();
    let tok_a = send(&f.app, req(Method::GET, "/csrf", Some(&a))).await.body;
    let tok_b = send(&f.app, req(Method::GET, "/csrf", Some(&b))).await.body;
    assert_ne!(tok_a, tok_b);
    let st = |s: String, t: String| {
        let app = f.app.clone();
        async move {
            send(&app, post_with("/action", &s, &[("x-csrf-token", &t)]))
                .await
                .status
        }
    };
    assert_eq!(st(a.clone(), tok_a.clone()).await, StatusCode::OK);
    assert_eq!(st(b.clone(), tok_a.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(st(a.clone(), pre_token.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(st(a.clone(), "s.garbage".into()).await, StatusCode::FORBIDDEN);
    // A wrong header token is refused even when Fetch Metadata would pass.
    let r = post_with(
        "/action",
        &a,
        &[("sec-fetch-site", "same-origin"), ("x-csrf-token", &tok_b)],
    );
    assert_eq!(send(&f.app, r).await.status, StatusCode::FORBIDDEN);

    // Step-up rotates the token, and the CSRF token with it.
    let a2 = send(&f.app, req(Method::POST, "/elevate", Some(&a)))
        .await
        .token();
    let tok_a2 = send(&f.app, req(Method::GET, "/csrf", Some(&a2))).await.body;
    assert_ne!(tok_a, tok_a2);
    assert_eq!(st(a2.clone(), tok_a.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(st(a2.clone(), tok_a2.clone()).await, StatusCode::OK);
}

#[tokio::test]
async fn cs_token_policy_always_needs_the_token_even_same_origin() {
    let f = fixture_with(|l| l.with_csrf(CsrfConfig::new().token_policy(TokenPolicy::Always)));
    let page = send(&f.app, Request::get("/csrf").body(Body::empty()).unwrap()).await;
    let r = send(&f.app, req(Method::POST, "/login?user=alice", None)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let nonce = page.set_cookies()[0].split(';').next().unwrap().to_owned();
    let r = Request::post("/login?user=alice")
        .header("sec-fetch-site", "same-origin")
        .header(header::COOKIE, nonce)
        .header("x-csrf-token", page.body)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, r).await.status, StatusCode::OK);
}

#[tokio::test]
async fn cs_08_security_headers() {
    let app = Router::new()
        .route("/", get(|| async { "hi" }))
        .route(
            "/own",
            get(|| async {
                (
                    [(
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'self'; frame-ancestors 'none'",
                    )],
                    "own",
                )
            }),
        )
        .layer(SecurityHeadersLayer::new());
    let r = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(
        r.header("content-security-policy"),
        Some("frame-ancestors 'none'")
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("strict-transport-security").is_none());
    let r = send(&app, Request::get("/own").body(Body::empty()).unwrap()).await;
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'self'; frame-ancestors 'none'")
    );

    let app = Router::new()
        .route("/", get(|| async { "hi" }))
        .layer(SecurityHeadersLayer::new().hsts(31_536_000, true));
    let r = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
}

// ---- extractors and configuration ----

#[tokio::test]
async fn require_session_problem_or_redirect() {
    let f = fixture();
    let r = send(&f.app, req(Method::GET, "/me", None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("\"code\":\"unauthorized\""));
    let f = fixture_with(|l| l.login_redirect("/login"));
    let r = send(&f.app, req(Method::GET, "/me", None)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/login"));
}

#[tokio::test]
async fn layer_missing_is_a_500_not_a_panic() {
    let app = Router::new().route(
        "/",
        get(|s: Session| async move { s.is_authenticated().to_string() }),
    );
    let r = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn device_comes_from_the_request() {
    let f = fixture();
    let r = Request::post("/login?user=alice")
        .header("sec-fetch-site", "same-origin")
        .header(header::USER_AGENT, "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")
        .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from(([192, 0, 2, 7], 5555))))
        .body(Body::empty())
        .unwrap();
    let r = send(&f.app, r).await;
    let rec = f.sessions.get(&r.body).await.unwrap();
    assert_eq!(rec.device.ip.as_deref(), Some("192.0.2.7"));
    assert!(rec.device.label.contains("Chrome"), "{}", rec.device.label);
}

#[test]
fn config_validation() {
    assert!(CookieConfig::default().validate().is_ok());
    let bad = CookieConfig {
        name: "bad name".into(),
        ..CookieConfig::default()
    };
    assert!(bad.validate().is_err());
    assert!(CsrfConfig::new().allowed_origin("not a url").is_err());
    assert_eq!(
        CsrfConfig::new()
            .allowed_origin("HTTPS://App.Example")
            .unwrap()
            .allowed_origins(),
        ["https://app.example"]
    );
    // Written as browsers send it, or refused (as the service's config).
    for odd in [
        "https://app.example:443",
        "https://app.example/path?q",
        "ftp://app.example",
    ] {
        assert!(CsrfConfig::new().allowed_origin(odd).is_err(), "{odd}");
    }
    assert!(CsrfKey::from_base64url("short").is_err());
    assert!(CsrfKey::from_base64url(&"A".repeat(43)).is_ok());
    assert!(StoreUrl::parse("memory://").is_ok());
    assert!(StoreUrl::parse("mysql://x").is_err());
    assert!(
        SessionLayer::from_store_url("memory://", SessionPolicy::default(), CookieConfig::default()).is_ok()
    );
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_store_url_works_end_to_end() {
    let url = format!(
        "{}?prefix=lib-{}",
        tessera_redis::testing::server().url(),
        std::process::id()
    );
    let layer =
        SessionLayer::from_store_url(&url, SessionPolicy::default(), CookieConfig::default()).unwrap();
    let app = routes().layer(layer);
    let s = do_login(&app, "alice", None).await.token();
    let r = send(&app, req(Method::GET, "/me", Some(&s))).await;
    assert_eq!(r.body, "alice");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_store_url_works_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/sub/sessions.db", dir.path().display());
    let layer =
        SessionLayer::from_store_url(&url, SessionPolicy::default(), CookieConfig::default()).unwrap();
    let app = routes().layer(layer);
    let s = do_login(&app, "alice", None).await.token();
    let r = send(&app, req(Method::GET, "/me", Some(&s))).await;
    assert_eq!(r.body, "alice");
}

mod dbsc;
