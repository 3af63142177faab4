//! DBSC through the service (SPEC §4.5): `dbsc: true` on login, the
//! registration and refresh endpoints, the bound cookie at `/auth/verify`,
//! logout ending the DBSC session, `required_level`. A protocol-level
//! client here signs the proofs Chromium would (checklist DB rows).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use tessera_core::b64url;

use super::*;

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

/// `name=value` of a `Set-Cookie`.
fn cookie_pair(res: &Resp) -> String {
    let set = res.headers[header::SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// A quoted sf-string parameter (`challenge="…"`, `id="…"`) or the leading
/// sf-string of a header value.
fn sf_param(value: &str, name: Option<&str>) -> String {
    let rest = match name {
        Some(n) => value.split(&format!("{n}=\"")).nth(1).unwrap(),
        None => value.strip_prefix('"').unwrap(),
    };
    rest.split('"').next().unwrap().to_owned()
}

fn dbsc_config(required_level: Option<u8>) -> Config {
    let mut c = test_config();
    c.dbsc.enabled = true;
    c.dbsc.required_level = required_level;
    c
}

struct Login {
    handle: String,
    token: String,
    session_cookie: String,
    registration: String,
}

impl H {
    async fn dbsc_login(&self, subject: &str) -> Login {
        let r = self
            .api(
                Method::POST,
                "/v1/sessions",
                Some(json!({"subject": subject, "dbsc": true})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        Login {
            handle: r.body["session"]["handle"].as_str().unwrap().to_owned(),
            token: r.str("session_token").to_owned(),
            session_cookie: r.str("cookie").split(';').next().unwrap().to_owned(),
            registration: r.str("dbsc_registration").to_owned(),
        }
    }

    async fn dbsc_post(&self, path: &str, cookies: &[&str], headers: &[(&str, &str)]) -> Resp {
        let mut b = Request::post(path);
        if !cookies.is_empty() {
            b = b.header(header::COOKIE, cookies.join("; "));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    async fn register(&self, login: &Login, device: &Device) -> Resp {
        let challenge = sf_param(&login.registration, Some("challenge"));
        self.dbsc_post(
            "/auth/dbsc/register",
            &[&login.session_cookie],
            &[("secure-session-response", &device.registration(&challenge))],
        )
        .await
    }

    async fn verify_with(&self, cookies: &[&str]) -> Resp {
        self.send(
            Request::get("/auth/verify")
                .header(header::COOKIE, cookies.join("; "))
                .header("x-forwarded-method", "GET")
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }
}

#[tokio::test]
async fn db_01_db_04_db_05_login_offers_dbsc_and_registration_binds_the_session() {
    let h = harness_with(dbsc_config(None)).await;
    let login = h.dbsc_login("alice").await;
    assert!(
        login
            .registration
            .starts_with("(ES256 RS256);path=\"/auth/dbsc/register\";challenge=\""),
        "{}",
        login.registration
    );
    let device = Device::new();
    let r = h.register(&login, &device).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(r.body["session_identifier"], login.handle.as_str());
    assert_eq!(r.body["credentials"][0]["name"], "__Host-tessera-dbsc");
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    let attrs = r.body["credentials"][0]["attributes"].as_str().unwrap();
    assert!(set.contains(attrs), "DB-04: {set} vs {attrs}");
    // The binding shows in the session view, as a thumbprint only.
    let v = h
        .api(Method::GET, &format!("/v1/sessions/{}", login.handle), None)
        .await;
    assert_eq!(v.body["session"]["binding"]["type"], "dbsc", "{}", v.text);
    assert_eq!(v.body["session"]["binding"]["jkt"].as_str().unwrap().len(), 43);
    assert!(v.body["session"]["binding"].get("jwk").is_none());
    // DB-05: registering again (another key, the spent challenge) binds nothing new.
    let again = h.register(&login, &Device::new()).await;
    assert!(
        again.status.is_client_error() && again.status != StatusCode::FORBIDDEN,
        "{}",
        again.text
    );
}

#[tokio::test]
async fn db_09_db_06_db_08_bound_cookie_expires_and_is_refreshed_with_a_proof() {
    let h = harness_with(dbsc_config(None)).await;
    let login = h.dbsc_login("alice").await;
    let device = Device::new();
    let bound = cookie_pair(&h.register(&login, &device).await);
    let ok = h.verify_with(&[&login.session_cookie, &bound]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    // DB-09: the long-lived cookie alone is not enough.
    let r = h.verify_with(&[&login.session_cookie]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    // Past the bound cookie's lifetime (600 s), a copy of both cookies fails.
    h.clock.advance_secs(601);
    let r = h.verify_with(&[&login.session_cookie, &bound]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // DB-06: the browser asks without a proof and gets a challenge.
    let id = format!("\"{}\"", login.handle);
    let r = h
        .dbsc_post("/auth/dbsc/refresh", &[], &[("sec-secure-session-id", &id)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let challenge_hdr = r.headers["secure-session-challenge"].to_str().unwrap().to_owned();
    assert_eq!(sf_param(&challenge_hdr, Some("id")), login.handle);
    let proof = device.refresh(&sf_param(&challenge_hdr, None));
    let r = h
        .dbsc_post(
            "/auth/dbsc/refresh",
            &[],
            &[
                ("sec-secure-session-id", &id),
                ("secure-session-response", &proof),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["session_identifier"], login.handle.as_str(), "DB-08");
    let fresh = cookie_pair(&r);
    let ok = h.verify_with(&[&login.session_cookie, &fresh]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    // DB-08: the pushed challenge serves the next refresh at once.
    let pushed = r.headers["secure-session-challenge"].to_str().unwrap().to_owned();
    let r = h
        .dbsc_post(
            "/auth/dbsc/refresh",
            &[],
            &[
                ("sec-secure-session-id", &id),
                (
                    "secure-session-response",
                    &device.refresh(&sf_param(&pushed, None)),
                ),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // DB-07: another key's proof gets no cookie.
    let c = sf_param(r.headers["secure-session-challenge"].to_str().unwrap(), None);
    let r = h
        .dbsc_post(
            "/auth/dbsc/refresh",
            &[],
            &[
                ("sec-secure-session-id", &id),
                ("secure-session-response", &Device::new().refresh(&c)),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.headers.contains_key(header::SET_COOKIE));
    // The refused proof is in the audit log.
    let ev = h.api(Method::GET, "/v1/events?kind=binding_failed", None).await;
    let events = ev.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{}", ev.text);
    assert_eq!(events[0]["handle"], login.handle.as_str());
}

#[tokio::test]
async fn db_09_another_sessions_bound_cookie_does_not_help() {
    let h = harness_with(dbsc_config(None)).await;
    let (a, b) = (h.dbsc_login("alice").await, h.dbsc_login("bob").await);
    let bound_a = cookie_pair(&h.register(&a, &Device::new()).await);
    let _ = h.register(&b, &Device::new()).await;
    let r = h.verify_with(&[&b.session_cookie, &bound_a]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "SC-14");
}

#[tokio::test]
async fn db_10_db_11_logout_ends_the_dbsc_session_and_unknown_ids_are_not_403() {
    let h = harness_with(dbsc_config(None)).await;
    let login = h.dbsc_login("alice").await;
    let device = Device::new();
    h.register(&login, &device).await;
    let id = format!("\"{}\"", login.handle);
    let r = h
        .dbsc_post("/auth/dbsc/refresh", &[], &[("sec-secure-session-id", &id)])
        .await;
    let c = sf_param(r.headers["secure-session-challenge"].to_str().unwrap(), None);
    let out = h
        .api(
            Method::POST,
            "/v1/sessions/revoke",
            Some(json!({"session_token": login.token})),
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let r = h
        .dbsc_post(
            "/auth/dbsc/refresh",
            &[],
            &[
                ("sec-secure-session-id", &id),
                ("secure-session-response", &device.refresh(&c)),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"continue": false}));
    assert!(!r.headers.contains_key(header::SET_COOKIE));
    // DB-11: unknown id → 404, missing id → 400; never 403, never 5xx.
    let r = h
        .dbsc_post(
            "/auth/dbsc/refresh",
            &[],
            &[("sec-secure-session-id", "\"ses_nope\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h.dbsc_post("/auth/dbsc/refresh", &[], &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn dbsc_required_level_needs_a_bound_session_and_off_means_404() {
    let h = harness_with(dbsc_config(Some(2))).await;
    let elevate = |token: String| {
        let h = &h;
        async move {
            h.api(
                Method::POST,
                "/v1/sessions/elevate",
                Some(json!({"session_token": token, "auth": {"level": 2, "methods": ["otp"]}})),
            )
            .await
        }
    };
    let plain = h.dbsc_login("bob").await;
    assert_eq!(elevate(plain.token.clone()).await.status, StatusCode::FORBIDDEN);
    let bound = h.dbsc_login("alice").await;
    h.register(&bound, &Device::new()).await;
    let r = elevate(bound.token.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let off = harness().await;
    let r = off
        .dbsc_post("/auth/dbsc/refresh", &[], &[("sec-secure-session-id", "\"x\"")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn db_12_db_17_refresh_endpoint_is_narrow_and_ignores_the_legacy_format() {
    let h = harness_with(dbsc_config(None)).await;
    let login = h.dbsc_login("alice").await;
    let device = Device::new();
    // DB-17: the origin-trial-1 header (`Sec-Session-Response`) binds nothing.
    let challenge = sf_param(&login.registration, Some("challenge"));
    let r = h
        .dbsc_post(
            "/auth/dbsc/register",
            &[&login.session_cookie],
            &[("sec-session-response", &device.registration(&challenge))],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let v = h
        .api(Method::GET, &format!("/v1/sessions/{}", login.handle), None)
        .await;
    assert_eq!(v.body["session"]["binding"], Value::Null);
    // DB-12: a cross-origin caller gets no CORS grant; nothing is framable.
    h.register(&login, &device).await;
    let id = format!("\"{}\"", login.handle);
    let r = h
        .dbsc_post(
            "/auth/dbsc/refresh",
            &[],
            &[("sec-secure-session-id", &id), ("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.headers.contains_key("access-control-allow-origin"));
    assert!(!r.headers.contains_key("access-control-allow-credentials"));
    assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(r.headers["cross-origin-resource-policy"], "same-origin");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
}
