//! In-process tests of the whole router (`tower::ServiceExt::oneshot`) over
//! `memory://`.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::routing::get;
use serde_json::{Value, json};
use tessera_core::SystemClock;
use tessera_core::{
    ApiKeyRecord, ApiKeyStore, CreateOptions, CreateOutcome, Event, EventQuery, EventStore, ManualClock,
    MemoryStore, NewEvent, RefreshStore, RevokeReason, SessionRecord, SessionStore, SigningKeyStore, Store,
    StoreError, StoreHealth, StoreResult, Timestamp, TokenHash,
};
use tower::ServiceExt;

use super::*;
use crate::auth::create_api_key;
use crate::metrics::InstrumentedStore;

struct Harness {
    router: Router,
    key: String,
    clock: ManualClock,
    store: Arc<dyn Store>,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Resp {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    #[track_caller]
    fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        assert_eq!(self.headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(self.code(), code, "{:?}", self.body);
        assert_eq!(self.body["type"], format!("urn:tessera:error:{code}"));
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
    }
}

fn test_config() -> Config {
    Config {
        store: Some("memory://".into()),
        ..Config::default()
    }
}

async fn harness_with(config: Config) -> Harness {
    let store: Arc<dyn Store> = Arc::new(InstrumentedStore::new(MemoryStore::new()));
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
    let (_, secret) = create_api_key(
        store.as_ref(),
        "test",
        &[tessera_core::ApiKeyScope::Admin],
        clock.now(),
    )
    .await
    .unwrap();
    let app = build_with_clock(config, store.clone(), Arc::new(clock.clone()));
    Harness {
        router: app.router,
        key: secret.expose().to_owned(),
        clock,
        store,
    }
}

async fn harness() -> Harness {
    harness_with(test_config()).await
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> Resp {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    fn req(&self, method: Method, uri: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.key))
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Resp {
        let b = self.req(method, uri);
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        };
        self.send(req.unwrap()).await
    }

    async fn create(&self, subject: &str) -> Resp {
        let r = self
            .call(Method::POST, "/v1/sessions", Some(json!({ "subject": subject })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r
    }
}

fn token(r: &Resp) -> String {
    r.body["session_token"].as_str().unwrap().to_owned()
}

fn handle(r: &Resp) -> String {
    r.body["session"]["handle"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn create_verify_elevate_revoke_flow() {
    let h = harness().await;
    let r = h
        .call(
            Method::POST,
            "/v1/sessions",
            Some(json!({
                "subject": "user-1",
                "auth": {"level": 1, "methods": ["pwd"]},
                "device": {"user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36", "ip": "203.0.113.9"},
                "data": {"cart": 3},
                "ttl": {"idle_secs": 600, "absolute_secs": 3600}
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    let tok = token(&r);
    assert!(tok.starts_with("tss_") && tok.len() == 47);
    let s = &r.body["session"];
    let handle = handle(&r);
    assert!(handle.starts_with("ses_"));
    assert_eq!(s["subject"], "user-1");
    assert_eq!(s["auth"]["level"], 1);
    assert_eq!(s["auth"]["methods"], json!(["pwd"]));
    assert_eq!(s["device"]["label"], "Chrome on Linux");
    assert_eq!(s["device"]["ip"], "203.0.113.9");
    assert_eq!(s["data"], json!({"cart": 3}));
    assert!(s["binding"].is_null());
    assert!(!r.body.to_string().contains("token_hash"));
    let cookie = r.body["cookie"].as_str().unwrap();
    assert!(cookie.starts_with(&format!("__Host-tessera={tok}; ")), "{cookie}");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=3600"] {
        assert!(
            cookie.split("; ").any(|a| a == attr),
            "{attr} missing in {cookie}"
        );
    }
    assert!(
        !s.to_string().contains(&tok),
        "the session view never carries the token"
    );

    let v = h
        .call(
            Method::POST,
            "/v1/sessions/verify",
            Some(json!({ "session_token": tok })),
        )
        .await;
    assert_eq!(v.status, StatusCode::OK, "{:?}", v.body);
    assert_eq!(v.body["session"]["handle"], handle.as_str());
    assert_eq!(v.headers[header::CACHE_CONTROL], "no-store");

    let e = h
        .call(
            Method::POST,
            "/v1/sessions/elevate",
            Some(json!({ "session_token": tok, "auth": {"level": 2, "methods": ["otp"]} })),
        )
        .await;
    assert_eq!(e.status, StatusCode::OK, "{:?}", e.body);
    let tok2 = token(&e);
    assert_ne!(tok, tok2);
    assert_eq!(e.body["session"]["handle"], handle.as_str());
    assert_eq!(e.body["session"]["auth"]["level"], 2);
    assert_eq!(e.body["session"]["auth"]["methods"], json!(["pwd", "otp"]));
    assert!(e.body["cookie"].as_str().unwrap().contains(&tok2));

    // The old token stops working at once.
    h.call(
        Method::POST,
        "/v1/sessions/verify",
        Some(json!({ "session_token": tok })),
    )
    .await
    .assert_problem(401, "session_invalid");
    let v = h
        .call(
            Method::POST,
            "/v1/sessions/verify",
            Some(json!({ "session_token": tok2 })),
        )
        .await;
    assert_eq!(v.status, StatusCode::OK);

    let g = h.call(Method::GET, &format!("/v1/sessions/{handle}"), None).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.body["session"]["auth"]["level"], 2);

    let l = h.call(Method::GET, "/v1/subjects/user-1/sessions", None).await;
    assert_eq!(l.status, StatusCode::OK);
    assert_eq!(l.body["sessions"].as_array().unwrap().len(), 1);

    let rv = h
        .call(
            Method::POST,
            "/v1/sessions/revoke",
            Some(json!({ "session_token": tok2 })),
        )
        .await;
    assert_eq!(rv.status, StatusCode::NO_CONTENT);
    assert_eq!(rv.headers[header::CACHE_CONTROL], "no-store");
    // Idempotent for a revoked session; unknown tokens are session_invalid.
    let rv = h
        .call(
            Method::POST,
            "/v1/sessions/revoke",
            Some(json!({ "session_token": tok2 })),
        )
        .await;
    assert_eq!(rv.status, StatusCode::NO_CONTENT);
    h.call(
        Method::POST,
        "/v1/sessions/revoke",
        Some(json!({ "session_token": tok })),
    )
    .await
    .assert_problem(401, "session_invalid");
    h.call(
        Method::POST,
        "/v1/sessions/verify",
        Some(json!({ "session_token": tok2 })),
    )
    .await
    .assert_problem(401, "session_revoked");
    h.call(Method::GET, &format!("/v1/sessions/{handle}"), None)
        .await
        .assert_problem(404, "not_found");
    let l = h.call(Method::GET, "/v1/subjects/user-1/sessions", None).await;
    assert_eq!(l.body["sessions"], json!([]));

    let ev = h.call(Method::GET, "/v1/events?subject=user-1", None).await;
    assert_eq!(ev.status, StatusCode::OK, "{:?}", ev.body);
    let kinds: Vec<&str> = ev.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "elevated", "revoked"]);
    let last = ev.body["events"][2].clone();
    assert_eq!(last["reason"], "logout");
    assert_eq!(last["handle"], handle.as_str());
    assert_eq!(ev.body["next"], last["id"].to_string());
    assert!(!ev.body.to_string().contains("tss_"));
}

#[tokio::test]
async fn expired_sessions_answer_session_expired() {
    let h = harness().await;
    let r = h
        .call(
            Method::POST,
            "/v1/sessions",
            Some(json!({ "subject": "u", "ttl": {"idle_secs": 60, "absolute_secs": 120} })),
        )
        .await;
    let tok = token(&r);
    h.clock.advance_secs(61);
    h.call(
        Method::POST,
        "/v1/sessions/verify",
        Some(json!({ "session_token": tok })),
    )
    .await
    .assert_problem(401, "session_expired");
}

#[tokio::test]
async fn previous_session_token_is_replaced_and_data_carried() {
    let h = harness().await;
    let anon = h
        .call(
            Method::POST,
            "/v1/sessions",
            Some(json!({ "subject": "alice", "data": {"cart": [1, 2]} })),
        )
        .await;
    let old = token(&anon);
    let login = h
        .call(
            Method::POST,
            "/v1/sessions",
            Some(json!({ "subject": "alice", "previous_session_token": old, "data": {"theme": "dark"} })),
        )
        .await;
    assert_eq!(login.status, StatusCode::CREATED);
    assert_eq!(
        login.body["session"]["data"],
        json!({"cart": [1, 2], "theme": "dark"})
    );
    h.call(
        Method::POST,
        "/v1/sessions/verify",
        Some(json!({ "session_token": old })),
    )
    .await
    .assert_problem(401, "session_revoked");
}

#[tokio::test]
async fn patch_delete_and_revoke_everywhere() {
    let h = harness().await;
    let a = h.create("bob").await;
    let b = h.create("bob").await;
    let c = h.create("bob").await;
    let (ha, hb, hc) = (handle(&a), handle(&b), handle(&c));

    let p = h
        .send(
            h.req(Method::PATCH, &format!("/v1/sessions/{ha}"))
                .header(header::CONTENT_TYPE, "application/merge-patch+json")
                .body(Body::from(r#"{"data":{"a":1,"b":{"c":2}}}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{:?}", p.body);
    let p = h
        .call(
            Method::PATCH,
            &format!("/v1/sessions/{ha}"),
            Some(json!({"data": {"a": null, "b": {"d": 3}}})),
        )
        .await;
    assert_eq!(p.body["session"]["data"], json!({"b": {"c": 2, "d": 3}}));
    h.call(
        Method::PATCH,
        &format!("/v1/sessions/{ha}"),
        Some(json!({"data": [1]})),
    )
    .await
    .assert_problem(400, "validation_failed");
    h.call(Method::PATCH, &format!("/v1/sessions/{ha}"), Some(json!({})))
        .await
        .assert_problem(400, "validation_failed");
    let big = "x".repeat(20_000);
    h.call(
        Method::PATCH,
        &format!("/v1/sessions/{ha}"),
        Some(json!({"data": {"big": big}})),
    )
    .await
    .assert_problem(413, "payload_too_large");

    let d = h.call(Method::DELETE, &format!("/v1/sessions/{hb}"), None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    let d = h.call(Method::DELETE, &format!("/v1/sessions/{hb}"), None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "already revoked is still 204");
    h.call(Method::DELETE, "/v1/sessions/ses_AAAAAAAAAAAAAAAAAAAAAA", None)
        .await
        .assert_problem(404, "not_found");
    h.call(Method::GET, "/v1/sessions/not-a-handle", None)
        .await
        .assert_problem(404, "not_found");

    let r = h
        .call(
            Method::DELETE,
            &format!("/v1/subjects/bob/sessions?except={hc}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({"revoked": 1}));
    let l = h.call(Method::GET, "/v1/subjects/bob/sessions", None).await;
    let handles: Vec<&str> = l.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["handle"].as_str().unwrap())
        .collect();
    assert_eq!(handles, [hc.as_str()]);
    let r = h.call(Method::DELETE, "/v1/subjects/bob/sessions", None).await;
    assert_eq!(r.body, json!({"revoked": 1}));
    h.call(Method::DELETE, "/v1/subjects/bob/sessions?nope=1", None)
        .await
        .assert_problem(400, "validation_failed");
}

#[tokio::test]
async fn subjects_in_paths_are_percent_decoded() {
    let h = harness().await;
    h.create("team/alice@example.com").await;
    let l = h
        .call(
            Method::GET,
            "/v1/subjects/team%2Falice%40example.com/sessions",
            None,
        )
        .await;
    assert_eq!(l.status, StatusCode::OK, "{:?}", l.body);
    assert_eq!(l.body["sessions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn events_page_with_cursor() {
    let h = harness().await;
    for _ in 0..3 {
        h.create("carol").await;
    }
    let p1 = h
        .call(Method::GET, "/v1/events?subject=carol&limit=2", None)
        .await;
    assert_eq!(p1.body["events"].as_array().unwrap().len(), 2);
    let next = p1.body["next"].as_str().unwrap().to_owned();
    let p2 = h
        .call(
            Method::GET,
            &format!("/v1/events?subject=carol&after={next}&limit=2"),
            None,
        )
        .await;
    assert_eq!(p2.body["events"].as_array().unwrap().len(), 1);
    let next2 = p2.body["next"].as_str().unwrap().to_owned();
    let p3 = h
        .call(
            Method::GET,
            &format!("/v1/events?subject=carol&after={next2}"),
            None,
        )
        .await;
    assert_eq!(p3.body["events"], json!([]));
    assert_eq!(p3.body["next"], next2.as_str(), "empty page keeps the cursor");
    let all = h.call(Method::GET, "/v1/events?kind=created", None).await;
    assert_eq!(all.body["events"].as_array().unwrap().len(), 3);
    for bad in [
        "after=x",
        "limit=0",
        "limit=1001",
        "limit=abc",
        "kind=nope",
        "colour=red",
    ] {
        h.call(Method::GET, &format!("/v1/events?{bad}"), None)
            .await
            .assert_problem(400, "validation_failed");
    }
}

/// SPEC §4.1: every `/v1` route refuses, with 403 `forbidden`, a key that
/// lacks its scope (and writes nothing), accepts a key with it, and accepts
/// an `admin` key; a key with several scopes may do each.
#[tokio::test]
async fn api_key_scopes_are_enforced_per_route() {
    use tessera_core::ApiKeyScope::{self, Admin, Events, Revocations, Sessions};
    let h = harness().await;
    let s = h.create("alice").await;
    let (tok, hd) = (token(&s), handle(&s));
    let mut keys: Vec<(Vec<ApiKeyScope>, String)> = Vec::new();
    for scopes in [
        vec![Sessions],
        vec![Events],
        vec![Revocations],
        vec![Admin],
        vec![Events, Revocations],
        vec![],
    ] {
        let (_, secret) = create_api_key(h.store.as_ref(), "scoped", &scopes, h.clock.now())
            .await
            .unwrap();
        keys.push((scopes, secret.expose().to_owned()));
    }
    let unknown = format!("tss_{}", "A".repeat(43));
    let routes: Vec<(Method, String, Option<Value>, ApiKeyScope)> = vec![
        (
            Method::POST,
            "/v1/sessions".into(),
            Some(json!({"subject": "bob"})),
            Sessions,
        ),
        (
            Method::POST,
            "/v1/sessions/verify".into(),
            Some(json!({"session_token": tok})),
            Sessions,
        ),
        (
            Method::POST,
            "/v1/sessions/elevate".into(),
            Some(json!({"session_token": unknown, "auth": {"level": 2}})),
            Sessions,
        ),
        (
            Method::POST,
            "/v1/sessions/revoke".into(),
            Some(json!({"session_token": unknown})),
            Sessions,
        ),
        (Method::GET, format!("/v1/sessions/{hd}"), None, Sessions),
        (
            Method::PATCH,
            format!("/v1/sessions/{hd}"),
            Some(json!({"data": {"k": 1}})),
            Sessions,
        ),
        (
            Method::DELETE,
            "/v1/sessions/ses_AAAAAAAAAAAAAAAAAAAAAA".into(),
            None,
            Sessions,
        ),
        (Method::GET, "/v1/subjects/alice/sessions".into(), None, Sessions),
        (
            Method::DELETE,
            "/v1/subjects/nobody/sessions".into(),
            None,
            Sessions,
        ),
        (Method::GET, "/v1/events?limit=1".into(), None, Events),
        (Method::GET, "/v1/revocations".into(), None, Revocations),
        // A wrong method is refused for the scope before routing says 405.
        (Method::PUT, "/v1/events".into(), None, Events),
    ];
    for (method, path, body, needs) in &routes {
        for (scopes, key) in &keys {
            let events_before = h
                .store
                .events(&EventQuery {
                    limit: 1000,
                    ..EventQuery::default()
                })
                .await
                .unwrap()
                .len();
            let mut b = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(header::AUTHORIZATION, format!("Bearer {key}"));
            let req = match body {
                Some(v) => {
                    b = b.header(header::CONTENT_TYPE, "application/json");
                    b.body(Body::from(v.to_string()))
                }
                None => b.body(Body::empty()),
            };
            let r = h.send(req.unwrap()).await;
            let what = format!("{method} {path} with {scopes:?}");
            if scopes.contains(needs) || scopes.contains(&Admin) {
                assert!(
                    !matches!(r.code(), "forbidden" | "unauthorized") && r.status != StatusCode::FORBIDDEN,
                    "{what}: allowed, got {} {:?}",
                    r.status,
                    r.body
                );
            } else {
                r.assert_problem(403, "forbidden");
                assert!(
                    r.body["detail"].as_str().unwrap().contains(needs.as_str()),
                    "{what}: the detail names the scope: {:?}",
                    r.body
                );
                let events_after = h
                    .store
                    .events(&EventQuery {
                        limit: 1000,
                        ..EventQuery::default()
                    })
                    .await
                    .unwrap()
                    .len();
                assert_eq!(
                    events_after, events_before,
                    "{what}: a refused request writes nothing"
                );
            }
        }
    }
    // A path that is no route is the router's 404 for any valid key.
    for (_, key) in &keys {
        let r = h
            .send(
                Request::get("/v1/nothing-here")
                    .header(header::AUTHORIZATION, format!("Bearer {key}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        r.assert_problem(404, "not_found");
    }
}

/// Introspection with an API key needs the `sessions` scope: it tells whose
/// session a token belongs to. Another key gets RFC 6750 `insufficient_scope`.
#[tokio::test]
async fn introspection_with_an_api_key_needs_the_sessions_scope() {
    use tessera_core::ApiKeyScope::{Events, Revocations, Sessions};
    let h = harness().await;
    for (scopes, allowed) in [(vec![Sessions], true), (vec![Events, Revocations], false)] {
        let (_, secret) = create_api_key(h.store.as_ref(), "introspect", &scopes, h.clock.now())
            .await
            .unwrap();
        let r = h
            .send(
                Request::post("/oauth2/introspect")
                    .header(header::AUTHORIZATION, format!("Bearer {}", secret.expose()))
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from("token=tsr_unknown"))
                    .unwrap(),
            )
            .await;
        if allowed {
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            assert_eq!(r.body, json!({"active": false}));
        } else {
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
            assert_eq!(r.body["error"], "insufficient_scope");
            let www = r.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
            assert!(www.contains("error=\"insufficient_scope\""), "{www}");
        }
    }
}

#[tokio::test]
async fn api_key_is_required() {
    let h = harness().await;
    let no_key = h
        .send(
            Request::post("/v1/sessions")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"subject":"x"}"#))
                .unwrap(),
        )
        .await;
    no_key.assert_problem(401, "unauthorized");
    assert!(
        no_key.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(no_key.headers[header::CACHE_CONTROL], "no-store");
    for auth in [
        "Bearer tsk_nope",
        "Basic Zm9vOmJhcg==",
        "Bearer tsk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let r = h
            .send(
                Request::get("/v1/events")
                    .header(header::AUTHORIZATION, auth)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        r.assert_problem(401, "unauthorized");
    }
    // The key is checked before the body is parsed.
    let r = h
        .send(
            Request::post("/v1/sessions")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("junk"))
                .unwrap(),
        )
        .await;
    r.assert_problem(401, "unauthorized");
}

#[tokio::test]
async fn revoked_api_keys_stop_working() {
    let h = harness_with(Config {
        http: crate::config::HttpConfig {
            api_key_cache_secs: 0,
            ..Default::default()
        },
        ..test_config()
    })
    .await;
    assert_eq!(
        h.call(Method::GET, "/v1/events", None).await.status,
        StatusCode::OK
    );
    let keys = h.store.list_api_keys().await.unwrap();
    h.store.revoke_api_key(&keys[0].id, h.clock.now()).await.unwrap();
    h.call(Method::GET, "/v1/events", None)
        .await
        .assert_problem(401, "unauthorized");
}

#[tokio::test]
async fn bad_bodies_are_problems() {
    let h = harness().await;
    // Missing and wrong content type.
    let r = h
        .send(
            h.req(Method::POST, "/v1/sessions")
                .body(Body::from(r#"{"subject":"x"}"#))
                .unwrap(),
        )
        .await;
    r.assert_problem(415, "unsupported_media_type");
    let r = h
        .send(
            h.req(Method::POST, "/v1/sessions")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(r#"{"subject":"x"}"#))
                .unwrap(),
        )
        .await;
    r.assert_problem(415, "unsupported_media_type");
    // Too large.
    let big = json!({ "subject": "x", "data": {"k": "v".repeat(70_000)} });
    h.call(Method::POST, "/v1/sessions", Some(big))
        .await
        .assert_problem(413, "payload_too_large");
    // Malformed JSON, unknown field, wrong type, missing field, empty body.
    let cases = [
        (r#"{"subject":"#, "malformed JSON"),
        (r#"{"subject":"x","colour":1}"#, "colour"),
        (r#"{"subject":"x","auth":{"level":"two"}}"#, "auth.level"),
        (r#"{"subject":"x","ttl":{"idle":5}}"#, "ttl.idle"),
        (r#"{}"#, "subject"),
        ("", "malformed JSON"),
        (r#"{"subject":""}"#, "subject"),
        (r#"{"subject":"x","auth":{"level":10}}"#, "auth.level"),
        (r#"{"subject":"x","device":{"ip":"999.1.1.1"}}"#, "device.ip"),
        (r#"{"subject":"x","ttl":{"idle_secs":0}}"#, "ttl.idle_secs"),
        (
            r#"{"subject":"x","tokens":{"client_id":"ghost"}}"#,
            "tokens.client_id",
        ),
        (r#"{"subject":"x","data":[1]}"#, "data"),
        (r#"[1]"#, "invalid type"),
    ];
    for (body, needle) in cases {
        let r = h
            .send(
                h.req(Method::POST, "/v1/sessions")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        r.assert_problem(400, "validation_failed");
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{body}: {detail}");
    }
    // Malformed tokens never reach the store and are session_invalid.
    for t in [
        "",
        "tss_short",
        &"a".repeat(5000),
        "tsk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        h.call(
            Method::POST,
            "/v1/sessions/verify",
            Some(json!({ "session_token": t })),
        )
        .await
        .assert_problem(401, "session_invalid");
    }
    h.call(Method::POST, "/v1/sessions/verify", Some(json!({ "token": "x" })))
        .await
        .assert_problem(400, "validation_failed");
    h.call(
        Method::POST,
        "/v1/sessions/elevate",
        Some(json!({ "session_token": "x" })),
    )
    .await
    .assert_problem(400, "validation_failed");
}

#[tokio::test]
async fn routing_errors_are_problems() {
    let h = harness().await;
    let r = h.call(Method::GET, "/v1/nope", None).await;
    r.assert_problem(404, "not_found");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    h.call(Method::GET, "/nope", None)
        .await
        .assert_problem(404, "not_found");
    h.call(Method::GET, "/v1/sessions", None)
        .await
        .assert_problem(405, "method_not_allowed");
    h.call(Method::PUT, "/v1/sessions/ses_AAAAAAAAAAAAAAAAAAAAAA", None)
        .await
        .assert_problem(405, "method_not_allowed");
    h.call(Method::POST, "/healthz", None)
        .await
        .assert_problem(405, "method_not_allowed");
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let h = harness().await;
    let r = h
        .send(
            h.req(Method::GET, "/v1/events")
                .header("x-filler", "a".repeat(17_000))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    r.assert_problem(431, "headers_too_large");
    let r = h
        .send(
            Request::get("/healthz")
                .header("x-filler", "a".repeat(17_000))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    r.assert_problem(431, "headers_too_large");
}

#[tokio::test]
async fn ops_endpoints() {
    let h = harness().await;
    let r = h
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"status": "ok"}));
    assert!(r.headers.get(header::CACHE_CONTROL).is_none());
    assert!(r.headers.get("x-request-id").is_some());
    let r = h.send(Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(r.body, json!({"status": "ready"}));

    // Generate some traffic, then scrape.
    let s = h.create("dave").await;
    let tok = token(&s);
    h.call(
        Method::POST,
        "/v1/sessions/verify",
        Some(json!({ "session_token": tok })),
    )
    .await;
    h.call(Method::GET, &format!("/v1/sessions/{}", handle(&s)), None)
        .await;
    let res = h
        .router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = String::from_utf8(
        axum::body::to_bytes(res.into_body(), 1 << 22)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("tessera_http_requests_total{"), "{text}");
    assert!(text.contains(r#"route="/v1/sessions/{handle}""#), "{text}");
    assert!(
        text.contains(r#"route="/v1/sessions",method="POST",status="201""#),
        "{text}"
    );
    assert!(
        text.contains("tessera_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"tessera_session_verify_total{outcome="ok"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"tessera_store_operation_duration_seconds_bucket{op="create""#),
        "{text}"
    );
    assert!(!text.contains("ses_"), "no handles in labels");
    assert!(
        !text.contains("tss_") && !text.contains("tsk_"),
        "no secrets in metrics"
    );
}

/// A store that is always down: every capability, since the application is
/// built over a complete store.
struct DownStore;

fn down<T>() -> StoreResult<T> {
    Err(StoreError::Unavailable("connection refused".into()))
}

#[async_trait]
impl SessionStore for DownStore {
    async fn create(
        &self,
        _: &SessionRecord,
        _: &CreateOptions,
        _: &[NewEvent],
    ) -> StoreResult<CreateOutcome> {
        down()
    }
    async fn get(&self, _: &str) -> StoreResult<Option<Arc<SessionRecord>>> {
        down()
    }
    async fn get_by_token(&self, _: &TokenHash) -> StoreResult<Option<Arc<SessionRecord>>> {
        down()
    }
    async fn touch(&self, _: &str, _: &TokenHash, _: Timestamp, _: Timestamp) -> StoreResult<bool> {
        down()
    }
    async fn update(&self, _: &SessionRecord, _: u64, _: &[NewEvent]) -> StoreResult<bool> {
        down()
    }
    async fn list_by_subject(&self, _: &str) -> StoreResult<Vec<Arc<SessionRecord>>> {
        down()
    }
    async fn revoke_subject(
        &self,
        _: &str,
        _: Option<&str>,
        _: RevokeReason,
        _: Timestamp,
    ) -> StoreResult<Vec<String>> {
        down()
    }
    async fn revoke_all_active(&self, _: RevokeReason, _: Timestamp, _: u32) -> StoreResult<u32> {
        down()
    }
    async fn sweep(&self, _: Timestamp, _: u32) -> StoreResult<u32> {
        down()
    }
    async fn count_active(&self, _: Timestamp) -> StoreResult<u64> {
        down()
    }
}

#[async_trait]
impl RefreshStore for DownStore {
    async fn create_refresh_family(
        &self,
        _: &tessera_core::RefreshFamily,
        _: &TokenHash,
        _: &[NewEvent],
    ) -> StoreResult<()> {
        down()
    }
    async fn create_with_refresh_family(
        &self,
        _: &SessionRecord,
        _: &CreateOptions,
        _: &[NewEvent],
        _: &tessera_core::RefreshFamily,
        _: &TokenHash,
    ) -> StoreResult<CreateOutcome> {
        down()
    }
    async fn update_with_refresh_family(
        &self,
        _: &SessionRecord,
        _: u64,
        _: &[NewEvent],
        _: &tessera_core::RefreshFamily,
        _: &TokenHash,
    ) -> StoreResult<bool> {
        down()
    }
    async fn find_refresh(&self, _: &TokenHash) -> StoreResult<Option<tessera_core::RefreshLookup>> {
        down()
    }
    async fn rotate_refresh(&self, _: &tessera_core::Rotation<'_>, _: &[NewEvent]) -> StoreResult<bool> {
        down()
    }
    async fn clear_sealed_successors(&self, _: Timestamp, _: u32) -> StoreResult<u32> {
        down()
    }
    async fn revoke_refresh_family(
        &self,
        _: &str,
        _: RevokeReason,
        _: Timestamp,
        _: &[NewEvent],
    ) -> StoreResult<bool> {
        down()
    }
    async fn refresh_families_of(&self, _: &str) -> StoreResult<Vec<Arc<tessera_core::RefreshFamily>>> {
        down()
    }
}

#[async_trait]
impl EventStore for DownStore {
    async fn events(&self, _: &EventQuery) -> StoreResult<Vec<Event>> {
        down()
    }
    async fn events_cursor_since(&self, _: tessera_core::EventKind, _: Timestamp) -> StoreResult<u64> {
        down()
    }
    async fn delete_events_before(&self, _: Timestamp, _: u32) -> StoreResult<u32> {
        down()
    }
    async fn append_events(&self, _: &[tessera_core::NewEvent]) -> StoreResult<()> {
        down()
    }
}

#[async_trait]
impl SigningKeyStore for DownStore {
    async fn insert_signing_key(
        &self,
        _: &tessera_core::SigningKeyRecord,
        _: Option<&str>,
    ) -> StoreResult<bool> {
        down()
    }
    async fn signing_keys(&self) -> StoreResult<Vec<tessera_core::SigningKeyRecord>> {
        down()
    }
    async fn delete_signing_key(&self, _: &str) -> StoreResult<bool> {
        down()
    }
    async fn revoke_signing_key(&self, _: &str, _: Timestamp) -> StoreResult<bool> {
        down()
    }
}

#[async_trait]
impl ApiKeyStore for DownStore {
    async fn insert_api_key(&self, _: &ApiKeyRecord) -> StoreResult<()> {
        down()
    }
    async fn api_key_by_hash(&self, _: &TokenHash) -> StoreResult<Option<ApiKeyRecord>> {
        down()
    }
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        down()
    }
    async fn revoke_api_key(&self, _: &str, _: Timestamp) -> StoreResult<bool> {
        down()
    }
}

#[async_trait]
impl tessera_core::ClientStore for DownStore {
    async fn insert_client(&self, _: &tessera_core::ClientRecord) -> StoreResult<()> {
        down()
    }
    async fn client_by_id(&self, _: &str) -> StoreResult<Option<tessera_core::ClientRecord>> {
        down()
    }
    async fn list_clients(&self) -> StoreResult<Vec<tessera_core::ClientRecord>> {
        down()
    }
    async fn revoke_client(&self, _: &str, _: Timestamp) -> StoreResult<bool> {
        down()
    }
}

#[async_trait]
impl tessera_core::ReplayStore for DownStore {
    async fn use_once(&self, _: &[u8; 32], _: Timestamp, _: Timestamp) -> StoreResult<bool> {
        down()
    }
    async fn sweep_markers(&self, _: Timestamp, _: u32) -> StoreResult<u32> {
        down()
    }
}

#[async_trait]
impl tessera_core::RateLimitStore for DownStore {
    async fn add_hits(
        &self,
        _: &[u8; 32],
        _: u64,
        _: u64,
        _: Timestamp,
        _: Timestamp,
    ) -> StoreResult<tessera_core::store::WindowTotals> {
        down()
    }
    async fn sweep_counters(&self, _: Timestamp, _: u32) -> StoreResult<u32> {
        down()
    }
}

#[async_trait]
impl tessera_core::LeaseStore for DownStore {
    async fn acquire_lease(
        &self,
        _: &str,
        _: &str,
        _: std::time::Duration,
        _: Timestamp,
    ) -> StoreResult<bool> {
        down()
    }
    async fn renew_lease(&self, _: &str, _: &str, _: std::time::Duration, _: Timestamp) -> StoreResult<bool> {
        down()
    }
    async fn release_lease(&self, _: &str, _: &str) -> StoreResult<bool> {
        down()
    }
}

#[async_trait]
impl StoreHealth for DownStore {
    async fn ping(&self) -> StoreResult<()> {
        down()
    }
}

#[tokio::test]
async fn store_outage_is_503_and_fails_closed() {
    let app = build_with_store(test_config(), Arc::new(DownStore));
    let h = Harness {
        router: app.router,
        key: tessera_core::SecretToken::generate(tessera_core::TokenKind::ApiKey)
            .expose()
            .to_owned(),
        clock: ManualClock::new(Timestamp::from_unix_secs(0)),
        store: Arc::new(DownStore),
    };
    let r = h
        .call(
            Method::POST,
            "/v1/sessions/verify",
            Some(json!({ "session_token": "x" })),
        )
        .await;
    r.assert_problem(503, "store_unavailable");
    assert!(!r.body["detail"].as_str().unwrap().contains("connection refused"));
    let r = h.send(Request::get("/readyz").body(Body::empty()).unwrap()).await;
    r.assert_problem(503, "store_unavailable");
    let r = h
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn insecure_cookie_config_drops_prefix_and_secure() {
    let h = harness_with(Config {
        cookie: crate::config::CookieConfig {
            secure: false,
            persistent: false,
            ..Default::default()
        },
        ..test_config()
    })
    .await;
    let r = h.create("erin").await;
    let cookie = r.body["cookie"].as_str().unwrap();
    assert!(cookie.starts_with("tessera=tss_"), "{cookie}");
    assert!(
        !cookie.contains("Secure") && !cookie.contains("Max-Age"),
        "{cookie}"
    );
}

#[tokio::test]
async fn panics_become_500_problems() {
    use crate::edge::{Edge, EdgeLimits, Routes, panic_response};
    let res = panic_response(Box::new("boom"));
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/problem+json");
    // And through the real edge: the handler panics, the client gets a 500
    // problem with its request id, and the service keeps answering.
    let app = build_with_clock(test_config(), Arc::new(MemoryStore::new()), Arc::new(SystemClock));
    let inner: Router = Router::new().route(
        "/boom",
        get(|| async {
            #[allow(clippy::panic)]
            {
                panic!("boom")
            }
            #[allow(unreachable_code)]
            ""
        }),
    );
    let limits = EdgeLimits {
        max_header_bytes: 1024,
        max_body_bytes: 1024,
        timeout: std::time::Duration::from_secs(5),
        max_in_flight: 1024,
    };
    let edge: Router = Router::new().fallback_service(Edge::new(inner, app.state, limits, Routes::new("")));
    for _ in 0..2 {
        let res = edge
            .clone()
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(res.headers().contains_key("x-request-id"));
    }
}

/// The edge labels spans and metrics with its own copy of the route table;
/// it must name every path exactly as axum's router does.
#[tokio::test]
async fn edge_route_templates_match_the_router() {
    use axum::extract::MatchedPath;
    let mut config = test_config();
    config.oauth.issuer = Some("https://auth.example/tenant".into());
    let app = build_with_clock(config, Arc::new(MemoryStore::new()), Arc::new(SystemClock));
    let labels = crate::edge::Routes::new(&app.state.oauth.issuer_path);
    let probe = |router: Router| {
        router.layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| async move {
                let m = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|m| m.as_str().to_owned());
                let mut res = next.run(req).await;
                if let Some(m) = m {
                    res.headers_mut()
                        .insert("x-matched", axum::http::HeaderValue::from_str(&m).unwrap());
                }
                res
            },
        ))
    };
    // The router's own table without the edge, so nothing answers before
    // routing.
    let inner = probe(routes(&app.state).with_state(app.state.clone()));
    let paths = [
        "/v1/sessions",
        "/v1/sessions/verify",
        "/v1/sessions/elevate",
        "/v1/sessions/revoke",
        "/v1/sessions/ses_AAAAAAAAAAAAAAAAAAAAAA",
        "/v1/sessions/verify2",
        "/v1/sessions/a%2Fb",
        "/v1/sessions/",
        "/v1/sessions/x/y",
        "/v1/subjects/alice/sessions",
        "/v1/subjects/a%20b/sessions",
        "/v1/subjects//sessions",
        "/v1/subjects/alice/sessions/",
        "/v1/subjects/alice",
        "/v1/events",
        "/v1/revocations",
        "/v1",
        "/v1/",
        "/v1/nope",
        "/healthz",
        "/healthz/",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/auth/verify",
        "/auth/verify/",
        "/auth/verify/orders",
        "/auth/verify/a/b%2Fc",
        "/auth/verifyx",
        "/auth/logout",
        "/auth/dbsc/register",
        "/auth/dbsc/refresh",
        "/oauth2/token",
        "/oauth2/revoke",
        "/oauth2/introspect",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/tenant",
        "/.well-known/oauth-authorization-server/other",
        "/",
        "/nope",
    ];
    for path in paths {
        for method in [Method::GET, Method::POST] {
            let res = inner
                .clone()
                .oneshot(
                    Request::builder()
                        .method(method.clone())
                        .uri(path)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let matched = res
                .headers()
                .get("x-matched")
                .map_or("unmatched", |v| v.to_str().unwrap());
            assert_eq!(labels.template(path), matched, "{method} {path}");
            // Every route under /v1 needs a scope: none is open to any key.
            assert_eq!(
                crate::edge::required_scope(matched).is_some(),
                matched.starts_with("/v1/"),
                "{method} {path}: the scope table covers exactly the /v1 routes"
            );
        }
    }
}
