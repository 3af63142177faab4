//! In-process tests (`oneshot`, `memory://`) of token issuance, the OAuth
//! endpoints, the revocation feed and the forward-auth Bearer branch, named
//! after the standards-checklist items they pin.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine;
use serde_json::{Value, json};
use tessera_core::access::VerifyError;
use tessera_core::{Clock, ManualClock, MemoryStore, Store, Timestamp, TokenHash};
use tower::ServiceExt;

use crate::app::{AppState, build_with_clock};
use crate::auth::create_api_key;
use crate::config::{ClientConfig, ClientKindConfig, Config};

mod client_credentials;
mod dbsc;
mod dpop;
mod exchange;
mod mtls;
mod rate_limits;

struct H {
    router: Router,
    state: AppState,
    key: String,
    clock: ManualClock,
}

#[derive(Debug)]
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    body: Value,
}

impl Resp {
    #[track_caller]
    fn assert_oauth_error(&self, status: u16, error: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(self.body["error"], error, "{}", self.text);
        assert!(self.body["error_description"].is_string(), "{}", self.text);
        assert_eq!(self.headers[header::CONTENT_TYPE], "application/json");
        self.assert_no_store();
    }

    #[track_caller]
    fn assert_no_store(&self) {
        assert_eq!(self.headers[header::CACHE_CONTROL], "no-store", "{self:?}");
        assert_eq!(self.headers[header::PRAGMA], "no-cache", "{self:?}");
    }

    fn str(&self, k: &str) -> &str {
        self.body[k].as_str().unwrap_or("")
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn client(id: &str, kind: ClientKindConfig, secret: Option<&str>) -> ClientConfig {
    ClientConfig {
        client_id: id.into(),
        kind,
        secret_sha256: secret.map(|s| hex(&TokenHash::of_secret(s.as_bytes()).0)),
        scopes: vec!["*".into()],
        audiences: vec!["*".into()],
        refresh_tokens: true,
        dpop_bound_access_tokens: false,
        token_endpoint_auth_method: None,
        jwks: None,
        grant_types: vec!["refresh_token".into()],
    }
}

fn test_config() -> Config {
    let exchange = "urn:ietf:params:oauth:grant-type:token-exchange".to_owned();
    let mut rs = client("rs", ClientKindConfig::Confidential, Some("rs-secret"));
    rs.audiences = vec!["api".into()];
    rs.refresh_tokens = false;
    rs.grant_types = vec![exchange.clone()];
    let mut backend = client("backend", ClientKindConfig::Confidential, Some("backend-secret"));
    backend.grant_types.push(exchange);
    let mut spa = client("spa", ClientKindConfig::Public, None);
    spa.scopes = vec!["read".into(), "write".into()];
    let mut norefresh = client("norefresh", ClientKindConfig::Public, None);
    norefresh.refresh_tokens = false;
    Config {
        store: Some("memory://".into()),
        clients: vec![rs, spa, norefresh, backend],
        ..Config::default()
    }
}

async fn harness_with(config: Config) -> H {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
    let (_, secret) = create_api_key(
        store.as_ref(),
        "test",
        &[tessera_core::ApiKeyScope::Admin],
        clock.now(),
    )
    .await
    .unwrap();
    let app = build_with_clock(config, store, Arc::new(clock.clone()));
    crate::issuer::start(&app.state.oauth).await.unwrap();
    H {
        router: app.router,
        state: app.state,
        key: secret.expose().to_owned(),
        clock,
    }
}

async fn harness() -> H {
    harness_with(test_config()).await
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

impl H {
    async fn send(&self, req: Request<Body>) -> Resp {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            body,
        }
    }

    /// `GET /auth/verify` with `Authorization: Bearer <token>`.
    async fn forward_auth_bearer(&self, token: &str) -> Resp {
        self.send(
            Request::get("/auth/verify")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn api(&self, method: Method, uri: &str, body: Option<Value>) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.key));
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(b.body(body).unwrap()).await
    }

    async fn form(&self, uri: &str, body: &str, authorization: Option<&str>) -> Resp {
        let mut b = Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(a) = authorization {
            b = b.header(header::AUTHORIZATION, a);
        }
        self.send(b.body(Body::from(body.to_owned())).unwrap()).await
    }

    async fn get(&self, uri: &str) -> Resp {
        self.send(Request::get(uri).body(Body::empty()).unwrap()).await
    }

    /// `POST /v1/sessions` with `tokens`.
    async fn login(&self, subject: &str, tokens: Value) -> Resp {
        let r = self
            .api(
                Method::POST,
                "/v1/sessions",
                Some(json!({ "subject": subject, "tokens": tokens })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r
    }

    async fn refresh(&self, rt: &str, extra: &str) -> Resp {
        self.form(
            "/oauth2/token",
            &format!("grant_type=refresh_token&refresh_token={rt}{extra}"),
            None,
        )
        .await
    }

    fn claims(&self, at: &str) -> tessera_core::AccessClaims {
        let tokens = &self.state.oauth.tokens;
        tokens.verify_access_token(at, &tokens.own_token_rules()).unwrap()
    }

    async fn active_sessions(&self, subject: &str) -> usize {
        let r = self
            .api(Method::GET, &format!("/v1/subjects/{subject}/sessions"), None)
            .await;
        r.body["sessions"].as_array().unwrap().len()
    }
}

// ------------------------------------------------------------------ issuance on login

#[tokio::test]
async fn jw_13_tokens_on_create() {
    let h = harness().await;
    let r = h.login("alice", json!({ "scope": "read write" })).await;
    assert_eq!(r.str("token_type"), "Bearer");
    assert_eq!(r.body["expires_in"], 300);
    assert_eq!(r.str("scope"), "read write");
    assert!(r.str("refresh_token").starts_with("tsr_"), "{}", r.text);
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    let c = h.claims(r.str("access_token"));
    assert_eq!(c.sid.as_deref(), r.body["session"]["handle"].as_str());
    assert_eq!(c.sub, "alice");
    assert_eq!(c.client_id, "default");
    assert_eq!(c.iss, "http://127.0.0.1:8080");
    assert!(c.aud.contains("tessera"));
    assert_eq!(c.scope.as_deref(), Some("read write"));
    assert_eq!(c.acr.as_deref(), Some("1"));
    assert!(c.auth_time.is_some() && !c.jti.is_empty());
    // Without `tokens`, no token members.
    let r = h
        .api(Method::POST, "/v1/sessions", Some(json!({ "subject": "bob" })))
        .await;
    assert!(r.body.get("access_token").is_none() && r.body.get("token_type").is_none());
    // A client without refresh tokens gets none (RT-14).
    let r = h.login("carol", json!({ "client_id": "norefresh" })).await;
    assert!(r.body.get("refresh_token").is_none(), "{}", r.text);
    assert!(r.str("access_token").contains('.'));
}

#[tokio::test]
async fn no_session_left_behind_when_tokens_request_is_invalid() {
    let h = harness().await;
    let cases = [
        (json!({ "client_id": "spa", "scope": "admin" }), "tokens.scope"),
        (json!({ "client_id": "ghost" }), "tokens.client_id"),
        (
            json!({ "client_id": "rs", "audience": "other" }),
            "tokens.audience",
        ),
        (json!({ "audience": [] }), "tokens.audience"),
        (json!({ "scope": "bad\"scope" }), "tokens.scope"),
        (json!({ "colour": "red" }), "tokens"),
    ];
    for (tokens, field) in cases {
        let r = h
            .api(
                Method::POST,
                "/v1/sessions",
                Some(json!({ "subject": "mallory", "tokens": tokens })),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{tokens}: {}", r.text);
        assert_eq!(r.body["code"], "validation_failed");
        assert!(r.str("detail").starts_with(field), "{}", r.text);
    }
    assert_eq!(h.active_sessions("mallory").await, 0);
    let events = h.api(Method::GET, "/v1/events?subject=mallory", None).await;
    assert_eq!(events.body["events"], json!([]), "no partial write");
}

#[tokio::test]
async fn fx_elevate_with_tokens_ends_the_old_refresh_family() {
    let h = harness().await;
    let r = h.login("dave", json!({})).await;
    let old_rt = r.str("refresh_token").to_owned();
    let e = h
        .api(
            Method::POST,
            "/v1/sessions/elevate",
            Some(json!({
                "session_token": r.str("session_token"),
                "auth": { "level": 2, "methods": ["pwd", "otp"] },
                "tokens": { "scope": "admin" },
            })),
        )
        .await;
    assert_eq!(e.status, StatusCode::OK, "{}", e.text);
    assert_eq!(h.claims(e.str("access_token")).acr.as_deref(), Some("2"));
    assert_eq!(e.str("scope"), "admin");
    h.refresh(&old_rt, "")
        .await
        .assert_oauth_error(400, "invalid_grant");
    let ok = h.refresh(e.str("refresh_token"), "").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    // A bad `tokens` on elevate changes nothing: the token still works.
    let bad = h
        .api(
            Method::POST,
            "/v1/sessions/elevate",
            Some(json!({
                "session_token": e.str("session_token"),
                "auth": { "level": 3 },
                "tokens": { "client_id": "ghost" },
            })),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    let v = h
        .api(
            Method::POST,
            "/v1/sessions/verify",
            Some(json!({ "session_token": e.str("session_token") })),
        )
        .await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.body["session"]["auth"]["level"], 2);
}

// ------------------------------------------------------------------ token endpoint

#[tokio::test]
async fn md_08_token_endpoint_happy_path_and_ex_13_headers() {
    let h = harness().await;
    let r = h.login("erin", json!({ "scope": "read write" })).await;
    let rt1 = r.str("refresh_token").to_owned();
    let t = h.refresh(&rt1, "&client_id=default&scope=read").await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    t.assert_no_store();
    assert_eq!(t.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(t.str("token_type"), "Bearer");
    assert_eq!(t.body["expires_in"], 300);
    assert_eq!(t.str("scope"), "read");
    let rt2 = t.str("refresh_token").to_owned();
    assert!(rt2.starts_with("tsr_") && rt2 != rt1, "RT-01 rotation");
    let c = h.claims(t.str("access_token"));
    assert_eq!(c.scope.as_deref(), Some("read"));
    assert_eq!(c.sub, "erin");
    // Without client_id the public client is implied by the token.
    let t2 = h.refresh(&rt2, "").await;
    assert_eq!(t2.status, StatusCode::OK, "{}", t2.text);
    // A retry of rt2 inside the grace window gets the same successor (RT-11).
    let t3 = h.refresh(&rt2, "").await;
    assert_eq!(t3.str("refresh_token"), t2.str("refresh_token"));
}

#[tokio::test]
async fn md_08_invalid_request() {
    let h = harness().await;
    let r = h.login("frank", json!({})).await;
    let rt = r.str("refresh_token");
    for body in [
        "grant_type=refresh_token".to_owned(),
        format!("refresh_token={rt}"),
        format!("grant_type=refresh_token&refresh_token={rt}&refresh_token={rt}"),
        format!("grant_type=refresh_token&refresh_token={rt}&client_secret=x"),
        "grant_type=refresh_token&refresh_token=%zz".to_owned(),
    ] {
        h.form("/oauth2/token", &body, None)
            .await
            .assert_oauth_error(400, "invalid_request");
    }
    // JSON is not a token request.
    let res = h
        .send(
            Request::post("/oauth2/token")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({ "grant_type": "refresh_token", "refresh_token": rt }).to_string(),
                ))
                .unwrap(),
        )
        .await;
    res.assert_oauth_error(400, "invalid_request");
    // Basic plus client_secret: two methods.
    h.form(
        "/oauth2/token",
        &format!("grant_type=refresh_token&refresh_token={rt}&client_secret=y"),
        Some(&basic("backend", "backend-secret")),
    )
    .await
    .assert_oauth_error(400, "invalid_request");
}

#[tokio::test]
async fn md_08_invalid_client_is_401_with_basic_challenge() {
    let h = harness().await;
    let r = h.login("gina", json!({ "client_id": "backend" })).await;
    let rt = r.str("refresh_token").to_owned();
    let body = format!("grant_type=refresh_token&refresh_token={rt}");
    // Wrong secret over Basic: 401 and the Basic challenge.
    let e = h
        .form("/oauth2/token", &body, Some(&basic("backend", "wrong")))
        .await;
    e.assert_oauth_error(401, "invalid_client");
    assert_eq!(e.headers[header::WWW_AUTHENTICATE], "Basic realm=\"tessera\"");
    // Malformed Basic too.
    let e = h.form("/oauth2/token", &body, Some("Basic !!!")).await;
    e.assert_oauth_error(401, "invalid_client");
    assert!(e.headers.contains_key(header::WWW_AUTHENTICATE));
    // Wrong secret in the body: 401, no challenge.
    let e = h
        .form(
            "/oauth2/token",
            &format!("{body}&client_id=backend&client_secret=wrong"),
            None,
        )
        .await;
    e.assert_oauth_error(401, "invalid_client");
    assert!(!e.headers.contains_key(header::WWW_AUTHENTICATE));
    // A confidential client's token without authentication (RT-06).
    h.form("/oauth2/token", &body, None)
        .await
        .assert_oauth_error(401, "invalid_client");
    // An unknown client.
    h.form("/oauth2/token", &format!("{body}&client_id=ghost"), None)
        .await
        .assert_oauth_error(401, "invalid_client");
    // The right secret, either way, works; ids are form-urlencoded in Basic.
    let ok = h
        .form("/oauth2/token", &body, Some(&basic("backend", "backend-secret")))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let rt2 = ok.str("refresh_token");
    let ok = h
        .form(
            "/oauth2/token",
            &format!(
                "grant_type=refresh_token&refresh_token={rt2}&client_id=backend&client_secret=backend-secret"
            ),
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
}

#[tokio::test]
async fn md_08_invalid_grant_and_rt_02_reuse() {
    let h = harness().await;
    h.refresh("garbage", "&client_id=default")
        .await
        .assert_oauth_error(400, "invalid_grant");
    h.refresh(&format!("tsr_{}", "A".repeat(43)), "")
        .await
        .assert_oauth_error(400, "invalid_grant");
    let r = h.login("hank", json!({})).await;
    let rt1 = r.str("refresh_token").to_owned();
    // Another client's token (RT-06).
    h.refresh(&rt1, "&client_id=spa")
        .await
        .assert_oauth_error(400, "invalid_grant");
    let t = h.refresh(&rt1, "").await;
    assert_eq!(t.status, StatusCode::OK);
    let rt2 = t.str("refresh_token").to_owned();
    // Reuse outside the grace window: the family and session end (RT-02).
    h.clock.advance_secs(11);
    h.refresh(&rt1, "").await.assert_oauth_error(400, "invalid_grant");
    h.refresh(&rt2, "").await.assert_oauth_error(400, "invalid_grant");
    assert_eq!(h.active_sessions("hank").await, 0);
}

#[tokio::test]
async fn md_08_unauthorized_client() {
    let h = harness().await;
    let r = h.login("ivan", json!({})).await;
    h.refresh(r.str("refresh_token"), "&client_id=norefresh")
        .await
        .assert_oauth_error(400, "unauthorized_client");
}

#[tokio::test]
async fn md_07_password_and_other_grants_are_unsupported() {
    let h = harness().await;
    for grant in [
        "password&username=a&password=b",
        "authorization_code&code=x",
        "implicit",
        "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
    ] {
        h.form(
            "/oauth2/token",
            &format!("grant_type={grant}&client_id=default"),
            None,
        )
        .await
        .assert_oauth_error(400, "unsupported_grant_type");
    }
}

#[tokio::test]
async fn rt_07_a_refresh_cannot_widen_scope() {
    let h = harness().await;
    let r = h.login("judy", json!({ "scope": "read" })).await;
    h.refresh(r.str("refresh_token"), "&scope=read%20admin")
        .await
        .assert_oauth_error(400, "invalid_scope");
}

// ------------------------------------------------------------------ revocation and introspection

#[tokio::test]
async fn rv_05_revoke_answers_200_for_garbage() {
    let h = harness().await;
    for (body, auth) in [
        ("token=garbage", None),
        ("token=garbage&client_id=default", None),
        ("token=garbage&token_type_hint=refresh_token", None),
        ("token=garbage", Some(basic("backend", "backend-secret"))),
    ] {
        let r = h.form("/oauth2/revoke", body, auth.as_deref()).await;
        assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.text);
        r.assert_no_store();
    }
    // Bad credentials are still 401 (RV-01) and a missing token 400.
    h.form("/oauth2/revoke", "token=garbage", Some(&basic("backend", "nope")))
        .await
        .assert_oauth_error(401, "invalid_client");
    h.form("/oauth2/revoke", "token_type_hint=access_token", None)
        .await
        .assert_oauth_error(400, "invalid_request");
}

#[tokio::test]
async fn rv_01_get_revoke_is_405() {
    let h = harness().await;
    let r = h.get("/oauth2/revoke?token=x").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = h.get("/oauth2/token").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn rv_01_confidential_client_must_authenticate_to_revoke() {
    let h = harness().await;
    let r = h.login("kate", json!({ "client_id": "backend" })).await;
    let rt = r.str("refresh_token").to_owned();
    h.form("/oauth2/revoke", &format!("token={rt}"), None)
        .await
        .assert_oauth_error(401, "invalid_client");
    assert_eq!(h.active_sessions("kate").await, 1, "not revoked");
    let ok = h
        .form(
            "/oauth2/revoke",
            &format!("token={rt}"),
            Some(&basic("backend", "backend-secret")),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(h.active_sessions("kate").await, 0);
}

#[tokio::test]
async fn rv_03_rv_04_rv_06_revoking_a_refresh_token_ends_its_access_tokens() {
    let h = harness().await;
    let r = h.login("liam", json!({})).await;
    let rt = r.str("refresh_token").to_owned();
    let at = r.str("access_token").to_owned();
    // A wrong hint does not block revocation (RV-06).
    let ok = h
        .form(
            "/oauth2/revoke",
            &format!("token={rt}&token_type_hint=access_token"),
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    h.refresh(&rt, "").await.assert_oauth_error(400, "invalid_grant");
    let i = h
        .form(
            "/oauth2/introspect",
            &format!("token={at}"),
            Some(&format!("Bearer {}", h.key)),
        )
        .await;
    assert_eq!(i.text, r#"{"active":false}"#);
}

#[tokio::test]
async fn rv_08_rv_13_introspection_requires_caller_authentication() {
    let h = harness().await;
    let r = h.login("mia", json!({ "audience": "api" })).await;
    let at = r.str("access_token").to_owned();
    let body = format!("token={at}");
    let e = h.form("/oauth2/introspect", &body, None).await;
    e.assert_oauth_error(401, "invalid_client");
    assert!(e.headers.contains_key(header::WWW_AUTHENTICATE));
    // A public client cannot introspect.
    h.form("/oauth2/introspect", &format!("{body}&client_id=default"), None)
        .await
        .assert_oauth_error(401, "invalid_client");
    // Wrong client secret / bad API key.
    h.form("/oauth2/introspect", &body, Some(&basic("rs", "nope")))
        .await
        .assert_oauth_error(401, "invalid_client");
    let e = h
        .form(
            "/oauth2/introspect",
            &body,
            Some(&format!("Bearer tsk_{}", "A".repeat(43))),
        )
        .await;
    e.assert_oauth_error(401, "invalid_token");
    assert_eq!(
        e.headers[header::WWW_AUTHENTICATE],
        "Bearer error=\"invalid_token\""
    );
    // An API key sees everything.
    let ok = h
        .form("/oauth2/introspect", &body, Some(&format!("Bearer {}", h.key)))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    ok.assert_no_store();
    assert_eq!(ok.body["active"], true);
    assert_eq!(ok.body["sub"], "mia");
    assert_eq!(ok.body["client_id"], "default");
    assert!(ok.body["exp"].is_i64() && ok.body["iat"].is_i64() && ok.body["auth_time"].is_i64());
    // A confidential client (resource server) sees tokens for its audience
    // (RV-12) and nothing else.
    let ok = h
        .form("/oauth2/introspect", &body, Some(&basic("rs", "rs-secret")))
        .await;
    assert_eq!(ok.body["active"], true, "{}", ok.text);
    let other = h.login("mia", json!({})).await;
    let hidden = h
        .form(
            "/oauth2/introspect",
            &format!("token={}", other.str("access_token")),
            Some(&basic("rs", "rs-secret")),
        )
        .await;
    assert_eq!(hidden.text, r#"{"active":false}"#);
    // A refresh token introspects too.
    let rt = h
        .form(
            "/oauth2/introspect",
            &format!(
                "token={}&client_id=rs&client_secret=rs-secret",
                r.str("refresh_token")
            ),
            None,
        )
        .await;
    assert_eq!(rt.body["active"], true, "{}", rt.text);
    assert_eq!(rt.body["token_type"], "refresh_token");
}

#[tokio::test]
async fn rv_09_inactive_is_exactly_active_false() {
    let h = harness().await;
    let auth = format!("Bearer {}", h.key);
    for token in [
        "garbage".to_owned(),
        format!("tsr_{}", "A".repeat(43)),
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".to_owned(),
    ] {
        let r = h
            .form("/oauth2/introspect", &format!("token={token}"), Some(&auth))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.text, r#"{"active":false}"#);
        r.assert_no_store();
    }
    // Expired (RV-11).
    let r = h.login("nina", json!({})).await;
    h.clock.advance_secs(301);
    let e = h
        .form(
            "/oauth2/introspect",
            &format!("token={}", r.str("access_token")),
            Some(&auth),
        )
        .await;
    assert_eq!(e.text, r#"{"active":false}"#);
}

/// Defect 12, emergency key withdrawal: once the signing key is revoked
/// (`tessera keys revoke`, here in this process), its tokens are refused by
/// introspection and `/auth/verify` (they verify against the key snapshot),
/// it leaves the JWKS, and a fresh key signs at once.
#[tokio::test]
async fn revoked_signing_key_tokens_are_refused_and_a_fresh_key_signs() {
    let h = harness().await;
    let r = h.login("kim", json!({})).await;
    let at = r.str("access_token").to_owned();
    let kid = h.state.oauth.keys.signer().unwrap().kid.clone();
    let introspect = |token: String| {
        let auth = format!("Bearer {}", h.key);
        let h = &h;
        async move {
            h.form("/oauth2/introspect", &format!("token={token}"), Some(&auth))
                .await
        }
    };
    assert_eq!(introspect(at.clone()).await.body["active"], true);
    assert_eq!(h.forward_auth_bearer(&at).await.status, StatusCode::OK);

    h.clock.advance_secs(1);
    let fresh = h
        .state
        .oauth
        .keys
        .revoke(&kid)
        .await
        .unwrap()
        .expect("a fresh signer");
    assert_eq!(introspect(at.clone()).await.text, r#"{"active":false}"#);
    assert_eq!(h.forward_auth_bearer(&at).await.status, StatusCode::UNAUTHORIZED);
    let jwks = h.get("/.well-known/jwks.json").await;
    let kids: Vec<&str> = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec![fresh.as_str()]);
    // New tokens come from the fresh key and verify; the session lives on.
    let again = h.login("kim", json!({})).await;
    let at2 = again.str("access_token").to_owned();
    assert_eq!(h.state.oauth.keys.signer().unwrap().kid, fresh);
    assert_eq!(introspect(at2.clone()).await.body["active"], true);
    assert_eq!(h.forward_auth_bearer(&at2).await.status, StatusCode::OK);
    let t = h.refresh(again.str("refresh_token"), "").await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    assert_eq!(
        introspect(t.str("access_token").to_owned()).await.body["active"],
        true
    );
}

// ------------------------------------------------------------------ discovery

#[tokio::test]
async fn md_01_to_md_04_and_md_07_metadata() {
    let h = harness_with(Config {
        oauth: crate::config::OAuthConfig {
            issuer: Some("https://auth.example/t1".into()),
            ..Default::default()
        },
        ..test_config()
    })
    .await;
    let m = h.get("/.well-known/oauth-authorization-server/t1").await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text);
    assert_eq!(m.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        m.body,
        h.get("/.well-known/oauth-authorization-server").await.body
    );
    assert_eq!(m.body["issuer"], "https://auth.example/t1");
    for (k, v) in [
        ("token_endpoint", "https://auth.example/t1/oauth2/token"),
        ("jwks_uri", "https://auth.example/t1/.well-known/jwks.json"),
        ("revocation_endpoint", "https://auth.example/t1/oauth2/revoke"),
        (
            "introspection_endpoint",
            "https://auth.example/t1/oauth2/introspect",
        ),
    ] {
        assert_eq!(m.body[k], v, "{k}");
    }
    for k in [
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
    ] {
        assert!(m.body[k].as_array().is_some_and(|a| !a.is_empty()), "{k}");
    }
    assert_eq!(
        m.body["grant_types_supported"],
        json!([
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );
    for k in ["token", "revocation", "introspection"] {
        let methods = &m.body[format!("{k}_endpoint_auth_methods_supported")];
        assert!(
            methods.as_array().unwrap().iter().any(|a| a == "private_key_jwt"),
            "{k}"
        );
        assert_eq!(
            m.body[format!("{k}_endpoint_auth_signing_alg_values_supported")],
            json!(["ES256", "EdDSA", "PS256", "RS256"]),
            "{k}"
        );
    }
    // MD-04: no `none` in any *_signing_alg_values_supported.
    for (k, v) in m.body.as_object().unwrap() {
        if k.ends_with("_signing_alg_values_supported") {
            assert!(!v.as_array().unwrap().iter().any(|a| a == "none"), "{k}");
        }
    }
    // MD-02: issuer == the access token's iss, byte for byte.
    let r = h.login("olga", json!({})).await;
    assert_eq!(h.claims(r.str("access_token")).iss, m.str("issuer"));
    // An unrelated path is not metadata.
    assert_eq!(
        h.get("/.well-known/oauth-authorization-server/t2").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn jw_19_jwks_has_only_public_members() {
    let h = harness().await;
    // A second (pending) key is published too.
    h.state.oauth.keys.rotate(86_400).await.unwrap();
    let r = h.get("/.well-known/jwks.json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CACHE_CONTROL], "public, max-age=300");
    let keys = r.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{}", r.text);
    let mut kids = std::collections::HashSet::new();
    for k in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(k.get(private).is_none(), "{private} in {k}");
        }
        assert!(kids.insert(k["kid"].as_str().unwrap().to_owned()));
        assert_eq!(k["use"], "sig");
        assert!(k["alg"].is_string());
    }
    // JW-14: the access token's kid resolves in the JWKS.
    let at = h.login("pia", json!({})).await.str("access_token").to_owned();
    let header_b64 = at.split('.').next().unwrap();
    let hdr: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header_b64)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(hdr["typ"], "at+jwt");
    assert!(kids.contains(hdr["kid"].as_str().unwrap()));
}

// ------------------------------------------------------------------ revocation feed

#[tokio::test]
async fn feed_returns_a_revocation_with_its_until() {
    let h = harness().await;
    let unauth = h.get("/v1/revocations").await;
    assert_eq!(unauth.status, StatusCode::UNAUTHORIZED);
    let empty = h.api(Method::GET, "/v1/revocations", None).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
    assert_eq!(empty.body["revocations"], json!([]));
    let cursor = empty.str("next").to_owned();
    let r = h.login("quinn", json!({})).await;
    let handle = r.body["session"]["handle"].as_str().unwrap().to_owned();
    let d = h
        .api(Method::DELETE, &format!("/v1/sessions/{handle}"), None)
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    for uri in [
        "/v1/revocations".to_owned(),
        format!("/v1/revocations?after={cursor}"),
    ] {
        let f = h.api(Method::GET, &uri, None).await;
        assert_eq!(f.status, StatusCode::OK, "{}", f.text);
        assert_eq!(f.headers[header::CACHE_CONTROL], "no-store");
        let items = f.body["revocations"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{}", f.text);
        assert_eq!(items[0]["sid"], handle.as_str());
        let at = Timestamp::parse_rfc3339(items[0]["revoked_at"].as_str().unwrap()).unwrap();
        let until = Timestamp::parse_rfc3339(items[0]["until"].as_str().unwrap()).unwrap();
        assert_eq!(at, h.clock.now());
        assert_eq!(until, at.plus_secs(300 + 60));
        let next = f.str("next").to_owned();
        assert!(next.parse::<u64>().unwrap() > cursor.parse::<u64>().unwrap());
        // Nothing after it; `next` stays.
        let again = h
            .api(Method::GET, &format!("/v1/revocations?after={next}&wait=0"), None)
            .await;
        assert_eq!(again.body["revocations"], json!([]));
        assert_eq!(again.str("next"), next);
    }
    // Once its access tokens have expired it is no longer listed.
    h.clock.advance_secs(361);
    let f = h.api(Method::GET, "/v1/revocations", None).await;
    assert_eq!(f.body["revocations"], json!([]), "{}", f.text);
    // Bad parameters are 400 problems.
    for q in ["after=x", "wait=31", "wait=-1", "colour=red"] {
        let b = h.api(Method::GET, &format!("/v1/revocations?{q}"), None).await;
        assert_eq!(b.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(b.body["code"], "validation_failed");
    }
}

/// The snapshot (no `after`) answers in pages of at most 1000 with `more`
/// until the last, starts at the revocation window (older revocations are
/// not listed), and the pages add up to every live revocation once.
#[tokio::test]
async fn feed_snapshot_is_paged_from_the_revocation_window() {
    use tessera_core::{CreateSession, RevokeReason};
    let h = harness().await;
    let login = || CreateSession {
        subject: "mass".into(),
        auth: None,
        device: None,
        data: None,
        ttl: None,
        previous_session_token: None,
    };
    let policy = tessera_core::SessionPolicy {
        max_sessions_per_subject: None,
        ..tessera_core::SessionPolicy::default()
    };
    let sessions = tessera_core::Sessions::new(
        h.state.sessions.store().clone(),
        Arc::new(h.clock.clone()),
        policy,
    );
    // Revoked long ago: outside the window.
    for _ in 0..1200 {
        sessions.create(login()).await.unwrap();
    }
    assert_eq!(
        sessions
            .revoke_everyone(RevokeReason::Operator, 500)
            .await
            .unwrap(),
        1200
    );
    h.clock.advance_secs(3600);
    // "Sign everyone out": 2500 revocations inside the window.
    for _ in 0..2500 {
        sessions.create(login()).await.unwrap();
    }
    assert_eq!(
        sessions
            .revoke_everyone(RevokeReason::Operator, 500)
            .await
            .unwrap(),
        2500
    );

    let mut seen = std::collections::HashSet::new();
    let mut pages = Vec::new();
    let mut uri = "/v1/revocations".to_owned();
    loop {
        let f = h.api(Method::GET, &uri, None).await;
        assert_eq!(f.status, StatusCode::OK, "{}", f.text);
        let items = f.body["revocations"].as_array().unwrap();
        assert!(items.len() <= 1000, "page of {}", items.len());
        for i in items {
            assert!(seen.insert(i["sid"].as_str().unwrap().to_owned()), "listed twice");
        }
        pages.push(items.len());
        match f.body["more"].as_bool() {
            Some(true) => uri = format!("/v1/revocations?after={}", f.str("next")),
            Some(false) => break,
            None => panic!("no `more`: {}", f.text),
        }
        assert!(pages.len() < 10, "{pages:?}");
    }
    assert_eq!(pages, vec![1000, 1000, 500]);
    assert_eq!(seen.len(), 2500);
}

#[tokio::test]
async fn feed_long_polls_until_a_revocation_arrives() {
    let h = harness().await;
    let next = h
        .api(Method::GET, "/v1/revocations", None)
        .await
        .str("next")
        .to_owned();
    // Nothing arrives: the wait runs out with an empty answer.
    let started = std::time::Instant::now();
    let f = h
        .api(Method::GET, &format!("/v1/revocations?after={next}&wait=1"), None)
        .await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(f.body["revocations"], json!([]));
    assert_eq!(f.str("next"), next);

    // Revoked through the OAuth endpoint (wakes the waiter) and through the
    // backend API (found by the store poll): each answers promptly.
    for via_oauth in [true, false] {
        let r = h.login("rita", json!({})).await;
        let handle = r.body["session"]["handle"].as_str().unwrap().to_owned();
        let cursor = h
            .api(Method::GET, "/v1/revocations", None)
            .await
            .str("next")
            .to_owned();
        let router = h.router.clone();
        let key = h.key.clone();
        let poll = tokio::spawn(async move {
            let res = router
                .oneshot(
                    Request::get(format!("/v1/revocations?after={cursor}&wait=10"))
                        .header(header::AUTHORIZATION, format!("Bearer {key}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
            (
                std::time::Instant::now(),
                serde_json::from_slice::<Value>(&bytes).unwrap(),
            )
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!poll.is_finished(), "waits while nothing happens");
        let revoked_at = std::time::Instant::now();
        if via_oauth {
            let ok = h
                .form(
                    "/oauth2/revoke",
                    &format!("token={}", r.str("refresh_token")),
                    None,
                )
                .await;
            assert_eq!(ok.status, StatusCode::OK);
        } else {
            let d = h
                .api(Method::DELETE, &format!("/v1/sessions/{handle}"), None)
                .await;
            assert_eq!(d.status, StatusCode::NO_CONTENT);
        }
        let (answered_at, body) = poll.await.unwrap();
        let lag = answered_at.duration_since(revoked_at);
        assert!(
            lag < Duration::from_millis(1000),
            "answered {lag:?} after the revocation"
        );
        assert_eq!(body["revocations"][0]["sid"], handle.as_str(), "{body}");
    }
}

// ------------------------------------------------------------------ forward auth, Bearer branch

#[tokio::test]
async fn jw_18_forward_auth_accepts_our_access_token_until_the_session_is_revoked() {
    let h = harness().await;
    let r = h.login("sam", json!({})).await;
    let at = r.str("access_token").to_owned();
    let handle = r.body["session"]["handle"].as_str().unwrap().to_owned();
    let ok = h.forward_auth_bearer(&at).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.headers["x-tessera-subject"], "sam");
    assert_eq!(ok.headers["x-tessera-session"], handle.as_str());
    assert_eq!(ok.headers["x-tessera-auth-level"], "1");
    for bad in [
        "garbage".to_owned(),
        format!("{at}x"),
        "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.e30.".to_owned(),
    ] {
        let res = h.forward_auth_bearer(&bad).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        assert!(
            res.headers[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer error=\"invalid_token\""),
            "{:?}",
            res.headers[header::WWW_AUTHENTICATE]
        );
    }
    h.api(Method::DELETE, &format!("/v1/sessions/{handle}"), None)
        .await;
    let res = h.forward_auth_bearer(&at).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(
        res.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\""),
        "{:?}",
        res.headers[header::WWW_AUTHENTICATE]
    );
}

// ------------------------------------------- one verifier: checks the service gained

/// The service's faces verify access tokens with the verifier the library's
/// resource layer uses (`tessera_core::access::verify`), so they refuse what
/// it refuses. Tokens here carry a valid signature of the service's own
/// signing key over whatever header and claims the test wants.
impl H {
    /// A live session's access-token claims, as JSON to vary.
    async fn live_claims(&self, subject: &str) -> Value {
        let r = self.login(subject, json!({})).await;
        let at = r.str("access_token");
        let payload = at.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    }

    fn signing_header(&self) -> Value {
        let signer = self.state.oauth.keys.signer().unwrap();
        json!({"typ": "at+jwt", "alg": signer.alg.as_str(), "kid": signer.kid})
    }

    /// `header` and `claims` signed with the service's current signing key.
    fn forge(&self, header: &Value, claims: &Value) -> String {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .state
            .oauth
            .keys
            .signer()
            .unwrap()
            .sign(input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(&sig))
    }

    async fn introspect_with_key(&self, token: &str) -> Resp {
        let token = token
            .replace('%', "%25")
            .replace(' ', "%20")
            .replace('=', "%3D")
            .replace('+', "%2B");
        self.form(
            "/oauth2/introspect",
            &format!("token={token}"),
            Some(&format!("Bearer {}", self.key)),
        )
        .await
    }

    /// Refused by `/auth/verify` (401 `invalid_token`) and by introspection
    /// (exactly `{"active":false}`), and the shared verifier says why.
    async fn refused_by_every_face(&self, token: &str, why: VerifyError) {
        let tokens = &self.state.oauth.tokens;
        assert_eq!(
            tokens.verify_access_token(token, &tokens.own_token_rules()).err(),
            Some(why),
            "{token}"
        );
        let fa = self.forward_auth_bearer(token).await;
        assert_eq!(fa.status, StatusCode::UNAUTHORIZED, "{why:?}: {}", fa.text);
        assert!(
            fa.headers[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer error=\"invalid_token\""),
            "{:?}",
            fa.headers[header::WWW_AUTHENTICATE]
        );
        let i = self.introspect_with_key(token).await;
        assert_eq!(i.text, r#"{"active":false}"#, "{why:?}");
    }

    /// The unmodified forgery passes every face: what a variant is refused
    /// for is the variation.
    async fn accepted_by_every_face(&self, token: &str) {
        assert_eq!(self.forward_auth_bearer(token).await.status, StatusCode::OK);
        assert_eq!(self.introspect_with_key(token).await.body["active"], true);
    }
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

#[tokio::test]
async fn jw_04_forward_auth_and_introspection_refuse_keys_named_by_the_token() {
    let h = harness().await;
    let c = h.live_claims("jw04").await;
    let header = h.signing_header();
    h.accepted_by_every_face(&h.forge(&header, &c)).await;
    let jwk = h.state.oauth.keys.signer().unwrap().public_jwk_json();
    for (member, value) in [
        ("jwk", jwk),
        ("jku", json!("https://attacker.example/jwks")),
        ("x5u", json!("https://attacker.example/cert")),
        ("x5c", json!(["MIIB"])),
    ] {
        let t = h.forge(&with(header.clone(), member, value), &c);
        h.refused_by_every_face(&t, VerifyError::UnsupportedHeader).await;
    }
}

#[tokio::test]
async fn jw_05_forward_auth_and_introspection_refuse_an_empty_or_oversized_kid() {
    let h = harness().await;
    let c = h.live_claims("jw05").await;
    let header = h.signing_header();
    for kid in [json!(""), json!("k".repeat(257))] {
        let t = h.forge(&with(header.clone(), "kid", kid), &c);
        h.refused_by_every_face(&t, VerifyError::BadKid).await;
    }
}

#[tokio::test]
async fn jw_07_forward_auth_and_introspection_refuse_lax_forms_and_oversized_headers() {
    let h = harness().await;
    let c = h.live_claims("jw07").await;
    let header = h.signing_header();
    let good = h.forge(&header, &c);
    let (input, sig) = good.rsplit_once('.').unwrap();
    for t in [
        format!("{good}="),
        format!("{input} .{sig}"),
        format!("{input}.{sig}.{sig}.{sig}"),
    ] {
        h.refused_by_every_face(&t, VerifyError::Malformed).await;
    }
    let big = h.forge(&with(header, "pad", json!("p".repeat(2048))), &c);
    assert!(big.len() < 8192);
    h.refused_by_every_face(&big, VerifyError::BadHeader).await;
}

#[tokio::test]
async fn jw_08_forward_auth_and_introspection_refuse_crit() {
    let h = harness().await;
    let c = h.live_claims("jw08").await;
    for crit in [json!(["x-unknown"]), json!([]), json!(["exp"])] {
        let header = with(with(h.signing_header(), "crit", crit), "x-unknown", json!(1));
        h.refused_by_every_face(&h.forge(&header, &c), VerifyError::CriticalExtension)
            .await;
    }
}

#[tokio::test]
async fn jw_09_forward_auth_and_introspection_refuse_nbf_and_iat_in_the_future() {
    let h = harness().await;
    let c = h.live_claims("jw09").await;
    let header = h.signing_header();
    let now = h.clock.now().unix_secs();
    h.accepted_by_every_face(&h.forge(&header, &with(c.clone(), "nbf", json!(now))))
        .await;
    for (claim, at) in [("nbf", now + 1), ("iat", now + 1), ("nbf", now + 3600)] {
        let t = h.forge(&header, &with(c.clone(), claim, json!(at)));
        h.refused_by_every_face(&t, VerifyError::NotYetValid).await;
    }
    // A string `nbf` is not skipped (CVE-2026-25537).
    let t = h.forge(&header, &with(c, "nbf", json!("99999999999")));
    h.refused_by_every_face(&t, VerifyError::InvalidClaims).await;
}

#[tokio::test]
async fn jw_10_introspection_refuses_a_token_naming_no_audience() {
    let h = harness().await;
    let c = h.live_claims("jw10").await;
    let header = h.signing_header();
    for aud in [json!([]), json!(""), json!([""])] {
        let t = h.forge(&header, &with(c.clone(), "aud", aud));
        h.refused_by_every_face(&t, VerifyError::WrongAudience).await;
    }
}

#[tokio::test]
async fn jw_13_forward_auth_and_introspection_refuse_empty_required_claims() {
    let h = harness().await;
    let c = h.live_claims("jw13").await;
    let header = h.signing_header();
    for claim in ["jti", "client_id"] {
        let t = h.forge(&header, &with(c.clone(), claim, json!("")));
        h.refused_by_every_face(&t, VerifyError::InvalidClaims).await;
    }
    let t = h.forge(&header, &with(c, "sub", json!([1])));
    h.refused_by_every_face(&t, VerifyError::InvalidClaims).await;
}

mod form_decoding {
    use proptest::prelude::*;

    use super::super::form_decode;

    /// The WHATWG decoding of one component, as `form_urlencoded` does it.
    fn whatwg(s: &str) -> String {
        url::form_urlencoded::parse(format!("k={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }

    proptest! {
        /// Wherever the input is well formed, the answer is the WHATWG
        /// parser's; elsewhere it is refused, never guessed.
        #[test]
        fn form_decode_agrees_with_form_urlencoded(s in "([a-zA-Z0-9+ ._~*-]|%[0-9a-fA-F]{2}|%|%[g-z]){0,24}") {
            let ours = form_decode(&s);
            let well_formed = !s.contains('%') || {
                let b = s.as_bytes();
                (0..b.len()).filter(|&i| b[i] == b'%').all(|i| b.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)))
            };
            let theirs = whatwg(&s);
            match ours {
                Some(v) => prop_assert_eq!(v, theirs),
                None => prop_assert!(!well_formed || theirs.contains('\u{FFFD}'), "refused {s:?}"),
            }
        }
    }

    #[test]
    fn form_decode_refuses_what_it_cannot_decode_exactly() {
        assert_eq!(form_decode("a+b%2Bc").as_deref(), Some("a b+c"));
        assert_eq!(form_decode("%E2%82%AC").as_deref(), Some("\u{20ac}"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("50%"), None);
        assert_eq!(form_decode("%FF"), None);
    }
}
