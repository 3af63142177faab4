//! Stateless tokens end to end (SPEC §1, §4.3, §4.4; CONTRACTS "Stateless
//! tokens"), named after the checklist IDs (JW, RT, RV, MD): issuance on
//! `POST /v1/sessions`, rotation at `POST /oauth2/token`, RFC 7009
//! revocation, RFC 7662 introspection, RFC 8414 metadata, the JWKS, the
//! revocation feed, key rotation through the CLI, a real resource server
//! (the `tessera` library, in this process) and an independent JOSE
//! implementation (PyJWT, `tests/interop/verify_with_pyjwt.py`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures::future::join_all;
use serde_json::{Value, json};
use tessera::resource::{Authenticated, Verifier, VerifierConfig};

use crate::harness::{Created, Opts, Resp, SECRET_CHARS, TestServer, is_secret, parse_time, secs_between};

/// Clients for the per-client tests: the built-in `default` spelled out, a
/// public client without refresh tokens (RT-14) and a confidential one
/// (secret [`RS_SECRET`], stored as its SHA-256).
const CLIENTS_TOML: &str = r#"
[[clients]]
client_id = "default"
kind = "public"
scopes = ["*"]
audiences = ["*"]
refresh_tokens = true

[[clients]]
client_id = "spa-no-rt"
kind = "public"
scopes = ["read"]
audiences = ["*"]
refresh_tokens = false

[[clients]]
client_id = "rs-backend"
kind = "confidential"
secret_sha256 = "9b2537dc3d101359ccb1e0492586541e237c23af3501e7189eaebd313944e165"
scopes = ["*"]
audiences = ["*"]
refresh_tokens = false
"#;
const RS_CLIENT: &str = "rs-backend";
const RS_SECRET: &str = "rs-secret-0123456789abcdefghijklmnopqrstuv";

const PYJWT_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/interop/verify_with_pyjwt.py"
);

// ------------------------------------------------------------------ helpers

/// `application/x-www-form-urlencoded` percent-encoding (RFC 3986 unreserved kept).
fn enc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => o.push(b as char),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// How a request to an OAuth endpoint authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    /// `Authorization: Bearer <bootstrap API key>`.
    ApiKey,
    /// `Authorization: Basic` (client_secret_basic).
    Basic(&'a str, &'a str),
}

async fn post_form(srv: &TestServer, path: &str, pairs: &[(&str, &str)], auth: Auth<'_>) -> Resp {
    let mut rb = srv
        .http
        .post(srv.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs));
    rb = match auth {
        Auth::None => rb,
        Auth::ApiKey => rb.bearer_auth(&srv.api_key),
        Auth::Basic(id, secret) => rb.header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
        ),
    };
    srv.send(rb).await
}

/// `grant_type=refresh_token` for the built-in public client.
async fn refresh(srv: &TestServer, rt: &str, scope: Option<&str>) -> Resp {
    let mut p = vec![
        ("grant_type", "refresh_token"),
        ("client_id", "default"),
        ("refresh_token", rt),
    ];
    if let Some(s) = scope {
        p.push(("scope", s));
    }
    post_form(srv, "/oauth2/token", &p, Auth::None).await
}

async fn introspect(srv: &TestServer, token: &str) -> Resp {
    post_form(srv, "/oauth2/introspect", &[("token", token)], Auth::ApiKey).await
}

/// RFC 7009 revocation by the public client `default`.
async fn revoke(srv: &TestServer, token: &str, hint: Option<&str>) -> Resp {
    let mut p = vec![("token", token), ("client_id", "default")];
    if let Some(h) = hint {
        p.push(("token_type_hint", h));
    }
    post_form(srv, "/oauth2/revoke", &p, Auth::None).await
}

#[track_caller]
fn assert_json_ct(r: &Resp) {
    let ct = r.header("content-type").unwrap_or_default().to_ascii_lowercase();
    assert!(
        ct.starts_with("application/json"),
        "content-type {ct:?} is not application/json (status {}, body {})",
        r.status,
        r.text()
    );
}

/// MD-08 / RFC 6749 §5.1: a successful token response.
#[track_caller]
fn assert_token_response(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "token request failed: {}", r.text());
    assert_json_ct(r);
    r.assert_no_store();
    let pragma = r.header("pragma").unwrap_or_default();
    assert!(
        pragma.eq_ignore_ascii_case("no-cache"),
        "MD-08: token responses carry Pragma: no-cache, got {pragma:?}"
    );
    let v = r.json();
    assert!(v["access_token"].is_string(), "access_token: {v}");
    assert_eq!(v["token_type"], "Bearer", "token_type: {v}");
    assert!(v["expires_in"].as_i64().is_some_and(|e| e > 0), "expires_in: {v}");
    v
}

/// RFC 6749 §5.2 error: status, JSON, `error` code, optional string
/// `error_description`.
#[track_caller]
fn assert_oauth_error(r: &Resp, status: u16, code: &str) -> Value {
    assert_eq!(
        r.status,
        status,
        "expected {status} {code}, got {} {}",
        r.status,
        r.text()
    );
    assert_json_ct(r);
    let v = r.json();
    assert_eq!(v["error"], code, "error code: {v}");
    if let Some(d) = v.get("error_description") {
        assert!(d.is_string(), "error_description is a string: {v}");
    }
    assert!(!r.text().contains("tsr_"), "an error echoes a refresh token: {v}");
    v
}

/// The exact RV-09 answer for anything not active.
#[track_caller]
fn assert_inactive(r: &Resp) {
    assert_eq!(r.status, 200, "introspection: {}", r.text());
    assert_json_ct(r);
    assert_eq!(
        r.text(),
        r#"{"active":false}"#,
        "RV-09: an inactive token gets exactly {{\"active\":false}}"
    );
}

fn b64url_json(seg: &str) -> Value {
    let raw = URL_SAFE_NO_PAD
        .decode(seg)
        .unwrap_or_else(|e| panic!("JWT segment is not base64url ({e}): {seg:?}"));
    serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("JWT segment is not JSON: {e}"))
}

/// (protected header, claims) of a compact JWS, unverified.
fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS has 3 segments: {token:?}");
    (b64url_json(parts[0]), b64url_json(parts[1]))
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A session created with `tokens`, and what came with it.
struct Login {
    created: Created,
    body: Value,
    access: String,
    refresh: Option<String>,
}

async fn login(srv: &TestServer, subject: &str, tokens: Value) -> Login {
    let created = srv
        .create(json!({
            "subject": subject,
            "auth": {"level": 1, "methods": ["pwd"]},
            "tokens": tokens,
        }))
        .await;
    created.resp.assert_no_store();
    let body = created.resp.json();
    let access = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("POST /v1/sessions with tokens gives an access_token: {body}"))
        .to_owned();
    assert_eq!(body["token_type"], "Bearer", "token_type: {body}");
    assert!(
        body["expires_in"].as_i64().is_some_and(|e| e > 0),
        "expires_in: {body}"
    );
    let refresh = body["refresh_token"].as_str().map(str::to_owned);
    if let Some(rt) = &refresh {
        assert!(
            is_secret("tsr_", rt),
            "refresh_token is tsr_ + 43 base64url: {rt:?}"
        );
    }
    Login {
        created,
        body,
        access,
        refresh,
    }
}

async fn jwks(srv: &TestServer) -> Value {
    let r = srv.send(srv.http.get(srv.url("/.well-known/jwks.json"))).await;
    r.assert_status(200);
    assert_json_ct(&r);
    r.json()
}

fn kids_of(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("JWKS keys array")
        .iter()
        .map(|k| k["kid"].as_str().expect("every JWK has a kid").to_owned())
        .collect()
}

fn count_kind(events: &[Value], handle: &str, kind: &str) -> usize {
    events
        .iter()
        .filter(|e| e["kind"] == kind && e["handle"] == handle)
        .count()
}

// ------------------------------------------------- in-process resource server

/// The library's resource server, as in `crates/tessera/examples/resource_server.rs`:
/// a [`Verifier`] on the service's JWKS and revocation feed, the
/// [`Authenticated`] extractor, `GET /api/me`.
struct ResourceServer {
    addr: SocketAddr,
    verifier: Verifier,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    http: reqwest::Client,
}

async fn me(Authenticated(token): Authenticated) -> Json<Value> {
    let c = &token.claims;
    Json(json!({
        "sub": c.sub,
        "sid": c.sid,
        "client_id": c.client_id,
        "scope": c.scope,
        "scopes": token.scopes,
    }))
}

impl ResourceServer {
    async fn start(srv: &TestServer, audience: &str) -> ResourceServer {
        let mut config = VerifierConfig::new(
            srv.base.clone(),
            audience,
            srv.url("/.well-known/jwks.json").parse().unwrap(),
        );
        config.revocations_url = Some(srv.url("/v1/revocations").parse().unwrap());
        // As the example says: a key that may read the feed and nothing else.
        let (st, out, err) = srv.cli(&[
            "api-keys",
            "create",
            "--name",
            "resource-server",
            "--scope",
            "revocations",
        ]);
        assert!(st.success(), "api-keys create: {out}\n{err}");
        config.api_key = Some(out.trim().to_owned());
        let verifier = Verifier::new(config).expect("verifier config");
        verifier.refresh_jwks().await.expect("initial JWKS fetch");
        let mut tasks = vec![verifier.spawn_feed(), verifier.spawn_jwks_refresh()];
        let app = Router::new()
            .route("/api/me", get(me))
            .with_state(verifier.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind resource server");
        let addr = listener.local_addr().unwrap();
        tasks.push(tokio::spawn(async move {
            axum::serve(listener, app).await.expect("resource server");
        }));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let rs = ResourceServer {
            addr,
            verifier,
            tasks,
            http,
        };
        // It refuses every token until the feed's first snapshot is in.
        rs.wait_feed().await;
        rs
    }

    async fn me(&self, access_token: &str) -> Resp {
        let r = self
            .http
            .get(format!("http://{}/api/me", self.addr))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("resource server request");
        Resp {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.bytes().await.expect("body").to_vec(),
        }
    }

    /// Until the verifier has synced with the revocation feed once.
    async fn wait_feed(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.verifier.feed_healthy() {
            assert!(
                Instant::now() < deadline,
                "the resource server never synced with /v1/revocations"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ResourceServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

// ------------------------------------------------------------------ the flow

/// SPEC §4.4 end to end: a resource server built on the library refuses a
/// revoked session's still-unexpired access token within 1 s, while
/// verifying locally; refresh works in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_flow_resource_server_refuses_revoked_within_1s() {
    let srv = TestServer::start(Opts::default()).await;
    let rs = ResourceServer::start(&srv, "api-rs").await;
    let l = login(&srv, "rs-user", json!({"scope": "read", "audience": "api-rs"})).await;
    assert_eq!(l.body["scope"], "read", "the granted scope is echoed: {}", l.body);
    let rt = l
        .refresh
        .clone()
        .expect("the default client gets a refresh token");

    let r = rs.me(&l.access).await;
    assert_eq!(
        r.status,
        200,
        "GET /api/me with a fresh access token: {}",
        r.text()
    );
    let v = r.json();
    assert_eq!(v["sub"], "rs-user");
    assert_eq!(v["sid"], l.created.handle.as_str());
    assert_eq!(v["client_id"], "default");
    assert_eq!(v["scopes"], json!(["read"]));

    // A token for another audience is refused here (JW-10).
    let other = login(&srv, "rs-user", json!({"scope": "read", "audience": "api-other"})).await;
    let r = rs.me(&other.access).await;
    assert_eq!(r.status, 401, "aud=api-other at api-rs: {}", r.text());

    // Refresh: a new access token that works too.
    let t = assert_token_response(&refresh(&srv, &rt, None).await);
    let at2 = t["access_token"].as_str().unwrap().to_owned();
    let rt2 = t["refresh_token"]
        .as_str()
        .expect("rotated refresh token")
        .to_owned();
    assert_ne!(rt2, rt, "RT-01: a new refresh token");
    assert_ne!(at2, l.access);
    let r = rs.me(&at2).await;
    assert_eq!(
        r.status,
        200,
        "GET /api/me with the refreshed token: {}",
        r.text()
    );
    let exp = jwt_parts(&at2).1["exp"].as_i64().unwrap();

    // Revoke the session; the access token has minutes left.
    rs.wait_feed().await;
    let t0 = Instant::now();
    srv.post("/v1/sessions/revoke", &json!({"session_token": l.created.token}))
        .await
        .assert_status(204);
    let refused = loop {
        let r = rs.me(&at2).await;
        if r.status == 401 {
            break r;
        }
        assert_eq!(r.status, 200, "unexpected answer: {}", r.text());
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "SPEC §4.4: a revoked session's access token is still accepted {:?} after the revoke",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = t0.elapsed();
    assert!(elapsed < Duration::from_secs(1), "refused only after {elapsed:?}");
    assert!(now_unix() < exp - 60, "the token was still far from expiry");
    let www = refused.header("www-authenticate").unwrap_or_default();
    assert!(
        www.starts_with("Bearer") && www.contains("error=\"invalid_token\""),
        "RFC 6750 challenge: {www:?}"
    );
    eprintln!("revoked access token refused {elapsed:?} after the revoke request");
    assert_eq!(rs.me(&l.access).await.status, 401, "the first access token too");
    // The other session of the same subject is untouched.
    let mut cfg = VerifierConfig::new(
        srv.base.clone(),
        "api-other",
        srv.url("/.well-known/jwks.json").parse().unwrap(),
    );
    cfg.revocations_url = None;
    let v2 = Verifier::with_jwks(cfg, jwks(&srv).await).unwrap();
    v2.verify_sync(&other.access)
        .expect("another session's token stays valid");
    // The revoked grant cannot be refreshed.
    assert_oauth_error(&refresh(&srv, &rt2, None).await, 400, "invalid_grant");
    drop(rs);
    srv.finish().await;
}

// ------------------------------------------------------------------ JW claims

/// JW-12/13/14/21: the issued access token's header and claims.
#[tokio::test]
async fn jw_13_access_token_claims_and_header() {
    let srv = TestServer::start(Opts::default()).await;
    let l = login(
        &srv,
        "claims",
        json!({"scope": "read write", "audience": "api-rs"}),
    )
    .await;
    let (h, c) = jwt_parts(&l.access);
    assert_eq!(h["typ"], "at+jwt", "JW-12: {h}");
    assert_eq!(h["alg"], "EdDSA", "JW-14: EdDSA is the default: {h}");
    let kid = h["kid"].as_str().expect("JW-14: kid present").to_owned();
    assert!(
        kids_of(&jwks(&srv).await).contains(&kid),
        "JW-14: kid in the JWKS"
    );
    for k in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "sid"] {
        assert!(c.get(k).is_some(), "JW-13: claim {k} missing: {c}");
    }
    assert_eq!(c["iss"], srv.base.as_str(), "default issuer http://<listen>");
    assert_eq!(c["sub"], "claims");
    assert_eq!(c["aud"], "api-rs", "one audience is a string");
    assert_eq!(c["client_id"], "default");
    assert_eq!(c["sid"], l.created.handle.as_str());
    assert_eq!(c["scope"], "read write");
    assert_eq!(c["acr"], "1", "acr is the level as a string");
    assert_eq!(c["amr"], json!(["pwd"]));
    assert!(c["auth_time"].is_i64(), "auth_time: {c}");
    let ttl = c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap();
    assert_eq!(ttl, 300, "default access-token TTL");
    assert_eq!(l.body["expires_in"], 300);
    assert!((c["iat"].as_i64().unwrap() - now_unix()).abs() <= 5, "iat is now");
    assert!(c.get("cnf").is_none(), "a Bearer token has no cnf");
    // JW-21: nothing but what authorization needs.
    let names: BTreeSet<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    let allowed: BTreeSet<&str> = [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "sid",
        "scope",
        "auth_time",
        "acr",
        "amr",
    ]
    .into();
    assert!(names.is_subset(&allowed), "unexpected claims: {names:?}");
    // Several audiences → an array.
    let l2 = login(&srv, "claims", json!({"audience": ["a1", "a2"]})).await;
    assert_eq!(jwt_parts(&l2.access).1["aud"], json!(["a1", "a2"]));
    // No audience → the default one.
    let l3 = login(&srv, "claims", json!({})).await;
    let c3 = jwt_parts(&l3.access).1;
    assert_eq!(c3["aud"], "tessera", "default_audience");
    assert!(
        c3.get("scope").is_none(),
        "no scope claim when none was asked: {c3}"
    );
    srv.finish().await;
}

/// JW-19: the JWKS publishes only public keys, unique kids with alg and use,
/// and a max-age shorter than the pre-publication period (1 day).
#[tokio::test]
async fn jw_19_jwks_public_only() {
    let srv = TestServer::start(Opts::default()).await;
    let r = srv.send(srv.http.get(srv.url("/.well-known/jwks.json"))).await;
    r.assert_status(200);
    let cc = r.header("cache-control").unwrap_or_default();
    let max_age: i64 = cc
        .split(',')
        .map(str::trim)
        .find_map(|d| d.strip_prefix("max-age="))
        .unwrap_or_else(|| panic!("JWKS Cache-Control has max-age: {cc:?}"))
        .parse()
        .expect("max-age is a number");
    assert!(
        (0..86_400).contains(&max_age),
        "max-age {max_age} below prepublish_secs"
    );
    let v = r.json();
    let keys = v["keys"].as_array().expect("keys");
    assert!(!keys.is_empty());
    for k in keys {
        for m in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
            assert!(k.get(m).is_none(), "JW-19: private member {m} in {k}");
        }
        assert_eq!(k["use"], "sig", "{k}");
        assert_eq!(k["alg"], "EdDSA", "{k}");
        assert!(k["kid"].is_string(), "{k}");
    }
    let kids = kids_of(&v);
    let uniq: BTreeSet<_> = kids.iter().collect();
    assert_eq!(uniq.len(), kids.len(), "unique kids: {kids:?}");
    srv.finish().await;
}

/// JW-19/JW-20 with the real CLI: `tessera keys rotate --in 0` on the
/// store of a running server. The server picks the new key up; tokens of
/// the old kid still verify through the JWKS, new tokens carry the new kid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jw_20_cli_rotation_old_kid_still_verifies() {
    let srv = TestServer::start(Opts::default()).await;
    let old = login(&srv, "rot", json!({"audience": "api-rs"})).await;
    let old_kid = jwt_parts(&old.access).0["kid"].as_str().unwrap().to_owned();
    assert_eq!(kids_of(&jwks(&srv).await), vec![old_kid.clone()]);

    let (st, out, err) = srv.cli(&["keys", "list"]);
    assert!(st.success(), "keys list: {out}{err}");
    assert!(out.contains(&old_kid), "keys list shows the key: {out}");
    let (st, out, err) = srv.cli(&["keys", "rotate", "--in", "0"]);
    assert!(st.success(), "keys rotate --in 0: {out}{err}");

    // The running server reloads its keys on an interval: poll the JWKS.
    let deadline = Instant::now() + Duration::from_secs(30);
    let set = loop {
        let set = jwks(&srv).await;
        if kids_of(&set).len() >= 2 {
            break set;
        }
        assert!(
            Instant::now() < deadline,
            "the running server did not publish the key added by `tessera keys rotate --in 0` within 40 s; log:\n{}",
            srv.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let kids = kids_of(&set);
    assert!(
        kids.contains(&old_kid),
        "JW-20: the retired key stays published: {kids:?}"
    );
    let new_kid = kids.iter().find(|k| **k != old_kid).unwrap().clone();
    assert!(
        out.contains(&new_kid) || err.contains(&new_kid),
        "keys rotate names the new kid ({new_kid}): {out}{err}"
    );
    let uniq: BTreeSet<_> = kids.iter().collect();
    assert_eq!(uniq.len(), kids.len(), "JW-19: unique kids");
    for k in set["keys"].as_array().unwrap() {
        assert!(k.get("d").is_none(), "JW-19: no private part: {k}");
    }

    // New tokens are signed with the new key (a refresh mints with it too).
    let fresh = login(&srv, "rot", json!({"audience": "api-rs"})).await;
    assert_eq!(
        jwt_parts(&fresh.access).0["kid"],
        new_kid.as_str(),
        "JW-20: new kid signs"
    );
    let t = assert_token_response(&refresh(&srv, old.refresh.as_deref().unwrap(), None).await);
    let refreshed = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_parts(&refreshed).0["kid"], new_kid.as_str());

    // Both verify against the published JWKS, with the library's verifier.
    let mut cfg = VerifierConfig::new(
        srv.base.clone(),
        "api-rs",
        srv.url("/.well-known/jwks.json").parse().unwrap(),
    );
    cfg.revocations_url = None;
    let v = Verifier::with_jwks(cfg, set.clone()).unwrap();
    v.verify_sync(&old.access)
        .expect("JW-20: an old-kid token still verifies");
    v.verify_sync(&fresh.access).expect("a new-kid token verifies");
    // ... and with a verifier that only knew the old JWKS (refetch on an unknown kid).
    let rs = ResourceServer::start(&srv, "api-rs").await;
    assert_eq!(rs.me(&old.access).await.status, 200);
    assert_eq!(rs.me(&fresh.access).await.status, 200);
    drop(rs);
    // The service itself still accepts the old-kid token.
    let r = introspect(&srv, &old.access).await;
    assert_eq!(
        r.json()["active"],
        true,
        "old-kid token introspects active: {}",
        r.text()
    );
    srv.finish().await;
}

/// Defect 12: `tessera keys revoke KID` withdraws a compromised key. The
/// CLI's own view changes at once (`keys list` shows it revoked, a fresh
/// key signs), a running server sharing the store follows within its key
/// reload (30 s): the key leaves its JWKS and its tokens introspect
/// inactive, and a resource server's JWKS refresh drops it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_revoke_withdraws_a_compromised_key_everywhere() {
    // The running server reloads its keys every second here (default 30 s),
    // so the wait below is short even on a loaded machine.
    let srv = TestServer::start(Opts::default().env("TESSERA_KEYS_RELOAD_INTERVAL_SECS", "1")).await;
    let l = login(&srv, "kr", json!({"audience": "api-rs"})).await;
    let kid = jwt_parts(&l.access).0["kid"].as_str().unwrap().to_owned();
    let rs = ResourceServer::start(&srv, "api-rs").await;
    assert_eq!(rs.me(&l.access).await.status, 200);

    let (st, out, err) = srv.cli(&["keys", "revoke", "no-such-kid"]);
    assert_eq!(st.code(), Some(1), "unknown kid: {out}{err}");
    let (st, out, err) = srv.cli(&["keys", "revoke", &kid]);
    assert!(st.success(), "keys revoke: {out}{err}");
    let fresh = out.trim().to_owned();
    assert!(
        !fresh.is_empty() && fresh != kid,
        "the fresh signer's kid on stdout: {out}{err}"
    );
    let (st, out, err) = srv.cli(&["keys", "revoke", &kid]);
    assert_eq!(st.code(), Some(1), "already revoked: {out}{err}");
    let (st, out, err) = srv.cli(&["keys", "list", "--json"]);
    assert!(st.success(), "{out}{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let row = |k: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kid"] == k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} listed: {listed}"))
    };
    assert_eq!(row(&kid)["state"], "revoked", "{listed}");
    assert_eq!(row(&kid)["published"], false);
    assert!(row(&kid)["revoked_at"].is_string(), "{listed}");
    assert_eq!(row(&fresh)["state"], "active", "{listed}");

    // The running server reloads its keys on an interval: poll the JWKS.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let kids = kids_of(&jwks(&srv).await);
        if !kids.contains(&kid) {
            assert!(kids.contains(&fresh), "{kids:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the running server still publishes the revoked key after 30 s; log:\n{}",
            srv.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_inactive(&introspect(&srv, &l.access).await);
    let again = login(&srv, "kr", json!({"audience": "api-rs"})).await;
    assert_eq!(jwt_parts(&again.access).0["kid"], fresh.as_str());
    // The resource server: its next JWKS refresh (or the refetch for the
    // fresh kid) drops the revoked key and the cached acceptance.
    rs.verifier.refresh_jwks().await.unwrap();
    assert_eq!(rs.me(&l.access).await.status, 401);
    assert_eq!(rs.me(&again.access).await.status, 200);
    drop(rs);
    srv.finish().await;
}

// ------------------------------------------------------------------------ RT

/// RT-01: every refresh issues a new RT; inside the grace window the
/// consumed one returns the same successor, after it → 400 invalid_grant.
#[tokio::test]
async fn rt_01_rotation() {
    let srv = TestServer::start(Opts::default().env("TESSERA_REFRESH_REUSE_GRACE_SECS", "2")).await;
    let l = login(&srv, "rt01", json!({})).await;
    let rt1 = l.refresh.unwrap();
    let t = assert_token_response(&refresh(&srv, &rt1, None).await);
    let rt2 = t["refresh_token"]
        .as_str()
        .expect("a new refresh token")
        .to_owned();
    assert!(is_secret("tsr_", &rt2));
    assert_ne!(rt1, rt2, "RT-01: RT2 != RT1");
    // Within the grace window: the same successor again (a retry).
    let again = assert_token_response(&refresh(&srv, &rt1, None).await);
    assert_eq!(again["refresh_token"], rt2.as_str(), "grace: the same successor");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_oauth_error(&refresh(&srv, &rt1, None).await, 400, "invalid_grant");
    srv.finish().await;
}

/// RT-01 strict (grace 0): RT1 again right away → 400 invalid_grant.
#[tokio::test]
async fn rt_01_rotation_strict() {
    let srv = TestServer::start(Opts::default().env("TESSERA_REFRESH_REUSE_GRACE_SECS", "0")).await;
    let l = login(&srv, "rt01s", json!({})).await;
    let rt1 = l.refresh.unwrap();
    let t = assert_token_response(&refresh(&srv, &rt1, None).await);
    let rt2 = t["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    // A chain of rotations, each new.
    let mut seen = BTreeSet::from([rt1.clone(), rt2.clone()]);
    let mut cur = rt2;
    for _ in 0..5 {
        let t = assert_token_response(&refresh(&srv, &cur, None).await);
        cur = t["refresh_token"].as_str().unwrap().to_owned();
        assert!(seen.insert(cur.clone()), "a repeated refresh token");
    }
    assert_oauth_error(&refresh(&srv, &rt1, None).await, 400, "invalid_grant");
    srv.finish().await;
}

/// RT-02: replaying a consumed RT revokes the family and the session, its
/// access tokens introspect inactive, and `refresh_token_reuse` is recorded.
#[tokio::test]
async fn rt_02_reuse_revokes_family_and_session() {
    let srv = TestServer::start(Opts::default().env("TESSERA_REFRESH_REUSE_GRACE_SECS", "0")).await;
    let l = login(&srv, "rt02", json!({"scope": "read"})).await;
    let bystander = login(&srv, "rt02", json!({"scope": "read"})).await;
    let rt1 = l.refresh.clone().unwrap();
    let t = assert_token_response(&refresh(&srv, &rt1, None).await);
    let rt2 = t["refresh_token"].as_str().unwrap().to_owned();
    let at2 = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&srv, &at2).await.json()["active"], true);

    assert_oauth_error(&refresh(&srv, &rt1, None).await, 400, "invalid_grant");
    assert_oauth_error(&refresh(&srv, &rt2, None).await, 400, "invalid_grant");
    assert_inactive(&introspect(&srv, &at2).await);
    assert_inactive(&introspect(&srv, &l.access).await);
    assert_inactive(&introspect(&srv, &rt2).await);
    srv.verify(&l.created.token)
        .await
        .assert_problem(401, "session_revoked");

    let ev = srv.all_events("&subject=rt02").await;
    let reuse: Vec<_> = ev.iter().filter(|e| e["kind"] == "refresh_token_reuse").collect();
    assert_eq!(reuse.len(), 1, "one refresh_token_reuse event: {ev:?}");
    assert_eq!(reuse[0]["handle"], l.created.handle.as_str());
    assert!(
        !serde_json::to_string(&ev).unwrap().contains("tsr_"),
        "events never contain a token"
    );
    // The feed lists the revoked session.
    let feed = srv.get("/v1/revocations").await;
    feed.assert_status(200);
    let sids: Vec<_> = feed.json()["revocations"]
        .as_array()
        .expect("revocations")
        .iter()
        .map(|r| r["sid"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        sids.contains(&l.created.handle),
        "feed lists the session: {sids:?}"
    );
    // Another session of the same subject is untouched.
    srv.assert_verifies(&bystander.created.token).await;
    assert_token_response(&refresh(&srv, bystander.refresh.as_deref().unwrap(), None).await);
    srv.finish().await;
}

/// RT-07: a refresh may narrow the scope, never widen it; a refused
/// widening leaves the token usable (the store as it was).
#[tokio::test]
async fn rt_07_scope_narrowing_only() {
    let srv = TestServer::start(Opts::default()).await;
    let l = login(&srv, "rt07", json!({"scope": "read write"})).await;
    let rt = l.refresh.unwrap();
    let e = assert_oauth_error(
        &refresh(&srv, &rt, Some("read admin")).await,
        400,
        "invalid_scope",
    );
    assert!(e.get("error_description").is_some(), "a description helps: {e}");
    let t = assert_token_response(&refresh(&srv, &rt, Some("read")).await);
    assert_eq!(t["scope"], "read", "narrowed scope echoed: {t}");
    let c = jwt_parts(t["access_token"].as_str().unwrap()).1;
    assert_eq!(c["scope"], "read", "the access token has the narrowed scope");
    let rt2 = t["refresh_token"].as_str().unwrap().to_owned();
    assert_oauth_error(
        &refresh(&srv, &rt2, Some("write delete")).await,
        400,
        "invalid_scope",
    );
    let t = assert_token_response(&refresh(&srv, &rt2, None).await);
    assert_eq!(
        jwt_parts(t["access_token"].as_str().unwrap()).1["scope"],
        "read write",
        "without scope: the originally granted scope"
    );
    srv.finish().await;
}

/// RT-11: 8 concurrent refreshes with one token. Inside the grace window
/// all succeed with the same successor and one rotation is recorded; with
/// grace 0 exactly one succeeds and the replay ends the session (SPEC §1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_11_concurrent_refresh() {
    let (grace, strict) = futures::join!(
        TestServer::start(Opts::default()),
        TestServer::start(Opts::default().env("TESSERA_REFRESH_REUSE_GRACE_SECS", "0")),
    );

    // Default grace (10 s).
    let l = login(&grace, "rt11", json!({})).await;
    let rt1 = l.refresh.clone().unwrap();
    let results = join_all((0..8).map(|_| refresh(&grace, &rt1, None))).await;
    let mut successors = BTreeSet::new();
    for r in &results {
        let t = assert_token_response(r);
        successors.insert(t["refresh_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(successors.len(), 1, "all got the SAME successor: {successors:?}");
    let rt2 = successors.into_iter().next().unwrap();
    assert_ne!(rt2, rt1);
    let ev = grace.all_events("&subject=rt11").await;
    assert_eq!(
        count_kind(&ev, &l.created.handle, "refreshed"),
        1,
        "exactly one rotation recorded: {ev:?}"
    );
    assert_eq!(count_kind(&ev, &l.created.handle, "refresh_token_reuse"), 0);
    grace.assert_verifies(&l.created.token).await;
    assert_token_response(&refresh(&grace, &rt2, None).await);

    // Strict.
    let l = login(&strict, "rt11s", json!({})).await;
    let rt1 = l.refresh.clone().unwrap();
    let results = join_all((0..8).map(|_| refresh(&strict, &rt1, None))).await;
    let ok: Vec<_> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        ok.len(),
        1,
        "grace 0: exactly one success: {:?}",
        results.iter().map(|r| (r.status, r.text())).collect::<Vec<_>>()
    );
    assert_token_response(ok[0]);
    for r in results.iter().filter(|r| r.status != 200) {
        assert_oauth_error(r, 400, "invalid_grant");
    }
    let winner = ok[0].json()["refresh_token"].as_str().unwrap().to_owned();
    // The documented policy: a replay outside the grace is theft.
    assert_oauth_error(&refresh(&strict, &winner, None).await, 400, "invalid_grant");
    strict
        .verify(&l.created.token)
        .await
        .assert_problem(401, "session_revoked");
    let ev = strict.all_events("&subject=rt11s").await;
    assert_eq!(count_kind(&ev, &l.created.handle, "refreshed"), 1, "{ev:?}");
    assert!(
        count_kind(&ev, &l.created.handle, "refresh_token_reuse") >= 1,
        "{ev:?}"
    );
    futures::join!(grace.finish(), strict.finish());
}

/// RT-12 (and JW-13's jti uniqueness): 1,000+ refresh tokens are distinct
/// `tsr_` + 43 base64url characters (32 bytes) that look random.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_12_refresh_tokens_distinct_and_random() {
    const CHAINS: usize = 8;
    const STEPS: usize = 125;
    // A thousand refreshes from one address in seconds: over the default
    // per-address limit of the token endpoint, which is not under test.
    let srv = TestServer::start(Opts::default().env("TESSERA_RATE_LIMITS_ENABLED", "false")).await;
    let chains = join_all((0..CHAINS).map(|i| {
        let srv = &srv;
        async move {
            let l = login(srv, &format!("rt12-{i}"), json!({})).await;
            let mut rts = vec![l.refresh.unwrap()];
            let mut jtis = vec![jwt_parts(&l.access).1["jti"].as_str().unwrap().to_owned()];
            for _ in 0..STEPS {
                let t = assert_token_response(&refresh(srv, rts.last().unwrap(), None).await);
                rts.push(t["refresh_token"].as_str().unwrap().to_owned());
                jtis.push(
                    jwt_parts(t["access_token"].as_str().unwrap()).1["jti"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            (rts, jtis)
        }
    }))
    .await;
    let rts: Vec<String> = chains.iter().flat_map(|c| c.0.clone()).collect();
    let jtis: BTreeSet<String> = chains.iter().flat_map(|c| c.1.clone()).collect();
    assert!(rts.len() >= 1000);
    assert_eq!(
        jtis.len(),
        rts.len(),
        "JW-13: jti unique across {} tokens",
        rts.len()
    );
    let uniq: BTreeSet<&String> = rts.iter().collect();
    assert_eq!(uniq.len(), rts.len(), "RT-12: refresh tokens are distinct");
    let mut ones = 0u64;
    let mut bits = 0u64;
    let mut counts = [0u32; 64];
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for rt in &rts {
        assert!(rt.starts_with("tsr_") && rt.len() == 4 + SECRET_CHARS, "{rt}");
        let body = &rt[4..];
        let raw = URL_SAFE_NO_PAD.decode(body).expect("canonical base64url");
        assert_eq!(raw.len(), 32, "256 bits");
        ones += raw.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
        bits += 256;
        for &c in &body.as_bytes()[..SECRET_CHARS - 1] {
            counts[ALPHA.iter().position(|&a| a == c).unwrap()] += 1;
        }
    }
    let share = ones as f64 / bits as f64;
    assert!((0.49..0.51).contains(&share), "share of one bits {share}");
    let expect = (rts.len() * (SECRET_CHARS - 1)) as f64 / 64.0;
    for (i, &n) in counts.iter().enumerate() {
        assert!(
            (f64::from(n) - expect).abs() < expect * 0.25,
            "character {:?} appears {n} times, expected about {expect}",
            ALPHA[i] as char
        );
    }
    srv.finish().await;
}

/// RT-14: a client configured without refresh tokens gets none (and cannot
/// use the refresh grant); per-client scopes are enforced.
#[tokio::test]
async fn rt_14_client_without_refresh_tokens() {
    let srv = TestServer::start(Opts::default().config(CLIENTS_TOML)).await;
    let l = login(&srv, "rt14", json!({"client_id": "spa-no-rt", "scope": "read"})).await;
    assert!(
        l.body.get("refresh_token").is_none_or(Value::is_null),
        "RT-14: no refresh_token for spa-no-rt: {}",
        l.body
    );
    assert_eq!(jwt_parts(&l.access).1["client_id"], "spa-no-rt");
    // The default client still gets one.
    let d = login(&srv, "rt14", json!({})).await;
    let rt = d.refresh.expect("default client gets a refresh token");
    // spa-no-rt may not use the grant (with the default client's token).
    let r = post_form(
        &srv,
        "/oauth2/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "spa-no-rt"),
            ("refresh_token", &rt),
        ],
        Auth::None,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let code = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        code == "unauthorized_client" || code == "invalid_grant",
        "RT-06/RT-14: {}",
        r.text()
    );
    // A scope the client is not allowed.
    let r = srv
        .post(
            "/v1/sessions",
            &json!({"subject": "rt14", "tokens": {"client_id": "spa-no-rt", "scope": "admin"}}),
        )
        .await;
    assert_eq!(r.status, 400, "scope admin for spa-no-rt: {}", r.text());
    // An unknown client.
    let r = srv
        .post(
            "/v1/sessions",
            &json!({"subject": "rt14", "tokens": {"client_id": "nobody"}}),
        )
        .await;
    assert_eq!(r.status, 400, "unknown client_id: {}", r.text());
    // The refused attempt did not consume the default client's token.
    assert_token_response(&refresh(&srv, &rt, None).await);
    srv.finish().await;
}

/// RT-04/RT-05: refresh tokens end with their session's absolute and idle
/// expiry; access tokens never outlive the session's absolute expiry.
#[tokio::test]
async fn rt_04_05_refresh_ends_with_session_expiry() {
    let srv = TestServer::start(Opts::default()).await;
    let create = |subject: &str, idle: i64, abs: i64| {
        let srv = &srv;
        let body =
            json!({"subject": subject, "ttl": {"idle_secs": idle, "absolute_secs": abs}, "tokens": {}});
        async move {
            let r = srv.post("/v1/sessions", &body).await;
            r.assert_status(201);
            r.json()
        }
    };
    let abs = create("rt04", 60, 2).await;
    let idle = create("rt05", 1, 60).await;
    let at = abs["access_token"].as_str().unwrap();
    let exp = jwt_parts(at).1["exp"].as_i64().unwrap();
    let abs_at = parse_time(abs["session"]["absolute_expires_at"].as_str().unwrap()).unix_timestamp();
    assert!(
        exp <= abs_at,
        "AT exp {exp} beyond the session's absolute expiry {abs_at}"
    );
    let abs_rt = abs["refresh_token"].as_str().unwrap().to_owned();
    let t = assert_token_response(&refresh(&srv, &abs_rt, None).await);
    let abs_rt = t["refresh_token"].as_str().unwrap().to_owned();
    let idle_rt = idle["refresh_token"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_oauth_error(&refresh(&srv, &abs_rt, None).await, 400, "invalid_grant");
    assert_oauth_error(&refresh(&srv, &idle_rt, None).await, 400, "invalid_grant");
    assert_inactive(&introspect(&srv, at).await);
    assert_inactive(&introspect(&srv, &idle_rt).await);
    srv.finish().await;
}

/// RT-10/FX: logout, login over a previous session, step-up and "log out
/// everywhere" end the refresh tokens issued before them; elevation can
/// issue new ones.
#[tokio::test]
async fn rt_10_session_events_end_refresh_tokens() {
    let srv = TestServer::start(Opts::default()).await;
    // Step-up with new tokens.
    let a = login(&srv, "rt10", json!({"scope": "read"})).await;
    let r = srv
        .post(
            "/v1/sessions/elevate",
            &json!({"session_token": a.created.token, "auth": {"level": 2, "methods": ["otp"]}, "tokens": {"scope": "read"}}),
        )
        .await;
    r.assert_status(200).assert_no_store();
    let e = r.json();
    let new_rt = e["refresh_token"]
        .as_str()
        .expect("elevate with tokens gives a refresh token")
        .to_owned();
    assert!(is_secret("tsr_", &new_rt));
    let new_at = e["access_token"].as_str().expect("and an access token");
    assert_eq!(jwt_parts(new_at).1["acr"], "2", "the new token has the new level");
    assert_eq!(
        jwt_parts(new_at).1["sid"],
        a.created.handle.as_str(),
        "same handle"
    );
    assert_oauth_error(
        &refresh(&srv, a.refresh.as_deref().unwrap(), None).await,
        400,
        "invalid_grant",
    );
    // The refused old token was not taken for theft: the session lives on.
    let t = assert_token_response(&refresh(&srv, &new_rt, None).await);
    assert_eq!(jwt_parts(t["access_token"].as_str().unwrap()).1["acr"], "2");
    let ev = srv.all_events("&subject=rt10").await;
    assert_eq!(
        count_kind(&ev, &a.created.handle, "refresh_token_reuse"),
        0,
        "{ev:?}"
    );

    // Login over a previous session.
    let b = login(&srv, "rt10b", json!({})).await;
    let r = srv
        .post(
            "/v1/sessions",
            &json!({"subject": "rt10b", "previous_session_token": b.created.token, "tokens": {}}),
        )
        .await;
    r.assert_status(201);
    assert_oauth_error(
        &refresh(&srv, b.refresh.as_deref().unwrap(), None).await,
        400,
        "invalid_grant",
    );
    assert_token_response(&refresh(&srv, r.json()["refresh_token"].as_str().unwrap(), None).await);

    // Log out everywhere.
    let c1 = login(&srv, "rt10c", json!({})).await;
    let c2 = login(&srv, "rt10c", json!({})).await;
    let r = srv.delete("/v1/subjects/rt10c/sessions").await;
    r.assert_status(200);
    for c in [&c1, &c2] {
        assert_oauth_error(
            &refresh(&srv, c.refresh.as_deref().unwrap(), None).await,
            400,
            "invalid_grant",
        );
        assert_inactive(&introspect(&srv, &c.access).await);
    }
    // Logout.
    let d = login(&srv, "rt10d", json!({})).await;
    srv.post("/v1/sessions/revoke", &json!({"session_token": d.created.token}))
        .await
        .assert_status(204);
    assert_oauth_error(
        &refresh(&srv, d.refresh.as_deref().unwrap(), None).await,
        400,
        "invalid_grant",
    );
    srv.finish().await;
}

/// Two more clients that MAY refresh, for RT-06: a refusal must come from
/// the token's binding, not from the client being unable to refresh at all.
const RT06_CLIENTS_TOML: &str = r#"
[[clients]]
client_id = "spa-rt"
kind = "public"
scopes = ["*"]
audiences = ["*"]
refresh_tokens = true

[[clients]]
client_id = "conf-rt"
kind = "confidential"
secret_sha256 = "2647a524c386faf2ce3b5b99aed225db3a16853e85a40e135c31279f8c5ecd2b"
scopes = ["*"]
audiences = ["*"]
refresh_tokens = true
"#;
const CONF_RT_SECRET: &str = "conf-rt-secret-0123456789abcdefghijklmnop";

/// A refresh token works only for the client it was issued to (RT-06):
/// another client that may refresh — public naming itself, or confidential
/// and authenticated — is refused with `invalid_grant` and consumes
/// nothing. A public client may omit `client_id` (the token's own client is
/// used); a confidential client's token then needs its credentials.
#[tokio::test]
async fn rt_06_client_binding() {
    let srv = TestServer::start(Opts::default().config(&format!("{CLIENTS_TOML}{RT06_CLIENTS_TOML}"))).await;
    let as_client = |rt: &str, client: &'static str| {
        let rt = rt.to_owned();
        let srv = &srv;
        async move {
            let (pairs, auth): (Vec<(&str, &str)>, Auth<'_>) = match client {
                "conf-rt" => (vec![], Auth::Basic("conf-rt", CONF_RT_SECRET)),
                "conf-rt/post" => (
                    vec![("client_id", "conf-rt"), ("client_secret", CONF_RT_SECRET)],
                    Auth::None,
                ),
                "" => (vec![], Auth::None),
                id => (vec![("client_id", id)], Auth::None),
            };
            let mut p = vec![("grant_type", "refresh_token"), ("refresh_token", rt.as_str())];
            p.extend(pairs);
            post_form(srv, "/oauth2/token", &p, auth).await
        }
    };
    #[track_caller]
    fn refused(r: &Resp, status: u16, error: &str, what: &str) {
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert_eq!(r.json()["error"], error, "{what}: {}", r.text());
    }

    // The default client's token; without client_id its own client is used.
    let l = login(&srv, "rt06", json!({})).await;
    let t = assert_token_response(&as_client(&l.refresh.clone().unwrap(), "").await);
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    for other in ["spa-rt", "conf-rt", "conf-rt/post"] {
        refused(&as_client(&rt, other).await, 400, "invalid_grant", other);
    }
    // Nothing was consumed and no reuse was suspected: the owner rotates it.
    let t = assert_token_response(&as_client(&rt, "default").await);
    assert_eq!(
        jwt_parts(t["access_token"].as_str().unwrap()).1["client_id"],
        "default"
    );

    // spa-rt's own token: it refreshes for spa-rt (named or implied), and
    // for nobody else.
    let s = login(&srv, "rt06-spa", json!({"client_id": "spa-rt"})).await;
    let rt = s.refresh.clone().expect("spa-rt gets a refresh token");
    for other in ["default", "conf-rt"] {
        refused(&as_client(&rt, other).await, 400, "invalid_grant", other);
    }
    let t = assert_token_response(&as_client(&rt, "spa-rt").await);
    assert_eq!(
        jwt_parts(t["access_token"].as_str().unwrap()).1["client_id"],
        "spa-rt"
    );
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let t = assert_token_response(&as_client(&rt, "").await);
    assert_eq!(
        jwt_parts(t["access_token"].as_str().unwrap()).1["client_id"],
        "spa-rt"
    );

    // conf-rt's own token: only with its credentials.
    let c = login(&srv, "rt06-conf", json!({"client_id": "conf-rt"})).await;
    let rt = c.refresh.clone().expect("conf-rt gets a refresh token");
    for other in ["default", "spa-rt"] {
        refused(&as_client(&rt, other).await, 400, "invalid_grant", other);
    }
    refused(&as_client(&rt, "").await, 401, "invalid_client", "no credentials");
    let t = assert_token_response(&as_client(&rt, "conf-rt").await);
    assert_eq!(
        jwt_parts(t["access_token"].as_str().unwrap()).1["client_id"],
        "conf-rt"
    );
    srv.finish().await;
}

/// Bad input at the OAuth endpoints: always a clear 4xx, never a 5xx (the
/// harness fails on any 5xx), and nothing consumed.
#[tokio::test]
async fn oauth_bad_input() {
    let srv = TestServer::start(Opts::default()).await;
    let l = login(&srv, "badin", json!({})).await;
    let rt = l.refresh.clone().unwrap();
    let raw = |path: &'static str, ct: &'static str, body: Vec<u8>| {
        let srv = &srv;
        async move {
            srv.send(srv.http.post(srv.url(path)).header("content-type", ct).body(body))
                .await
        }
    };
    const FORM: &str = "application/x-www-form-urlencoded";
    for path in ["/oauth2/token", "/oauth2/revoke"] {
        for body in [
            b"grant_type=refresh_token&client_id=default&refresh_token=%ZZ".to_vec(),
            b"grant_type=refresh_token&client_id=default&refresh_token=\xff\xfe".to_vec(),
            vec![b'a', 0xff, b'=', 0xfe],
            b"&&&==&".to_vec(),
            format!(
                "grant_type=refresh_token&client_id=default&refresh_token=tsr_{}",
                "A".repeat(10_000)
            )
            .into_bytes(),
        ] {
            let r = raw(path, FORM, body).await;
            assert!(
                (400..500).contains(&r.status),
                "{path}: {} {}",
                r.status,
                r.text()
            );
        }
        // Too large a body.
        let big = format!(
            "grant_type=refresh_token&client_id=default&x={}",
            "a".repeat(70 * 1024)
        );
        let r = raw(path, FORM, big.into_bytes()).await;
        assert!(
            r.status == 413 || r.status == 400,
            "{path}: big body: {} {}",
            r.status,
            r.text()
        );
        // Another content type.
        let r = raw(path, "text/plain", form(&[("token", &rt)]).into_bytes()).await;
        assert_oauth_error(&r, 400, "invalid_request");
    }
    // Malformed Basic credentials.
    for h in ["Basic !!!", "Basic ", "Basic Zm9v", "Bearer", "Digest x"] {
        let r = srv
            .send(
                srv.http
                    .post(srv.url("/oauth2/token"))
                    .header("content-type", FORM)
                    .header("authorization", h)
                    .body(form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])),
            )
            .await;
        assert!(
            (400..500).contains(&r.status) && r.json()["error"].is_string(),
            "Authorization {h:?}: {} {}",
            r.status,
            r.text()
        );
    }
    // revoke without a token.
    let r = post_form(&srv, "/oauth2/revoke", &[("client_id", "default")], Auth::None).await;
    assert_oauth_error(&r, 400, "invalid_request");
    // Nothing was consumed.
    assert_token_response(&refresh(&srv, &rt, None).await);
    srv.finish().await;
}

// ------------------------------------------------------------------------ RV

/// RV-01: tokens never in URLs — `GET /oauth2/revoke?token=…` is 405 and
/// revokes nothing.
#[tokio::test]
async fn rv_01_revoke_get_is_405() {
    let srv = TestServer::start(Opts::default()).await;
    let l = login(&srv, "rv01", json!({})).await;
    let rt = l.refresh.unwrap();
    let r = srv
        .send(
            srv.http
                .get(srv.url(&format!("/oauth2/revoke?token={rt}&client_id=default"))),
        )
        .await;
    assert_eq!(r.status, 405, "GET /oauth2/revoke: {}", r.text());
    let r = srv
        .send(
            srv.http
                .get(srv.url(&format!("/oauth2/introspect?token={rt}")))
                .bearer_auth(&srv.api_key),
        )
        .await;
    assert_eq!(r.status, 405, "GET /oauth2/introspect: {}", r.text());
    let r = srv
        .send(srv.http.get(srv.url(&format!(
            "/oauth2/token?grant_type=refresh_token&client_id=default&refresh_token={rt}"
        ))))
        .await;
    assert_eq!(r.status, 405, "GET /oauth2/token: {}", r.text());
    // Tokens in the query of a POST are ignored, not used.
    let r = srv
        .send(
            srv.http
                .post(srv.url(&format!("/oauth2/revoke?token={rt}&client_id=default")))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("client_id=default"),
        )
        .await;
    assert_oauth_error(&r, 400, "invalid_request");
    assert_token_response(&refresh(&srv, &rt, None).await);
    srv.finish().await;
}

/// RV-05: revoking garbage or an unknown token is 200 (no oracle).
#[tokio::test]
async fn rv_05_revoke_unknown_is_200() {
    let srv = TestServer::start(Opts::default()).await;
    for t in [
        "garbage",
        &crate::harness::forged_token("tsr_", 7),
        "eyJhbGciOiJub25lIn0.e30.",
    ] {
        let r = revoke(&srv, t, None).await;
        assert_eq!(r.status, 200, "revoke {t:?}: {}", r.text());
        r.assert_no_store();
    }
    srv.finish().await;
}

/// RV-08/RV-13: introspection requires caller authentication (API key or a
/// confidential client); bad credentials → 401, not an answer.
#[tokio::test]
async fn rv_08_introspect_requires_auth() {
    let srv = TestServer::start(Opts::default().config(CLIENTS_TOML)).await;
    let l = login(&srv, "rv08", json!({})).await;
    let p = [("token", l.access.as_str())];
    let r = post_form(&srv, "/oauth2/introspect", &p, Auth::None).await;
    assert_eq!(r.status, 401, "RV-08: no credentials: {}", r.text());
    assert!(
        !r.text().contains("\"active\""),
        "no answer without auth: {}",
        r.text()
    );
    let r = srv
        .send(
            srv.http
                .post(srv.url("/oauth2/introspect"))
                .bearer_auth(crate::harness::forged_token("tsk_", 3))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&p)),
        )
        .await;
    assert_eq!(r.status, 401, "a bad API key: {}", r.text());
    let r = post_form(&srv, "/oauth2/introspect", &p, Auth::Basic(RS_CLIENT, "wrong")).await;
    let e = assert_oauth_error(&r, 401, "invalid_client");
    assert!(
        r.header("www-authenticate").is_some(),
        "RV-13/MD-08: challenge with HTTP auth: {e}"
    );
    // The public client cannot introspect.
    let r = post_form(
        &srv,
        "/oauth2/introspect",
        &[("token", l.access.as_str()), ("client_id", "default")],
        Auth::None,
    )
    .await;
    assert_eq!(
        r.status,
        401,
        "a public client id is no authentication: {}",
        r.text()
    );
    // The confidential client can.
    let r = post_form(&srv, "/oauth2/introspect", &p, Auth::Basic(RS_CLIENT, RS_SECRET)).await;
    r.assert_status(200);
    assert_eq!(r.json()["active"], true, "{}", r.text());
    // And the API key.
    let r = introspect(&srv, &l.access).await;
    r.assert_status(200).assert_no_store();
    let v = r.json();
    // RV-10: the members of an active answer.
    assert_eq!(v["active"], true);
    // (no `scope`: none was asked for)
    for k in ["client_id", "sub", "aud", "iss", "exp", "iat"] {
        assert!(v.get(k).is_some(), "RV-10: {k} in {v}");
    }
    assert_eq!(v["sub"], "rv08");
    assert_eq!(v["client_id"], "default");
    srv.finish().await;
}

/// RV-09: anything not active is exactly `{"active":false}`.
#[tokio::test]
async fn rv_09_inactive_is_exact() {
    let srv = TestServer::start(Opts::default()).await;
    for t in [
        "garbage".to_owned(),
        crate::harness::forged_token("tsr_", 11),
        "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiJ4In0.".to_owned(),
    ] {
        assert_inactive(&introspect(&srv, &t).await);
    }
    // No token at all is a malformed request, not a question (RFC 7662 §2.1).
    let r = post_form(
        &srv,
        "/oauth2/introspect",
        &[("token_type_hint", "access_token")],
        Auth::ApiKey,
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_request");
    // A tampered access token.
    let l = login(&srv, "rv09", json!({"scope": "read"})).await;
    let parts: Vec<&str> = l.access.split('.').collect();
    let mut claims = jwt_parts(&l.access).1;
    claims["scope"] = json!("read admin");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert_inactive(&introspect(&srv, &forged).await);
    // A consumed refresh token (inside the grace it is no longer active).
    let t = assert_token_response(&refresh(&srv, l.refresh.as_deref().unwrap(), None).await);
    assert_inactive(&introspect(&srv, l.refresh.as_deref().unwrap()).await);
    let v = introspect(&srv, t["refresh_token"].as_str().unwrap())
        .await
        .json();
    assert_eq!(v["active"], true, "the current refresh token is active: {v}");
    assert_eq!(v["scope"], "read");
    srv.finish().await;
}

/// RV-03/RV-04/RV-06: revoking a refresh token takes effect at once: the
/// RT is refused, the grant's access tokens introspect inactive; a wrong
/// `token_type_hint` does not prevent it. Revoking an access token ends its
/// session too.
#[tokio::test]
async fn rv_03_04_revoke_refresh_token_kills_grant() {
    let srv = TestServer::start(Opts::default()).await;
    let l = login(&srv, "rv03", json!({})).await;
    let rt = l.refresh.clone().unwrap();
    assert_eq!(introspect(&srv, &l.access).await.json()["active"], true);
    let r = revoke(&srv, &rt, Some("refresh_token")).await;
    r.assert_status(200);
    assert_oauth_error(&refresh(&srv, &rt, None).await, 400, "invalid_grant");
    assert_inactive(&introspect(&srv, &l.access).await);
    assert_inactive(&introspect(&srv, &rt).await);

    // RV-06: the wrong hint.
    let l = login(&srv, "rv06", json!({})).await;
    let rt = l.refresh.clone().unwrap();
    revoke(&srv, &rt, Some("access_token")).await.assert_status(200);
    assert_oauth_error(&refresh(&srv, &rt, None).await, 400, "invalid_grant");
    assert_inactive(&introspect(&srv, &l.access).await);

    // Revoking the access token (self-contained; revoked through its session).
    let l = login(&srv, "rv04", json!({})).await;
    let rt = l.refresh.clone().unwrap();
    let r = revoke(&srv, &l.access, None).await;
    r.assert_status(200);
    assert_inactive(&introspect(&srv, &l.access).await);
    assert_oauth_error(&refresh(&srv, &rt, None).await, 400, "invalid_grant");
    srv.finish().await;
}

/// RV-02: another client cannot revoke a client's token (200, no effect).
#[tokio::test]
async fn rv_02_other_client_cannot_revoke() {
    let srv = TestServer::start(Opts::default().config(CLIENTS_TOML)).await;
    let l = login(&srv, "rv02", json!({})).await;
    let rt = l.refresh.clone().unwrap();
    let r = post_form(
        &srv,
        "/oauth2/revoke",
        &[("token", rt.as_str()), ("client_id", "spa-no-rt")],
        Auth::None,
    )
    .await;
    assert_eq!(
        r.status,
        200,
        "RV-02: 200 with no effect (the documented choice): {}",
        r.text()
    );
    let r = post_form(
        &srv,
        "/oauth2/revoke",
        &[("token", rt.as_str())],
        Auth::Basic(RS_CLIENT, RS_SECRET),
    )
    .await;
    assert_eq!(
        r.status,
        200,
        "RV-02: 200 with no effect (the documented choice): {}",
        r.text()
    );
    // RV-01: a confidential client with a wrong secret → 401 invalid_client.
    let r = post_form(
        &srv,
        "/oauth2/revoke",
        &[("token", rt.as_str())],
        Auth::Basic(RS_CLIENT, "nope"),
    )
    .await;
    assert_oauth_error(&r, 401, "invalid_client");
    let r = post_form(
        &srv,
        "/oauth2/revoke",
        &[("token", rt.as_str()), ("client_id", RS_CLIENT)],
        Auth::None,
    )
    .await;
    assert_oauth_error(&r, 401, "invalid_client");
    assert_token_response(&refresh(&srv, &rt, None).await);
    srv.finish().await;
}

/// RV-11: an expired access token introspects inactive.
#[tokio::test]
async fn rv_11_expired_access_token_inactive() {
    let srv = TestServer::start(Opts::default().env("TESSERA_OAUTH_ACCESS_TOKEN_TTL_SECS", "2")).await;
    let l = login(&srv, "rv11", json!({})).await;
    assert_eq!(l.body["expires_in"], 2);
    let exp = jwt_parts(&l.access).1["exp"].as_i64().unwrap();
    let v = introspect(&srv, &l.access).await.json();
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["exp"], exp);
    // Past `exp` (whole seconds) with a margin: at most 3 s.
    let wait = (exp + 1 - now_unix()).clamp(0, 3) as u64;
    tokio::time::sleep(Duration::from_millis(wait * 1000 + 100)).await;
    assert!(now_unix() > exp);
    assert_inactive(&introspect(&srv, &l.access).await);
    // The session itself lives on; a refresh mints a fresh one.
    let t = assert_token_response(&refresh(&srv, l.refresh.as_deref().unwrap(), None).await);
    assert_eq!(t["expires_in"], 2);
    srv.finish().await;
}

// ---------------------------------------------------------------- the feed

/// SPEC §4.4 / CONTRACTS: `GET /v1/revocations?after=&wait=`: API-key auth,
/// the long-poll returns as soon as a revocation happens, `until` is
/// revoked_at + access-token TTL + 60 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_feed_long_poll() {
    let srv = TestServer::start(Opts::default()).await;
    let r = srv.send(srv.http.get(srv.url("/v1/revocations"))).await;
    r.assert_problem(401, "unauthorized");
    let r = srv.get("/v1/revocations").await;
    r.assert_status(200).assert_no_store();
    let v = r.json();
    assert_eq!(v["revocations"], json!([]), "{v}");
    let next = v["next"].as_str().expect("next is a string").to_owned();
    assert!(next.parse::<u64>().is_ok(), "next is a decimal id: {next}");
    for bad in ["after=abc", "wait=31", "wait=-1", "wait=x"] {
        let r = srv.get(&format!("/v1/revocations?{bad}")).await;
        r.assert_problem(400, "validation_failed");
    }

    let l = login(&srv, "feed", json!({})).await;
    let _other = login(&srv, "feed", json!({})).await;
    let poll = {
        let path = format!("/v1/revocations?after={next}&wait=10");
        let srv = &srv;
        async move {
            let t0 = Instant::now();
            let r = srv.get(&path).await;
            (r, t0.elapsed())
        }
    };
    let revoke_later = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let t = Instant::now();
        srv.delete(&format!("/v1/sessions/{}", l.created.handle))
            .await
            .assert_status(204);
        t
    };
    let ((r, took), _) = futures::join!(poll, revoke_later);
    r.assert_status(200);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "the long-poll returns as soon as the revocation happens: {took:?}"
    );
    let v = r.json();
    let items = v["revocations"].as_array().expect("revocations").clone();
    assert_eq!(items.len(), 1, "{v}");
    assert_eq!(items[0]["sid"], l.created.handle.as_str());
    let gap = secs_between(
        items[0]["revoked_at"].as_str().unwrap(),
        items[0]["until"].as_str().unwrap(),
    );
    assert!((gap - 360.0).abs() <= 1.0, "until = revoked_at + 300 + 60: {gap}");
    parse_time(items[0]["revoked_at"].as_str().unwrap());
    let next2 = v["next"].as_str().unwrap().to_owned();
    assert_ne!(next2, next);
    // Nothing new: wait=1 returns empty after about a second, cursor kept.
    let t0 = Instant::now();
    let v = srv
        .get(&format!("/v1/revocations?after={next2}&wait=1"))
        .await
        .json();
    assert_eq!(v["revocations"], json!([]));
    assert_eq!(v["next"], next2.as_str());
    assert!(t0.elapsed() >= Duration::from_millis(800), "wait=1 waits");
    // Without `after`: every revocation still relevant.
    let v = srv.get("/v1/revocations").await.json();
    let sids: Vec<_> = v["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sid"].clone())
        .collect();
    assert_eq!(sids, vec![json!(l.created.handle)], "{v}");
    srv.finish().await;
}

// ------------------------------------------------------------------------ MD

async fn metadata(srv: &TestServer, path: &str) -> Value {
    let r = srv.send(srv.http.get(srv.url(path))).await;
    r.assert_status(200);
    assert_json_ct(&r);
    r.json()
}

/// MD-01..04: RFC 8414 metadata, issuer byte-identical to the tokens' `iss`.
#[tokio::test]
async fn md_01_04_metadata() {
    let issuer = "https://auth.example.test";
    let (plain, custom) = futures::join!(
        TestServer::start(Opts::default()),
        TestServer::start(Opts::default().env("TESSERA_OAUTH_ISSUER", issuer)),
    );
    for (srv, iss) in [(&plain, plain.base.clone()), (&custom, issuer.to_owned())] {
        let m = metadata(srv, "/.well-known/oauth-authorization-server").await;
        assert_eq!(m["issuer"], iss.as_str(), "MD-02: {m}");
        let l = login(srv, "md", json!({})).await;
        assert_eq!(
            jwt_parts(&l.access).1["iss"],
            iss.as_str(),
            "MD-02: AT iss == issuer"
        );
        for (k, path) in [
            ("token_endpoint", "/oauth2/token"),
            ("jwks_uri", "/.well-known/jwks.json"),
            ("revocation_endpoint", "/oauth2/revoke"),
            ("introspection_endpoint", "/oauth2/introspect"),
        ] {
            assert_eq!(m[k], format!("{iss}{path}").as_str(), "MD-03 {k}: {m}");
        }
        for k in [
            "grant_types_supported",
            "token_endpoint_auth_methods_supported",
            "revocation_endpoint_auth_methods_supported",
            "introspection_endpoint_auth_methods_supported",
        ] {
            assert!(m[k].as_array().is_some_and(|a| !a.is_empty()), "MD-03 {k}: {m}");
        }
        let grants = &m["grant_types_supported"];
        assert!(
            grants.as_array().unwrap().contains(&json!("refresh_token")),
            "{m}"
        );
        for g in ["password", "implicit"] {
            assert!(!grants.as_array().unwrap().contains(&json!(g)), "MD-07: {g}: {m}");
        }
        if let Some(c) = m.get("code_challenge_methods_supported") {
            assert!(!c.as_array().unwrap().contains(&json!("plain")), "MD-03: {m}");
        }
        // MD-04. A `*_auth_signing_alg_values_supported` list goes with a
        // JWT client-authentication method: for each auth-method list the
        // metadata has, the alg list is present exactly when such a method
        // is offered, then non-empty and without `none`.
        let no_none = |k: &str, v: &Value| {
            let algs = v
                .as_array()
                .unwrap_or_else(|| panic!("MD-04: {k} is not a list: {m}"));
            assert!(!algs.is_empty(), "MD-04: {k} is empty: {m}");
            for a in algs {
                let a = a
                    .as_str()
                    .unwrap_or_else(|| panic!("MD-04: {k} holds a non-string: {m}"));
                assert!(!a.eq_ignore_ascii_case("none"), "MD-04: {k} lists none: {m}");
            }
        };
        let mut methods_checked = 0;
        for (k, v) in m.as_object().unwrap() {
            let Some(endpoint) = k.strip_suffix("_auth_methods_supported") else {
                continue;
            };
            methods_checked += 1;
            let jwt_auth = v
                .as_array()
                .unwrap()
                .iter()
                .any(|x| matches!(x.as_str(), Some("private_key_jwt" | "client_secret_jwt")));
            let algs_key = format!("{endpoint}_auth_signing_alg_values_supported");
            match m.get(&algs_key) {
                Some(algs) => {
                    assert!(
                        jwt_auth,
                        "MD-04: {algs_key} without a JWT auth method in {k}: {m}"
                    );
                    no_none(&algs_key, algs);
                }
                None => assert!(
                    !jwt_auth,
                    "MD-04: {k} offers JWT client auth without {algs_key}: {m}"
                ),
            }
        }
        assert_eq!(methods_checked, 3, "MD-04: the auth-method lists: {m}");
        // Any other alg list (e.g. `dpop_signing_alg_values_supported`,
        // once offered) never lists none either.
        for (k, v) in m.as_object().unwrap() {
            if k.ends_with("_alg_values_supported") {
                no_none(k, v);
            }
        }
        // What the issuer signs with: every key at `jwks_uri` names an
        // asymmetric alg (never none), and the access token uses one of them.
        let jwks_path = m["jwks_uri"]
            .as_str()
            .unwrap()
            .strip_prefix(iss.as_str())
            .unwrap()
            .to_owned();
        let jwks = metadata(srv, &jwks_path).await;
        let published: Vec<&str> = jwks["keys"]
            .as_array()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| panic!("MD-04: no keys at jwks_uri: {jwks}"))
            .iter()
            .map(|k| {
                k["alg"]
                    .as_str()
                    .unwrap_or_else(|| panic!("MD-04: a key without alg: {jwks}"))
            })
            .collect();
        for a in &published {
            assert!(
                ["EdDSA", "ES256", "RS256"].contains(a),
                "MD-04: key alg {a:?}: {jwks}"
            );
        }
        let at_alg = jwt_parts(&l.access).0["alg"].clone();
        assert!(
            published.iter().any(|a| at_alg == *a),
            "MD-04: the access token's alg {at_alg} is not published: {jwks}"
        );
        assert!(m.get("authorization_endpoint").is_none() || m.get("response_types_supported").is_some());
    }
    // The advertised endpoints work (default issuer = where it listens).
    let m = metadata(&plain, "/.well-known/oauth-authorization-server").await;
    let r = plain.send(plain.http.get(m["jwks_uri"].as_str().unwrap())).await;
    r.assert_status(200);
    futures::join!(plain.finish(), custom.finish());
}

/// MD-01: for an issuer with a path, the metadata lives at
/// `/.well-known/oauth-authorization-server/<path>` (RFC 8414 §3.1).
#[tokio::test]
async fn md_01_issuer_with_path() {
    let issuer = "https://auth.example.test/t1";
    let srv = TestServer::start(Opts::default().env("TESSERA_OAUTH_ISSUER", issuer)).await;
    let m = metadata(&srv, "/.well-known/oauth-authorization-server/t1").await;
    assert_eq!(m["issuer"], issuer);
    let l = login(&srv, "mdp", json!({})).await;
    assert_eq!(jwt_parts(&l.access).1["iss"], issuer);
    srv.finish().await;
}

/// MD-07: the password grant (and other unsupported grants) →
/// 400 unsupported_grant_type.
#[tokio::test]
async fn md_07_password_grant_unsupported() {
    let srv = TestServer::start(Opts::default()).await;
    for g in [
        "password",
        "implicit",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "x",
    ] {
        let r = post_form(
            &srv,
            "/oauth2/token",
            &[
                ("grant_type", g),
                ("client_id", "default"),
                ("username", "alice"),
                ("password", "hunter2"),
            ],
            Auth::None,
        )
        .await;
        assert_oauth_error(&r, 400, "unsupported_grant_type");
    }
    srv.finish().await;
}

/// MD-08: every token-endpoint error path answers an RFC 6749 §5.2 error;
/// `invalid_client` with HTTP auth is 401 with `WWW-Authenticate`.
#[tokio::test]
async fn md_08_token_endpoint_errors() {
    let srv = TestServer::start(Opts::default().config(CLIENTS_TOML)).await;
    let l = login(&srv, "md08", json!({"scope": "read"})).await;
    let rt = l.refresh.clone().unwrap();
    let tok = |pairs: Vec<(&'static str, String)>, auth: Auth<'static>| {
        let srv = &srv;
        async move {
            let p: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_form(srv, "/oauth2/token", &p, auth).await
        }
    };
    let s = |x: &str| x.to_owned();
    // invalid_request: no grant_type; no refresh_token; a repeated parameter.
    let r = tok(vec![("client_id", s("default"))], Auth::None).await;
    assert_oauth_error(&r, 400, "invalid_request");
    let r = tok(
        vec![("grant_type", s("refresh_token")), ("client_id", s("default"))],
        Auth::None,
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_request");
    let r = tok(
        vec![
            ("grant_type", s("refresh_token")),
            ("client_id", s("default")),
            ("refresh_token", rt.clone()),
            ("refresh_token", rt.clone()),
        ],
        Auth::None,
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_request");
    // invalid_client: unknown client; confidential without or with a wrong secret.
    let r = tok(
        vec![
            ("grant_type", s("refresh_token")),
            ("client_id", s("nobody")),
            ("refresh_token", rt.clone()),
        ],
        Auth::None,
    )
    .await;
    assert_oauth_error(&r, 401, "invalid_client");
    let r = tok(
        vec![
            ("grant_type", s("refresh_token")),
            ("client_id", s(RS_CLIENT)),
            ("refresh_token", rt.clone()),
        ],
        Auth::None,
    )
    .await;
    assert_oauth_error(&r, 401, "invalid_client");
    let r = tok(
        vec![("grant_type", s("refresh_token")), ("refresh_token", rt.clone())],
        Auth::Basic(RS_CLIENT, "wrong-secret"),
    )
    .await;
    assert_oauth_error(&r, 401, "invalid_client");
    let www = r.header("www-authenticate").unwrap_or_default();
    assert!(
        www.starts_with("Basic"),
        "MD-08: WWW-Authenticate: Basic, got {www:?}"
    );
    // invalid_grant: unknown, malformed.
    let r = tok(
        vec![
            ("grant_type", s("refresh_token")),
            ("client_id", s("default")),
            ("refresh_token", crate::harness::forged_token("tsr_", 5)),
        ],
        Auth::None,
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_grant");
    let r = tok(
        vec![
            ("grant_type", s("refresh_token")),
            ("client_id", s("default")),
            ("refresh_token", s("tsr_short")),
        ],
        Auth::None,
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_grant");
    // RT-06: a token of another client, with that client's valid credentials.
    let r = tok(
        vec![("grant_type", s("refresh_token")), ("refresh_token", rt.clone())],
        Auth::Basic(RS_CLIENT, RS_SECRET),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        e == "invalid_grant" || e == "unauthorized_client",
        "RT-06: {}",
        r.text()
    );
    // unauthorized_client: a client without refresh tokens.
    let r = tok(
        vec![
            ("grant_type", s("refresh_token")),
            ("client_id", s("spa-no-rt")),
            ("refresh_token", rt.clone()),
        ],
        Auth::None,
    )
    .await;
    assert_eq!(r.status, 400);
    // unsupported_grant_type.
    let r = tok(
        vec![("grant_type", s("password")), ("client_id", s("default"))],
        Auth::None,
    )
    .await;
    assert_oauth_error(&r, 400, "unsupported_grant_type");
    // invalid_scope.
    let r = tok(
        vec![
            ("grant_type", s("refresh_token")),
            ("client_id", s("default")),
            ("refresh_token", rt.clone()),
            ("scope", s("read write")),
        ],
        Auth::None,
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_scope");
    // A JSON body is not the form the endpoint takes.
    let r = srv
        .send(srv.http.post(srv.url("/oauth2/token")).json(&json!({
            "grant_type": "refresh_token", "client_id": "default", "refresh_token": rt,
        })))
        .await;
    assert_oauth_error(&r, 400, "invalid_request");
    // After all that, the token still works: the success path's headers.
    let t = assert_token_response(&refresh(&srv, &rt, None).await);
    assert_eq!(t["scope"], "read");
    assert!(is_secret("tsr_", t["refresh_token"].as_str().unwrap()));
    srv.finish().await;
}

// ---------------------------------------------------------------- interop

/// PyJWT (an independent JOSE implementation) verifies our access tokens
/// for every signing algorithm, with the algorithm taken from the JWKS key,
/// and rejects a tampered one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_pyjwt_verifies_every_alg() {
    let probe = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "python3 cannot import PyJWT and cryptography ({}); run ./scripts/test, which installs them \
             (python3 -m pip install 'PyJWT[crypto]>=2.8')",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("python3 is not available ({e}); run ./scripts/test"),
    }
    let servers = join_all(["EdDSA", "ES256", "RS256"].map(|alg| async move {
        (
            alg,
            TestServer::start(Opts::default().env("TESSERA_KEYS_ALG", alg)).await,
        )
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    for (alg, srv) in &servers {
        let l = login(srv, "interop", json!({"scope": "read", "audience": "api-rs"})).await;
        let (h, _) = jwt_parts(&l.access);
        assert_eq!(h["alg"], *alg, "TESSERA_KEYS_ALG={alg}: {h}");
        let set = jwks(srv).await;
        let jwks_path = dir.path().join(format!("jwks-{alg}.json"));
        std::fs::write(&jwks_path, set.to_string()).unwrap();
        let run = |token: &str, aud: &str| {
            let p = dir.path().join(format!("token-{alg}"));
            std::fs::write(&p, token).unwrap();
            let out = Command::new("python3")
                .arg(PYJWT_SCRIPT)
                .arg(&jwks_path)
                .arg(&p)
                .arg(&srv.base)
                .arg(aud)
                .stdin(Stdio::null())
                .output()
                .expect("run python3");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (ok, out, err) = run(&l.access, "api-rs");
        assert!(ok, "{alg}: PyJWT rejected our token: {err}{out}");
        let v: Value = serde_json::from_str(out.trim()).expect("script prints JSON");
        assert_eq!(v["alg"], *alg);
        assert_eq!(v["claims"]["sub"], "interop");
        assert_eq!(v["claims"]["sid"], l.created.handle.as_str());
        eprintln!("{alg}: PyJWT verified kid {} ok", v["kid"]);

        // Tampered payload (scope widened), same signature.
        let parts: Vec<&str> = l.access.split('.').collect();
        let mut c = jwt_parts(&l.access).1;
        c["scope"] = json!("read admin");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(c.to_string()),
            parts[2]
        );
        let (ok, _, err) = run(&forged, "api-rs");
        assert!(!ok, "{alg}: PyJWT accepted a tampered token");
        assert!(err.contains("REJECTED"), "{alg}: {err}");
        // One flipped signature bit.
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[5] ^= 0x01;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert!(!run(&flipped, "api-rs").0, "{alg}: accepted a flipped signature");
        // Another audience.
        assert!(!run(&l.access, "api-other").0, "{alg}: accepted a wrong audience");
    }
    for (_, srv) in servers {
        srv.finish().await;
    }
}

// ------------------------------------------------------------ misc issuance

/// Tokens on `POST /v1/sessions`: the response shape, and a bad `tokens`
/// request leaves no session behind (no partial write).
#[tokio::test]
async fn issuance_shape_and_no_partial_write() {
    let srv = TestServer::start(Opts::default()).await;
    let l = login(&srv, "iss", json!({"scope": "read"})).await;
    for k in [
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "scope",
    ] {
        assert!(l.body.get(k).is_some(), "{k} in {}", l.body);
    }
    // Without `tokens`, none.
    let c = srv.create(json!({"subject": "iss"})).await;
    let b = c.resp.json();
    assert!(b.get("access_token").is_none_or(Value::is_null), "{b}");
    assert!(b.get("refresh_token").is_none_or(Value::is_null), "{b}");
    // Unknown members of `tokens` and a bad scope are 400, and create nothing.
    for tokens in [
        json!({"nope": 1}),
        json!({"scope": "a\"b"}),
        json!({"audience": []}),
        json!({"client_id": "nobody"}),
    ] {
        let r = srv
            .post("/v1/sessions", &json!({"subject": "nopartial", "tokens": tokens}))
            .await;
        assert_eq!(r.status, 400, "tokens {tokens}: {}", r.text());
    }
    let list = srv.get("/v1/subjects/nopartial/sessions").await.json();
    assert_eq!(
        list["sessions"],
        json!([]),
        "no session from a refused request: {list}"
    );
    srv.finish().await;
}
