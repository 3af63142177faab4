//! DBSC served by the layer (SPEC §4.5), named after the checklist's DB
//! rows. A protocol-level client here signs the proofs Chromium would, as
//! the service's tests do.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::Value;
use tessera_core::dbsc::DbscPolicy;
use tessera_core::{Sealer, b64url};

use super::*;

const BOUND: &str = "__Host-tessera-dbsc";

struct Device(EcdsaKeyPair);

impl Device {
    fn new() -> Device {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        Device(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap())
    }

    fn sign(&self, header: Value, jti: &str) -> String {
        let input = format!(
            "{}.{}",
            b64url::encode(header.to_string().as_bytes()),
            b64url::encode(json!({ "jti": jti }).to_string().as_bytes())
        );
        let sig = self.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64url::encode(sig.as_ref()))
    }

    fn registration(&self, challenge: &str) -> String {
        let p = self.0.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64url::encode(&p[1..33]), "y": b64url::encode(&p[33..65])});
        self.sign(json!({"alg": "ES256", "typ": "dbsc+jwt", "jwk": jwk}), challenge)
    }

    fn refresh(&self, challenge: &str) -> String {
        self.sign(json!({"alg": "ES256", "typ": "dbsc+jwt"}), challenge)
    }
}

/// A quoted sf-string parameter (`challenge="…"`) or the leading sf-string
/// of a header value.
fn sf_param(value: &str, name: Option<&str>) -> String {
    let rest = match name {
        Some(n) => value.split(&format!("{n}=\"")).nth(1).unwrap(),
        None => value.strip_prefix('"').unwrap(),
    };
    rest.split('"').next().unwrap().to_owned()
}

fn dbsc_fixture(required_level: Option<u8>) -> Fixture {
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
    let store = Arc::new(MemoryStore::new());
    let sessions = Sessions::new(store.clone(), Arc::new(clock.clone()), SessionPolicy::default());
    let csrf = CsrfConfig::new()
        .allowed_origin("https://app.example")
        .unwrap()
        .key(CsrfKey::from_bytes(&[7; 32]));
    let options = DbscOptions {
        policy: DbscPolicy {
            required_level,
            ..DbscPolicy::default()
        },
        replay: Some(store),
        ..DbscOptions::new(Arc::new(Sealer::new(&[9; 32])))
    };
    let layer = SessionLayer::new(sessions.clone(), CookieConfig::default())
        .with_csrf(csrf)
        .with_dbsc(options)
        .unwrap();
    Fixture {
        app: routes().layer(layer),
        sessions,
        clock,
    }
}

/// A DBSC request as the browser sends it: no `Sec-Fetch-Site`, no CSRF
/// token (the proof is the protection).
fn dbsc_req(path: &str, cookies: &[String], headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::post(path);
    if !cookies.is_empty() {
        b = b.header(header::COOKIE, cookies.join("; "));
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

fn get_with(uri: &str, cookies: &[String]) -> Request<Body> {
    Request::get(uri)
        .header(header::COOKIE, cookies.join("; "))
        .body(Body::empty())
        .unwrap()
}

/// `name=value` of the bound cookie's `Set-Cookie`.
fn bound_pair(r: &Resp) -> String {
    let c = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with(&format!("{BOUND}=")))
        .expect("a bound Set-Cookie");
    c.split(';').next().unwrap().to_owned()
}

fn assert_hardened(r: &Resp) {
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("cross-origin-resource-policy"), Some("same-origin"));
}

struct Bound {
    handle: String,
    session: String,
    bound: String,
    device: Device,
}

async fn login_and_register(app: &Router, user: &str) -> Bound {
    let r = do_login(app, user, None).await;
    let handle = r.body.clone();
    let session = format!("{NAME}={}", r.token());
    let reg = r
        .header("secure-session-registration")
        .expect("a registration header on login")
        .to_owned();
    let device = Device::new();
    let proof = device.registration(&sf_param(&reg, Some("challenge")));
    let r = send(
        app,
        dbsc_req(
            "/auth/dbsc/register",
            std::slice::from_ref(&session),
            &[("secure-session-response", &proof)],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    Bound {
        handle,
        session,
        bound: bound_pair(&r),
        device,
    }
}

#[tokio::test]
async fn db_01_db_04_login_offers_registration_and_register_sets_the_bound_cookie() {
    let f = dbsc_fixture(None);
    let r = do_login(&f.app, "alice", None).await;
    let reg = r.header("secure-session-registration").unwrap().to_owned();
    assert!(
        reg.starts_with(r#"(ES256 RS256);path="/auth/dbsc/register";challenge=""#),
        "{reg}"
    );
    let session = format!("{NAME}={}", r.token());
    let device = Device::new();
    let proof = device.registration(&sf_param(&reg, Some("challenge")));
    let r = send(
        &f.app,
        dbsc_req(
            "/auth/dbsc/register",
            std::slice::from_ref(&session),
            &[("secure-session-response", &proof)],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_hardened(&r);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&r.body).unwrap();
    let set = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with(BOUND))
        .unwrap();
    let instructed = body["credentials"][0]["attributes"].as_str().unwrap();
    assert_eq!(body["credentials"][0]["name"], BOUND);
    // DB-04: the instruction's attributes are the Set-Cookie's (Max-Age aside).
    let set_attrs: Vec<&str> = set
        .split("; ")
        .skip(1)
        .filter(|a| !a.starts_with("Max-Age"))
        .collect();
    assert_eq!(set_attrs.join("; "), instructed, "{set}");
    assert_eq!(body["session_identifier"], r_handle(&f, &session).await);
    assert_eq!(body["refresh_url"], "/auth/dbsc/refresh");
    // DB-02: the registration challenge is single use.
    let again = send(
        &f.app,
        dbsc_req(
            "/auth/dbsc/register",
            std::slice::from_ref(&session),
            &[("secure-session-response", &proof)],
        ),
    )
    .await;
    assert!(again.status.is_client_error() && again.status != StatusCode::FORBIDDEN);
    assert!(!again.set_cookies().iter().any(|c| c.starts_with(BOUND)));
}

async fn r_handle(f: &Fixture, session: &str) -> String {
    let token = &session[NAME.len() + 1..];
    f.sessions.verify(token).await.unwrap().handle.clone()
}

#[tokio::test]
async fn db_09_the_session_cookie_alone_is_refused_once_bound() {
    let f = dbsc_fixture(None);
    let b = login_and_register(&f.app, "alice").await;
    let with = send(&f.app, get_with("/me", &[b.session.clone(), b.bound.clone()])).await;
    assert_eq!(with.status, StatusCode::OK);
    assert_eq!(with.body, "alice");
    let alone = send(&f.app, get_with("/me", std::slice::from_ref(&b.session))).await;
    assert_eq!(alone.status, StatusCode::UNAUTHORIZED);
    // The session cookie is kept: the browser refreshes and retries.
    assert!(alone.session_cookie().is_none(), "{:?}", alone.set_cookies());
    let maybe = send(&f.app, get_with("/whoami", std::slice::from_ref(&b.session))).await;
    assert_eq!(maybe.body, "anonymous");
}

#[tokio::test]
async fn db_09_another_sessions_bound_cookie_is_refused() {
    let f = dbsc_fixture(None);
    let a = login_and_register(&f.app, "alice").await;
    let b = login_and_register(&f.app, "bob").await;
    let r = send(&f.app, get_with("/me", &[b.session.clone(), a.bound.clone()])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn db_06_db_08_expired_bound_cookie_is_refreshed_with_a_proof() {
    let f = dbsc_fixture(None);
    let b = login_and_register(&f.app, "alice").await;
    f.clock.advance_secs(DbscPolicy::default().cookie_ttl_secs + 1);
    let stale = send(&f.app, get_with("/me", &[b.session.clone(), b.bound.clone()])).await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED);

    let id = format!("\"{}\"", b.handle);
    let r = send(
        &f.app,
        dbsc_req("/auth/dbsc/refresh", &[], &[("sec-secure-session-id", &id)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_hardened(&r);
    let ch = r.header("secure-session-challenge").unwrap().to_owned();
    assert_eq!(sf_param(&ch, Some("id")), b.handle);

    let proof = b.device.refresh(&sf_param(&ch, None));
    let r = send(
        &f.app,
        dbsc_req(
            "/auth/dbsc/refresh",
            &[],
            &[
                ("sec-secure-session-id", &id),
                ("secure-session-response", &proof),
            ],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_hardened(&r);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["session_identifier"], b.handle.as_str());
    let fresh = bound_pair(&r);
    let me = send(&f.app, get_with("/me", &[b.session.clone(), fresh])).await;
    assert_eq!(me.status, StatusCode::OK);

    // DB-08: the pushed challenge serves the next refresh directly.
    let pushed = r.header("secure-session-challenge").unwrap().to_owned();
    let proof = b.device.refresh(&sf_param(&pushed, None));
    let r = send(
        &f.app,
        dbsc_req(
            "/auth/dbsc/refresh",
            &[],
            &[
                ("sec-secure-session-id", &id),
                ("secure-session-response", &proof),
            ],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // DB-07: another key's proof is refused without a cookie.
    let ch = send(
        &f.app,
        dbsc_req("/auth/dbsc/refresh", &[], &[("sec-secure-session-id", &id)]),
    )
    .await
    .header("secure-session-challenge")
    .unwrap()
    .to_owned();
    let forged = Device::new().refresh(&sf_param(&ch, None));
    let r = send(
        &f.app,
        dbsc_req(
            "/auth/dbsc/refresh",
            &[],
            &[
                ("sec-secure-session-id", &id),
                ("secure-session-response", &forged),
            ],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.set_cookies().is_empty());
}

#[tokio::test]
async fn db_10_logout_ends_the_dbsc_session() {
    let f = dbsc_fixture(None);
    let b = login_and_register(&f.app, "alice").await;
    let logout = Request::post("/logout")
        .header(header::COOKIE, format!("{}; {}", b.session, b.bound))
        .header("sec-fetch-site", "same-origin")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, logout).await.status, StatusCode::OK);
    let id = format!("\"{}\"", b.handle);
    let r = send(
        &f.app,
        dbsc_req("/auth/dbsc/refresh", &[], &[("sec-secure-session-id", &id)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap(),
        json!({"continue": false})
    );
    assert!(r.set_cookies().is_empty());
    assert_hardened(&r);
}

#[tokio::test]
async fn db_10_logout_with_the_session_cookie_alone_still_revokes() {
    let f = dbsc_fixture(None);
    let b = login_and_register(&f.app, "alice").await;
    let logout = Request::post("/logout")
        .header(header::COOKIE, &b.session)
        .header("sec-fetch-site", "same-origin")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, logout).await.status, StatusCode::OK);
    let r = send(&f.app, get_with("/me", &[b.session.clone(), b.bound.clone()])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn db_11_unknown_session_id_is_404_never_403() {
    let f = dbsc_fixture(None);
    let r = send(
        &f.app,
        dbsc_req(
            "/auth/dbsc/refresh",
            &[],
            &[("sec-secure-session-id", "\"ses_unknown\"")],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_hardened(&r);
    // An unbound session is no DBSC session either.
    let handle = do_login(&f.app, "alice", None).await.body;
    let id = format!("\"{handle}\"");
    let r = send(
        &f.app,
        dbsc_req("/auth/dbsc/refresh", &[], &[("sec-secure-session-id", &id)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&f.app, dbsc_req("/auth/dbsc/refresh", &[], &[])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn db_14_unregistered_sessions_work_as_cookie_sessions() {
    let f = dbsc_fixture(None);
    let s = do_login(&f.app, "alice", None).await.token();
    let r = send(&f.app, req(Method::GET, "/me", Some(&s))).await;
    assert_eq!(r.body, "alice");
    // Only a login offers registration.
    assert!(r.header("secure-session-registration").is_none());
}

#[tokio::test]
async fn required_level_step_up_only_from_a_bound_session() {
    let f = dbsc_fixture(Some(2));
    let s = do_login(&f.app, "alice", None).await.token();
    let r = send(&f.app, req(Method::POST, "/elevate", Some(&s))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("device-bound"), "{}", r.body);

    let b = login_and_register(&f.app, "bob").await;
    let elevate = Request::post("/elevate")
        .header(header::COOKIE, format!("{}; {}", b.session, b.bound))
        .header("sec-fetch-site", "same-origin")
        .body(Body::empty())
        .unwrap();
    let r = send(&f.app, elevate).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[test]
fn with_dbsc_needs_a_replay_store_and_a_distinct_cookie_name() {
    let sessions = Sessions::new(
        Arc::new(MemoryStore::new()),
        Arc::new(ManualClock::new(Timestamp::from_unix_secs(1))),
        SessionPolicy::default(),
    );
    let sealer = Arc::new(Sealer::new(&[1; 32]));
    let layer = SessionLayer::new(sessions.clone(), CookieConfig::default());
    assert!(matches!(
        layer.with_dbsc(DbscOptions::new(sealer.clone())),
        Err(ConfigError::DbscStore)
    ));
    let layer =
        SessionLayer::from_store_url("memory://", SessionPolicy::default(), CookieConfig::default()).unwrap();
    assert!(layer.clone().with_dbsc(DbscOptions::new(sealer.clone())).is_ok());
    let same = DbscOptions {
        cookie_name: NAME.into(),
        ..DbscOptions::new(sealer)
    };
    assert!(matches!(layer.with_dbsc(same), Err(ConfigError::DbscCookieName)));
}

#[tokio::test]
async fn db_16_a_skipped_refresh_leaves_the_request_unbound() {
    let f = dbsc_fixture(None);
    let b = login_and_register(&f.app, "alice").await;
    let r = Request::post("/action")
        .header(header::COOKIE, &b.session)
        .header("sec-fetch-site", "same-origin")
        .header(
            "secure-session-skipped",
            format!("unreachable;session_identifier=\"{}\"", b.handle),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, r).await.status, StatusCode::UNAUTHORIZED);
}
