//! The backend API (SPEC §4.1) end to end, named after the checklist IDs.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Created, Opts, TestServer, forged_token, parse_set_cookie, secs_between};

/// Asserts the SPEC §4.2 cookie defaults for a session cookie carrying
/// `token`, with `Max-Age` no later than the absolute expiry.
#[track_caller]
fn assert_session_cookie(cookie: &str, token: &str, session: &Value) {
    let (name, value, attrs) = parse_set_cookie(cookie);
    assert_eq!(name, "__Host-tessera", "SC-06/SC-11 cookie name: {cookie}");
    assert_eq!(value, token, "the cookie carries the session token: {cookie}");
    let has = |a: &str| attrs.iter().any(|(k, _)| k == a);
    let val = |a: &str| attrs.iter().find(|(k, _)| k == a).map(|(_, v)| v.clone());
    assert_eq!(val("path").as_deref(), Some("/"), "SC-06 Path=/: {cookie}");
    assert!(has("secure"), "SC-05 Secure: {cookie}");
    assert!(has("httponly"), "SC-07 HttpOnly: {cookie}");
    assert_eq!(
        val("samesite").map(|s| s.to_ascii_lowercase()).as_deref(),
        Some("lax"),
        "SC-08 SameSite=Lax: {cookie}"
    );
    assert!(!has("domain"), "SC-06 no Domain: {cookie}");
    assert!(name.len() + value.len() <= 4096, "SC-09");
    // SC-10: Max-Age (persistent is the default) never beyond the absolute expiry.
    let left = secs_between(
        session["created_at"].as_str().unwrap(),
        session["absolute_expires_at"].as_str().unwrap(),
    );
    let max_age: f64 = val("max-age")
        .unwrap_or_else(|| panic!("persistent cookie (default) has Max-Age: {cookie}"))
        .parse()
        .expect("Max-Age is an integer");
    assert!(max_age > 0.0, "Max-Age > 0: {cookie}");
    assert!(
        max_age <= left + 1.0,
        "SC-10 Max-Age {max_age} beyond absolute expiry ({left} s): {cookie}"
    );
    if let Some(exp) = val("expires") {
        assert!(!exp.is_empty(), "Expires has a value");
    }
}

/// The public view of SPEC §4.1, never the token.
#[track_caller]
fn assert_session_view(s: &Value, token: &str) {
    for k in [
        "handle",
        "subject",
        "created_at",
        "last_seen_at",
        "idle_expires_at",
        "absolute_expires_at",
        "auth",
        "device",
        "binding",
        "data",
    ] {
        assert!(s.get(k).is_some(), "session view lacks {k:?}: {s}");
    }
    for k in ["level", "methods", "time"] {
        assert!(s["auth"].get(k).is_some(), "session.auth lacks {k:?}: {s}");
    }
    for k in ["user_agent", "ip", "label"] {
        assert!(s["device"].get(k).is_some(), "session.device lacks {k:?}: {s}");
    }
    for k in [
        "created_at",
        "last_seen_at",
        "idle_expires_at",
        "absolute_expires_at",
    ] {
        crate::harness::parse_time(s[k].as_str().expect("timestamp string"));
    }
    let text = s.to_string();
    assert!(!text.contains(&token[4..]), "session view contains the token");
    assert!(
        !text.contains("token"),
        "session view names a token field: {text}"
    );
}

/// A full life cycle: create → verify → elevate → revoke → list, with the
/// shapes and headers checked at every step (SC-05..12, EX-04, EX-13,
/// FX-02, FX-03), and SC-15 at debug level.
#[tokio::test]
async fn full_flow_create_verify_elevate_revoke_list() {
    let srv = TestServer::start(Opts::default().rust_log("debug")).await;
    let ua =
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
    let c = srv
        .create(json!({
            "subject": "alice",
            "auth": {"level": 1, "methods": ["pwd"]},
            "device": {"user_agent": ua, "ip": "203.0.113.7"},
            "data": {"theme": "dark"},
        }))
        .await;
    c.resp.assert_no_store();
    assert!(
        c.resp
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "JSON content type"
    );
    let s = &c.session;
    assert_session_view(s, &c.token);
    assert_session_cookie(&c.cookie, &c.token, s);
    assert_eq!(s["subject"], "alice");
    assert_eq!(s["auth"]["level"], 1);
    assert_eq!(s["auth"]["methods"], json!(["pwd"]));
    assert_eq!(s["device"]["ip"], "203.0.113.7");
    assert_eq!(s["device"]["user_agent"], ua);
    assert_eq!(s["device"]["label"], "Chrome on Linux");
    assert_eq!(s["data"], json!({"theme": "dark"}));
    assert_eq!(s["binding"], Value::Null);
    // Defaults: 30 min idle, 8 h absolute.
    let idle = secs_between(
        s["created_at"].as_str().unwrap(),
        s["idle_expires_at"].as_str().unwrap(),
    );
    let abs = secs_between(
        s["created_at"].as_str().unwrap(),
        s["absolute_expires_at"].as_str().unwrap(),
    );
    assert!((idle - 1800.0).abs() < 2.0, "default idle 1800 s, got {idle}");
    assert!((abs - 28800.0).abs() < 2.0, "default absolute 28800 s, got {abs}");

    // Verify.
    let r = srv.verify(&c.token).await;
    r.assert_status(200).assert_no_store();
    let v = r.json();
    assert_session_view(&v["session"], &c.token);
    assert_eq!(v["session"]["handle"], c.handle);
    assert!(v.get("session_token").is_none(), "verify does not echo the token");

    // Elevate (FX-02/FX-03): new token, same handle, old token dead at once.
    let r = srv
        .post(
            "/v1/sessions/elevate",
            &json!({"session_token": c.token, "auth": {"level": 2, "methods": ["otp"]}}),
        )
        .await;
    r.assert_status(200).assert_no_store();
    let e = r.json();
    let t2 = e["session_token"]
        .as_str()
        .expect("elevate session_token")
        .to_owned();
    assert!(t2.starts_with("tss_") && t2 != c.token, "FX-02: new token");
    assert_eq!(e["session"]["handle"], c.handle, "handle stays");
    assert_eq!(e["session"]["auth"]["level"], 2);
    assert_eq!(e["session"]["auth"]["methods"], json!(["pwd", "otp"]));
    assert_session_view(&e["session"], &t2);
    assert_session_cookie(e["cookie"].as_str().expect("elevate cookie"), &t2, &e["session"]);
    srv.verify(&c.token).await.assert_problem(401, "session_invalid");
    let v2 = srv.assert_verifies(&t2).await;
    assert_eq!(v2["auth"]["level"], 2);

    // A second session to see it in the list.
    let c2 = srv.create(json!({"subject": "alice"})).await;
    let r = srv.get("/v1/subjects/alice/sessions").await;
    r.assert_status(200).assert_no_store();
    let list = r.json();
    let handles: Vec<&str> = list["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["handle"].as_str().unwrap())
        .collect();
    assert_eq!(
        handles,
        vec![c2.handle.as_str(), c.handle.as_str()],
        "newest first"
    );
    for s in list["sessions"].as_array().unwrap() {
        assert_session_view(s, &t2);
        assert_session_view(s, &c2.token);
    }

    // Logout (EX-04): 204, replay → 401 session_revoked; idempotent.
    let r = srv
        .post("/v1/sessions/revoke", &json!({"session_token": t2}))
        .await;
    r.assert_status(204);
    assert!(r.body.is_empty(), "204 has no body");
    srv.verify(&t2).await.assert_problem(401, "session_revoked");
    srv.post("/v1/sessions/revoke", &json!({"session_token": t2}))
        .await
        .assert_status(204);
    srv.post(
        "/v1/sessions/revoke",
        &json!({"session_token": forged_token("tss_", 99)}),
    )
    .await
    .assert_problem(401, "session_invalid");
    // Elevating a revoked session is refused too.
    srv.post(
        "/v1/sessions/elevate",
        &json!({"session_token": t2, "auth": {"level": 3}}),
    )
    .await
    .assert_problem(401, "session_revoked");

    let list = srv.get("/v1/subjects/alice/sessions").await.json();
    let handles: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["handle"].as_str().unwrap())
        .collect();
    assert_eq!(
        handles,
        vec![c2.handle.as_str()],
        "revoked sessions leave the list"
    );
    // Error responses on /v1 are no-store too.
    srv.verify(&forged_token("tss_", 5)).await.assert_no_store();
    srv.finish().await;
}

/// SC-12: two logins of one subject give two different tokens and handles.
#[tokio::test]
async fn sc_12_two_logins_two_tokens() {
    let srv = TestServer::start(Opts::default()).await;
    let a = srv.create(json!({"subject": "bob"})).await;
    let b = srv.create(json!({"subject": "bob"})).await;
    assert_ne!(a.token, b.token);
    assert_ne!(a.handle, b.handle);
    assert_ne!(
        a.token[4..],
        a.handle[4..],
        "handle is not derived from the token"
    );
    srv.assert_verifies(&a.token).await;
    srv.assert_verifies(&b.token).await;
    // The API key is no session token (SC-12: static secrets grant no session).
    srv.verify(&srv.api_key.clone())
        .await
        .assert_problem(401, "session_invalid");
    srv.finish().await;
}

/// SC-03: a well-formed token the server never issued is refused.
#[tokio::test]
async fn sc_03_unknown_token_is_invalid() {
    let srv = TestServer::start(Opts::default()).await;
    srv.create(json!({"subject": "carol"})).await;
    for seed in 1..4 {
        let r = srv.verify(&forged_token("tss_", seed)).await;
        let p = r.assert_problem(401, "session_invalid");
        assert!(
            !p.to_string().contains(&forged_token("tss_", seed)[4..]),
            "no token echo in errors"
        );
    }
    srv.finish().await;
}

/// FX-01/FX-04: login with the pre-login token revokes it, carries its data
/// over when it is the same subject's (request data wins) and always issues
/// a new token; a planted token is never promoted.
#[tokio::test]
async fn fx_01_fx_04_login_replaces_previous_session() {
    let srv = TestServer::start(Opts::default()).await;
    let pre = srv
        .create(json!({"subject": "dave", "data": {"cart": [1, 2], "lang": "de"}}))
        .await;
    let post = srv
        .create(json!({
            "subject": "dave",
            "previous_session_token": pre.token,
            "data": {"lang": "fr", "x": 1},
        }))
        .await;
    assert_ne!(post.token, pre.token, "FX-01: new token");
    assert_ne!(post.handle, pre.handle);
    assert_eq!(
        post.session["data"],
        json!({"cart": [1, 2], "lang": "fr", "x": 1})
    );
    srv.verify(&pre.token)
        .await
        .assert_problem(401, "session_revoked");
    srv.assert_verifies(&post.token).await;
    let ev = srv.all_events(&format!("&subject={}", "dave")).await;
    assert!(
        ev.iter().any(|e| e["kind"] == "revoked"
            && e["handle"] == pre.handle.as_str()
            && e["reason"] == "replaced"),
        "revoked/replaced event: {ev:?}"
    );

    // FX-04: a planted (well-formed, never issued) or garbage token.
    for planted in [forged_token("tss_", 7), "fixed123".to_owned()] {
        let c = srv
            .create(json!({"subject": "dave", "previous_session_token": planted}))
            .await;
        assert_ne!(c.token, planted);
        assert_eq!(c.session["data"], json!({}));
        srv.verify(&planted).await.assert_problem(401, "session_invalid");
    }
    // A revoked previous session carries nothing over.
    let c = srv
        .create(json!({"subject": "dave", "previous_session_token": pre.token}))
        .await;
    assert_eq!(
        c.session["data"],
        json!({}),
        "revoked session's data is not carried over"
    );
    srv.finish().await;
}

/// FX-01 on a shared browser: bob logs in over alice's session. Alice's
/// session ends (replaced), but bob's session holds none of her data, in the
/// answer, in the store, or through `GET /v1/sessions/{handle}`.
#[tokio::test]
async fn fx_01_login_of_another_subject_drops_previous_data() {
    let srv = TestServer::start(Opts::default()).await;
    let alice = srv
        .create(json!({"subject": "alice", "data": {"role": "admin"}}))
        .await;
    let bob = srv
        .create(json!({
            "subject": "bob",
            "previous_session_token": alice.token,
            "data": {"lang": "de"},
        }))
        .await;
    assert_eq!(bob.session["subject"], "bob");
    assert_eq!(bob.session["data"], json!({"lang": "de"}));
    let stored = srv.get(&format!("/v1/sessions/{}", bob.handle)).await;
    stored.assert_status(200);
    assert_eq!(stored.json()["session"]["data"], json!({"lang": "de"}));
    assert_eq!(
        srv.assert_verifies(&bob.token).await["data"],
        json!({"lang": "de"})
    );
    srv.verify(&alice.token)
        .await
        .assert_problem(401, "session_revoked");
    let ev = srv.all_events("&subject=alice").await;
    assert!(
        ev.iter().any(|e| e["kind"] == "revoked"
            && e["handle"] == alice.handle.as_str()
            && e["reason"] == "replaced"),
        "alice's session is replaced: {ev:?}"
    );
    srv.finish().await;
}

/// EX-01: idle expiry is enforced server-side, and use slides it.
#[tokio::test]
async fn ex_01_idle_timeout_and_slide() {
    let srv = TestServer::start(Opts::default()).await;
    let idle = srv
        .create(json!({"subject": "erin", "ttl": {"idle_secs": 1}}))
        .await;
    let slide = srv
        .create(json!({"subject": "erin", "ttl": {"idle_secs": 2}}))
        .await;
    let created_idle_exp = slide.session["idle_expires_at"].as_str().unwrap().to_owned();
    let d = secs_between(slide.session["created_at"].as_str().unwrap(), &created_idle_exp);
    assert!(
        (d - 2.0).abs() < 0.01,
        "idle_expires_at = created_at + 2 s, got {d}"
    );
    srv.assert_verifies(&idle.token).await;

    let mut last_exp = created_idle_exp.clone();
    for step in 0..3 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let s = srv.assert_verifies(&slide.token).await;
        let exp = s["idle_expires_at"].as_str().unwrap().to_owned();
        assert!(
            secs_between(&last_exp, &exp) > 0.5,
            "step {step}: idle expiry slides ({last_exp} → {exp})"
        );
        last_exp = exp;
        if step == 0 {
            // 1.4 s after its last use (t≈0): the 1 s session is gone.
            tokio::time::sleep(Duration::from_millis(600)).await;
            srv.verify(&idle.token)
                .await
                .assert_problem(401, "session_expired");
            // EX-03: still refused however it is presented later.
            srv.post(
                "/v1/sessions/elevate",
                &json!({"session_token": idle.token, "auth": {"level": 2}}),
            )
            .await
            .assert_problem(401, "session_expired");
            srv.get(&format!("/v1/sessions/{}", idle.handle))
                .await
                .assert_problem(404, "not_found");
        }
    }
    // Logout of an expired session is still 204 (CONTRACTS).
    srv.post("/v1/sessions/revoke", &json!({"session_token": idle.token}))
        .await
        .assert_status(204);
    // t ≈ 3 s > the first idle expiry (2 s): alive thanks to the slide.
    assert!(secs_between(&created_idle_exp, &last_exp) > 0.9);
    let list = srv.get("/v1/subjects/erin/sessions").await.json();
    assert_eq!(
        list["sessions"].as_array().unwrap().len(),
        1,
        "expired sessions are not listed"
    );
    let ev = srv.all_events("&subject=erin").await;
    assert_eq!(ev.iter().filter(|e| e["kind"] == "created").count(), 2);
    // "Sign out everywhere" counts the active session only, not the expired one.
    let r = srv.delete("/v1/subjects/erin/sessions").await;
    assert_eq!(
        r.json(),
        json!({"revoked": 1}),
        "expired sessions are not revoked again"
    );
    srv.verify(&slide.token)
        .await
        .assert_problem(401, "session_revoked");
    srv.finish().await;
}

/// EX-02: the absolute lifetime ends the session however busy it is.
#[tokio::test]
async fn ex_02_absolute_timeout() {
    let srv = TestServer::start(Opts::default()).await;
    let c = srv
        .create(json!({"subject": "frank", "ttl": {"idle_secs": 600, "absolute_secs": 2}}))
        .await;
    let s = &c.session;
    let abs = secs_between(
        s["created_at"].as_str().unwrap(),
        s["absolute_expires_at"].as_str().unwrap(),
    );
    assert!((abs - 2.0).abs() < 0.01, "absolute = 2 s, got {abs}");
    assert!(
        secs_between(
            s["idle_expires_at"].as_str().unwrap(),
            s["absolute_expires_at"].as_str().unwrap()
        ) >= 0.0,
        "idle expiry never beyond the absolute expiry"
    );
    let (_, _, attrs) = parse_set_cookie(&c.cookie);
    let max_age: i64 = attrs
        .iter()
        .find(|(k, _)| k == "max-age")
        .map(|(_, v)| v.parse().unwrap())
        .expect("Max-Age");
    assert!(max_age <= 2, "SC-10: Max-Age {max_age} ≤ absolute 2 s");
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let v = srv.assert_verifies(&c.token).await;
        assert_eq!(
            v["absolute_expires_at"], s["absolute_expires_at"],
            "absolute expiry never moves"
        );
    }
    tokio::time::sleep(Duration::from_millis(750)).await;
    srv.verify(&c.token).await.assert_problem(401, "session_expired");
    srv.finish().await;
}

async fn handles_of(srv: &TestServer, subject: &str) -> Vec<String> {
    let r = srv.get(&format!("/v1/subjects/{subject}/sessions")).await;
    r.assert_status(200);
    r.json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["handle"].as_str().unwrap().to_owned())
        .collect()
}

/// EX-07/EX-08/EX-09: end every session of a subject, optionally keeping one.
#[tokio::test]
async fn ex_07_08_09_revoke_all_of_subject() {
    let srv = TestServer::start(Opts::default()).await;
    let mut g = Vec::new();
    for _ in 0..3 {
        g.push(srv.create(json!({"subject": "grace"})).await);
    }
    let other = srv.create(json!({"subject": "heidi"})).await;

    // EX-08: keep the current one.
    let r = srv
        .delete(&format!("/v1/subjects/grace/sessions?except={}", g[2].handle))
        .await;
    r.assert_status(200).assert_no_store();
    assert_eq!(r.json(), json!({"revoked": 2}));
    for c in &g[..2] {
        srv.verify(&c.token).await.assert_problem(401, "session_revoked");
    }
    srv.assert_verifies(&g[2].token).await;
    assert_eq!(handles_of(&srv, "grace").await, vec![g[2].handle.clone()]);

    // EX-07/EX-09: all of them.
    let r = srv.delete("/v1/subjects/grace/sessions").await;
    r.assert_status(200);
    assert_eq!(r.json(), json!({"revoked": 1}));
    srv.verify(&g[2].token)
        .await
        .assert_problem(401, "session_revoked");
    assert!(handles_of(&srv, "grace").await.is_empty());
    // Nothing left: 0, and other subjects untouched.
    assert_eq!(
        srv.delete("/v1/subjects/grace/sessions").await.json(),
        json!({"revoked": 0})
    );
    assert_eq!(
        srv.delete("/v1/subjects/nobody-here/sessions").await.json(),
        json!({"revoked": 0})
    );
    srv.assert_verifies(&other.token).await;
    let ev = srv.all_events("&subject=grace").await;
    let revoke_all = ev
        .iter()
        .filter(|e| e["kind"] == "revoked" && e["reason"] == "revoke_all")
        .count();
    assert_eq!(revoke_all, 3, "one revoked/revoke_all event per session: {ev:?}");
    srv.finish().await;
}

/// EX-11: over the per-subject limit the oldest session is revoked.
#[tokio::test]
async fn ex_11_session_limit_revokes_oldest() {
    let srv = TestServer::start(Opts::default().env("TESSERA_SESSION_MAX_SESSIONS_PER_SUBJECT", "3")).await;
    let mut cs: Vec<Created> = Vec::new();
    for _ in 0..3 {
        cs.push(srv.create(json!({"subject": "ivan"})).await);
    }
    cs.push(srv.create(json!({"subject": "ivan"})).await);
    srv.verify(&cs[0].token)
        .await
        .assert_problem(401, "session_revoked");
    for c in &cs[1..] {
        srv.assert_verifies(&c.token).await;
    }
    let hs = handles_of(&srv, "ivan").await;
    assert_eq!(hs.len(), 3);
    assert!(!hs.contains(&cs[0].handle));
    let ev = srv.all_events("&subject=ivan").await;
    assert!(
        ev.iter().any(|e| e["kind"] == "revoked"
            && e["handle"] == cs[0].handle.as_str()
            && e["reason"] == "session_limit"),
        "revoked/session_limit event: {ev:?}"
    );
    // The limit is per subject.
    srv.create(json!({"subject": "judy"})).await;
    assert_eq!(handles_of(&srv, "ivan").await.len(), 3);
    srv.finish().await;
}

/// GET / PATCH (RFC 7396) / DELETE by handle.
#[tokio::test]
async fn session_by_handle_get_patch_delete() {
    let srv = TestServer::start(Opts::default()).await;
    let c = srv
        .create(json!({"subject": "ken", "data": {"a": 1, "nested": {"x": 1, "y": 2}}}))
        .await;
    let path = format!("/v1/sessions/{}", c.handle);

    let r = srv.get(&path).await;
    r.assert_status(200).assert_no_store();
    let s = r.json()["session"].clone();
    assert_session_view(&s, &c.token);
    assert_eq!(s["handle"], c.handle);
    assert_eq!(s["data"], json!({"a": 1, "nested": {"x": 1, "y": 2}}));

    // Set, overwrite, nested merge, delete with null.
    let r = srv
        .patch(
            &path,
            &json!({"data": {"b": "new", "a": 2, "nested": {"y": null, "z": 3}}}),
        )
        .await;
    r.assert_status(200).assert_no_store();
    assert_eq!(
        r.json()["session"]["data"],
        json!({"a": 2, "b": "new", "nested": {"x": 1, "z": 3}})
    );
    // application/merge-patch+json is accepted too.
    let r = srv
        .send(
            srv.req(Method::PATCH, &path)
                .header("content-type", "application/merge-patch+json")
                .body(r#"{"data":{"a":null}}"#),
        )
        .await;
    r.assert_status(200);
    assert_eq!(
        r.json()["session"]["data"],
        json!({"b": "new", "nested": {"x": 1, "z": 3}})
    );
    // The change is stored: verify sees it.
    let v = srv.assert_verifies(&c.token).await;
    assert_eq!(v["data"], json!({"b": "new", "nested": {"x": 1, "z": 3}}));

    // DELETE → 204, then the handle is inactive (404) and the token revoked.
    let r = srv.delete(&path).await;
    r.assert_status(204);
    assert!(r.body.is_empty());
    srv.verify(&c.token).await.assert_problem(401, "session_revoked");
    srv.get(&path).await.assert_problem(404, "not_found");
    srv.patch(&path, &json!({"data": {"a": 1}}))
        .await
        .assert_problem(404, "not_found");
    let again = srv.delete(&path).await;
    // CONTRACTS: an inactive handle is not_found; 204 (idempotent) is tolerated.
    if again.status != 204 {
        again.assert_problem(404, "not_found");
    }
    // Unknown but well-shaped handle.
    srv.get("/v1/sessions/ses_AAAAAAAAAAAAAAAAAAAAAA")
        .await
        .assert_problem(404, "not_found");
    let ev = srv.all_events("&subject=ken").await;
    let revoked: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "revoked").collect();
    assert_eq!(revoked.len(), 1, "one revoked event: {ev:?}");
    assert_eq!(revoked[0]["reason"], "revoked");
    srv.finish().await;
}

/// GET /v1/events: kinds, reasons, paging via after/next, subject filter.
#[tokio::test]
async fn events_paging_and_filter() {
    let srv = TestServer::start(Opts::default()).await;
    let a = srv.create(json!({"subject": "leo"})).await;
    let r = srv
        .post(
            "/v1/sessions/elevate",
            &json!({"session_token": a.token, "auth": {"level": 2}}),
        )
        .await;
    r.assert_status(200);
    let t2 = r.json()["session_token"].as_str().unwrap().to_owned();
    srv.post("/v1/sessions/revoke", &json!({"session_token": t2}))
        .await
        .assert_status(204);
    let b = srv.create(json!({"subject": "mia"})).await;

    let all = srv.all_events("").await;
    let kinds: Vec<(&str, &str)> = all
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("created", "leo"),
            ("elevated", "leo"),
            ("revoked", "leo"),
            ("created", "mia")
        ]
    );
    for e in &all {
        for k in ["id", "at", "kind", "subject", "handle"] {
            assert!(e.get(k).is_some(), "event lacks {k}: {e}");
        }
        crate::harness::parse_time(e["at"].as_str().unwrap());
        assert!(!e.to_string().contains("tss_"), "no token in events: {e}");
    }
    assert_eq!(all[0]["handle"], a.handle.as_str());
    assert_eq!(all[1]["handle"], a.handle.as_str());
    assert_eq!(all[2]["reason"], "logout");
    assert!(
        all[0].get("reason").is_none_or(Value::is_null),
        "created has no reason"
    );
    assert_eq!(all[3]["handle"], b.handle.as_str());
    let ids: Vec<u64> = all.iter().map(event_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    // Page by 1 with after/next.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let path = match &after {
            Some(a) => format!("/v1/events?limit=1&after={a}"),
            None => "/v1/events?limit=1".to_owned(),
        };
        let r = srv.get(&path).await;
        r.assert_status(200).assert_no_store();
        let v = r.json();
        let page = v["events"].as_array().unwrap().clone();
        let next = v["next"].as_str().expect("next is a string").to_owned();
        next.parse::<u64>().expect("next is a decimal id");
        if page.is_empty() {
            assert_eq!(Some(&next), after.as_ref(), "empty page: next == after");
            break;
        }
        assert_eq!(page.len(), 1);
        assert_eq!(
            next,
            event_id(&page[0]).to_string(),
            "next is the last id of the page"
        );
        seen.push(page[0].clone());
        after = Some(next);
    }
    assert_eq!(seen, all, "paging yields every event once, in order");
    // after = the second event's id → the rest.
    let r = srv.get(&format!("/v1/events?after={}", ids[1])).await.json();
    assert_eq!(r["events"].as_array().unwrap().as_slice(), &all[2..]);

    // Subject filter.
    let mia = srv.all_events("&subject=mia").await;
    assert_eq!(mia, vec![all[3].clone()]);
    let none = srv.get("/v1/events?subject=nobody").await.json();
    assert_eq!(none["events"], json!([]));
    assert!(none["next"].is_string(), "next always present");
    srv.finish().await;
}

fn event_id(e: &Value) -> u64 {
    match &e["id"] {
        Value::Number(n) => n.as_u64().expect("id u64"),
        Value::String(s) => s.parse().expect("decimal id"),
        other => panic!("bad event id {other}"),
    }
}

/// Backend API authentication: missing, malformed, unknown and revoked keys
/// are 401 `unauthorized` with `WWW-Authenticate: Bearer`; a key made with
/// the CLI works.
#[tokio::test]
async fn api_key_auth_and_cli_keys() {
    let srv = TestServer::start(Opts::default().env("TESSERA_HTTP_API_KEY_CACHE_SECS", "0")).await;
    let body = json!({"subject": "nina"});
    let attempts: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("unknown key", Some(format!("Bearer {}", forged_token("tsk_", 3)))),
        (
            "session token as key",
            Some(format!("Bearer {}", forged_token("tss_", 3))),
        ),
        ("garbage", Some("Bearer not-a-key".to_owned())),
        ("basic scheme", Some(format!("Basic {}", "dXNlcjpwYXNz"))),
        ("empty bearer", Some("Bearer ".to_owned())),
        (
            "lowercase key in other scheme",
            Some(format!("Token {}", srv.api_key)),
        ),
    ];
    for (name, auth) in attempts {
        let mut rb = srv.http.post(srv.url("/v1/sessions")).json(&body);
        if let Some(a) = auth {
            rb = rb.header("authorization", a);
        }
        let r = srv.send(rb).await;
        let p = check_401(&r, name);
        assert!(!p.to_string().contains(&srv.api_key[4..]), "{name}: key echoed");
    }
    for path in [
        "/v1/sessions/ses_AAAAAAAAAAAAAAAAAAAAAA",
        "/v1/events",
        "/v1/subjects/x/sessions",
    ] {
        let r = srv.send(srv.http.get(srv.url(path))).await;
        check_401(&r, path);
    }
    // Nothing was created by the refused calls.
    assert!(srv.all_events("").await.is_empty());

    // A key created with the CLI against the same database works…
    let (st, out, err) = srv.cli(&["api-keys", "create", "--name", "it-test"]);
    assert!(st.success(), "api-keys create failed: {out}\n{err}");
    let keys = crate::harness::find_secrets(&out);
    assert_eq!(keys.len(), 1, "api-keys create prints the key once: {out}");
    let key = keys[0].clone();
    assert!(key.starts_with("tsk_"));
    assert!(!err.contains(&key[4..]), "key only on stdout");
    let r = srv
        .send(
            srv.http
                .post(srv.url("/v1/sessions"))
                .bearer_auth(&key)
                .json(&body),
        )
        .await;
    r.assert_status(201);

    // …is listed without its secret…
    let (st, list_out, err) = srv.cli(&["api-keys", "list"]);
    assert!(st.success(), "api-keys list failed: {list_out}\n{err}");
    assert!(!list_out.contains(&key[4..]), "list never shows a key");
    assert!(!list_out.contains(&srv.api_key[4..]), "list never shows a key");
    assert!(
        list_out.contains("it-test"),
        "list shows the key's name: {list_out}"
    );
    // …and once revoked stops working (cache disabled for this test).
    let id = list_out
        .lines()
        .find(|l| l.contains("it-test"))
        .and_then(|l| {
            l.split(|c: char| c.is_whitespace() || c == ',' || c == '"')
                .find(|w| w.starts_with("key_") || w.starts_with("ak_") || w.starts_with("tsk_id_"))
                .map(str::to_owned)
        })
        .or_else(|| {
            serde_json::from_str::<Value>(&list_out).ok().and_then(|v| {
                v.as_array()?
                    .iter()
                    .find(|k| k["name"] == "it-test")
                    .and_then(|k| k["id"].as_str().map(str::to_owned))
            })
        })
        .unwrap_or_else(|| panic!("cannot find the key id in `api-keys list` output:\n{list_out}"));
    let (st, out, err) = srv.cli(&["api-keys", "revoke", &id]);
    assert!(st.success(), "api-keys revoke failed: {out}\n{err}");
    let r = srv
        .send(
            srv.http
                .post(srv.url("/v1/sessions"))
                .bearer_auth(&key)
                .json(&body),
        )
        .await;
    check_401(&r, "revoked key");
    // The bootstrap key still works.
    srv.create(body).await;
    srv.finish().await;
}

/// SPEC §4.1 scopes through the CLI: a key gets `sessions` by default and
/// exactly the `--scope`s given; `api-keys list` shows them (the bootstrap
/// key is `admin`); a key outside its scopes gets 403 `forbidden`; and at
/// start the service warns about admin keys other than the bootstrap one.
#[tokio::test]
async fn api_key_scopes_from_the_cli() {
    let mut srv = TestServer::start(Opts::default().env("TESSERA_HTTP_API_KEY_CACHE_SECS", "0")).await;
    let create = |args: &[&str]| {
        let mut all = vec!["api-keys", "create"];
        all.extend_from_slice(args);
        let (st, out, err) = srv.cli(&all);
        assert!(st.success(), "api-keys create {args:?}: {out}\n{err}");
        out.trim().to_owned()
    };
    let default = create(&["--name", "app-backend"]);
    let feed = create(&["--name", "resource-server", "--scope", "revocations"]);
    let audit = create(&["--name", "audit", "--scope", "events", "--scope", "revocations"]);
    let ops = create(&["--name", "ops", "--scope", "admin"]);

    let (st, list, err) = srv.cli(&["api-keys", "list"]);
    assert!(st.success(), "{list}\n{err}");
    let line = |name: &str| {
        list.lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{list}"))
            .to_owned()
    };
    assert!(list.lines().next().unwrap().contains("SCOPES"), "{list}");
    assert!(line("bootstrap").contains(" admin "), "{list}");
    assert!(line("app-backend").contains(" sessions "), "{list}");
    assert!(line("resource-server").contains(" revocations "), "{list}");
    assert!(line("audit").contains(" events revocations "), "{list}");

    let call = |key: &str, method: reqwest::Method, path: &str| {
        let mut rb = srv.http.request(method.clone(), srv.url(path)).bearer_auth(key);
        if method == reqwest::Method::POST {
            rb = rb.json(&json!({"subject": "scoped"}));
        }
        rb
    };
    let cases = [
        (&default, Method::POST, "/v1/sessions", 201),
        (&default, Method::GET, "/v1/events", 403),
        (&default, Method::GET, "/v1/revocations", 403),
        (&feed, Method::GET, "/v1/revocations", 200),
        (&feed, Method::POST, "/v1/sessions", 403),
        (&feed, Method::GET, "/v1/subjects/scoped/sessions", 403),
        (&feed, Method::GET, "/v1/events", 403),
        (&audit, Method::GET, "/v1/events", 200),
        (&audit, Method::GET, "/v1/revocations", 200),
        (&audit, Method::POST, "/v1/sessions", 403),
        (&ops, Method::POST, "/v1/sessions", 201),
        (&ops, Method::GET, "/v1/events", 200),
        (&ops, Method::GET, "/v1/revocations", 200),
        (&srv.api_key, Method::GET, "/v1/revocations", 200),
    ];
    for (key, method, path, want) in cases {
        let r = srv.send(call(key, method.clone(), path)).await;
        if want == 403 {
            r.assert_problem(403, "forbidden");
        } else {
            r.assert_status(want);
        }
    }

    srv.stop().await;
    srv.restart().await;
    let logs = srv.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains("WARN") && l.contains("admin scope"))
        .unwrap_or_else(|| panic!("a warning about admin keys:\n{logs}"));
    let ops_id = line("ops").split_whitespace().next().unwrap().to_owned();
    let boot_id = line("bootstrap").split_whitespace().next().unwrap().to_owned();
    assert!(warning.contains(&ops_id), "{warning}");
    assert!(
        !warning.contains(&boot_id),
        "the bootstrap key is meant to be admin: {warning}"
    );
    srv.finish().await;
}

#[track_caller]
fn check_401(r: &crate::harness::Resp, name: &str) -> Value {
    assert_eq!(r.status, 401, "{name}: {}", r.text());
    let p = crate::harness::check_problem(r, "unauthorized").unwrap_or_else(|e| panic!("{name}: {e}"));
    let wa = r.header("www-authenticate").unwrap_or_default();
    assert!(
        wa.to_ascii_lowercase().starts_with("bearer"),
        "{name}: WWW-Authenticate: Bearer, got {wa:?}"
    );
    p
}

/// SQL-looking subjects are ordinary data: they work and break nothing.
#[tokio::test]
async fn sql_looking_subjects_are_plain_data() {
    let srv = TestServer::start(Opts::default()).await;
    let victim = srv.create(json!({"subject": "victim"})).await;
    let subjects = [
        "' OR 1=1--",
        "'; DROP TABLE sessions;--",
        "\" OR \"\"=\"",
        "admin'--",
        "%",
        "_",
        "victim' OR subject LIKE '%",
        "ユーザー🙂",
        "a/b",
        "../../v1/events",
        "x?y#z",
    ];
    for s in subjects {
        let c = srv
            .create(json!({"subject": s, "data": {"q": "'); DELETE FROM events;--"}}))
            .await;
        assert_eq!(c.session["subject"], s);
        let v = srv.assert_verifies(&c.token).await;
        assert_eq!(v["subject"], s);
        let enc = pct(s);
        let list = srv.get(&format!("/v1/subjects/{enc}/sessions")).await;
        list.assert_status(200);
        let hs: Vec<Value> = list.json()["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["handle"].clone())
            .collect();
        assert_eq!(
            hs,
            vec![Value::from(c.handle.clone())],
            "{s:?} lists exactly its session"
        );
        let ev = srv.all_events(&format!("&subject={enc}")).await;
        assert_eq!(ev.len(), 1, "{s:?}: exactly its created event: {ev:?}");
    }
    // LIKE wildcards and quotes revoke nothing of other subjects.
    for s in ["%", "_", "victim' OR subject LIKE '%"] {
        let r = srv.delete(&format!("/v1/subjects/{}/sessions", pct(s))).await;
        assert_eq!(r.json(), json!({"revoked": 1}), "{s:?}");
    }
    srv.assert_verifies(&victim.token).await;
    assert_eq!(handles_of(&srv, "victim").await, vec![victim.handle.clone()]);
    assert_eq!(srv.all_events("").await.len(), 1 + subjects.len() + 3);
    srv.finish().await;
}

/// Percent-encodes everything but unreserved characters.
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The operations endpoints and metrics.
#[tokio::test]
async fn ops_healthz_readyz_metrics() {
    let srv = TestServer::start(Opts::default()).await;
    let r = srv.send(srv.http.get(srv.url("/healthz"))).await;
    r.assert_status(200);
    assert_eq!(r.json(), json!({"status": "ok"}));
    let r = srv.send(srv.http.get(srv.url("/readyz"))).await;
    r.assert_status(200);
    assert_eq!(r.json(), json!({"status": "ready"}));

    let c = srv.create(json!({"subject": "olga"})).await;
    srv.assert_verifies(&c.token).await;
    srv.verify(&forged_token("tss_", 11)).await.assert_status(401);
    let r = srv.send(srv.http.get(srv.url("/metrics"))).await;
    r.assert_status(200);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "Prometheus text format, got {ct:?}");
    let m = r.text();
    for name in ["tessera_http_requests_total", "tessera_session_verify_total"] {
        assert!(
            m.lines().any(|l| l.starts_with(name)),
            "/metrics lacks {name}:\n{m}"
        );
    }
    assert!(!m.contains(&c.token[4..]), "no token in metrics");
    assert!(!m.contains(&srv.api_key[4..]), "no key in metrics");
    assert!(!m.contains(&c.handle), "no handle in metric labels (cardinality)");
    srv.finish().await;
}

/// Media types: `application/json` with parameters or in another case is
/// JSON; PATCH also takes `application/merge-patch+json`.
#[tokio::test]
async fn json_media_type_variants_are_accepted() {
    let srv = TestServer::start(Opts::default()).await;
    for ct in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/json;charset=UTF-8",
    ] {
        let r = srv
            .send(
                srv.req(Method::POST, "/v1/sessions")
                    .header("content-type", ct)
                    .body(r#"{"subject":"ct"}"#),
            )
            .await;
        assert_eq!(r.status, 201, "{ct}: {}", r.text());
    }
    // A UTF-8 BOM is not JSON (RFC 8259 §8.1 lets us refuse it) — but never a 5xx.
    let r = srv
        .send(
            srv.req(Method::POST, "/v1/sessions")
                .header("content-type", "application/json")
                .body(b"\xEF\xBB\xBF{\"subject\":\"ct\"}".to_vec()),
        )
        .await;
    assert!(r.status == 201 || r.status == 400, "BOM: {}", r.text());
    // Exactly 256 bytes of multi-byte UTF-8 is a valid subject; 257 is not.
    let s256 = "é".repeat(128);
    assert_eq!(s256.len(), 256);
    srv.create(json!({"subject": s256})).await;
    let r = srv
        .post("/v1/sessions", &json!({"subject": format!("{s256}a")}))
        .await;
    r.assert_problem(400, "validation_failed");
    let r = srv.get(&format!("/v1/subjects/{}/sessions", pct(&s256))).await;
    r.assert_status(200);
    assert_eq!(r.json()["sessions"].as_array().unwrap().len(), 1);
    srv.finish().await;
}

/// The bootstrap key file: mode 0600, the key and a newline, kept across
/// restarts; its path is logged, the key never.
#[tokio::test]
async fn bootstrap_api_key_file() {
    let mut srv = TestServer::start(Opts::default()).await;
    let p = srv.bootstrap_key_path();
    assert_eq!(crate::harness::mode_of(&p), 0o600, "bootstrap-api-key mode");
    assert!(
        srv.logs().contains("bootstrap-api-key"),
        "the key file's path is logged:\n{}",
        srv.logs()
    );
    let key = srv.api_key.clone();
    srv.stop().await;
    srv.restart().await;
    assert_eq!(srv.api_key, key, "no new bootstrap key on a second start");
    srv.create(json!({"subject": "pat"})).await;
    srv.finish().await;
}

/// SC-04/SC-15: a real token misplaced in a URL is neither accepted nor
/// logged, and error messages never echo it.
#[tokio::test]
async fn sc_15_token_in_url_is_not_logged_or_accepted() {
    let srv = TestServer::start(Opts::default()).await;
    let c = srv.create(json!({"subject": "zoe"})).await;
    let r = srv.get(&format!("/v1/sessions/{}", c.token)).await;
    r.assert_problem(404, "not_found");
    assert!(
        !r.text().contains(&c.token[4..]),
        "404 echoes the token: {}",
        r.text()
    );
    let r = srv.get(&format!("/v1/events?after={}", c.token)).await;
    r.assert_problem(400, "validation_failed");
    assert!(
        !r.text().contains(&c.token[4..]),
        "400 echoes the token: {}",
        r.text()
    );
    let r = srv
        .post(
            &format!("/v1/sessions/verify?session_token={}", c.token),
            &json!({}),
        )
        .await;
    r.assert_problem(400, "validation_failed");
    let r = srv
        .post(
            "/v1/sessions/verify",
            &json!({"session_token": format!("{} ", c.token)}),
        )
        .await;
    r.assert_problem(401, "session_invalid");
    assert!(!r.text().contains(&c.token[4..]), "401 echoes the token");
    // Nor in metric labels; unknown paths do not mint label values.
    srv.get(&format!("/v1/nope/{}", c.token))
        .await
        .assert_problem(404, "not_found");
    srv.get(&format!("/{}", c.token))
        .await
        .assert_problem(404, "not_found");
    let m = srv.send(srv.http.get(srv.url("/metrics"))).await.text();
    assert!(!m.contains(&c.token[4..]), "token in /metrics:\n{m}");
    assert!(
        !m.contains("/v1/nope"),
        "raw unknown path as a metric label:\n{m}"
    );
    srv.assert_logs_clean();
    srv.finish().await;
}

/// Every line a request logs carries its request id, the client's or the
/// one the service made up (and returned in `x-request-id`), so an
/// operator can find a client's failed call in the log.
#[tokio::test]
async fn log_lines_carry_the_request_id() {
    let srv = TestServer::start(Opts::default().rust_log("info,tessera_server::edge=debug")).await;
    let sent = srv
        .send(
            srv.req(Method::GET, "/auth/verify")
                .header("x-request-id", "it-req-7"),
        )
        .await;
    assert_eq!(sent.header("x-request-id").as_deref(), Some("it-req-7"));
    let made = srv.get("/auth/verify").await;
    let made_id = made.header("x-request-id").expect("a request id is made up");
    // The line ending a request is written after its response is built;
    // give the child a moment to flush it.
    let mut logs = String::new();
    for _ in 0..50 {
        logs = srv.logs();
        if logs.contains(&format!("request_id=\"{made_id}\"")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in ["it-req-7", made_id.as_str()] {
        let line = logs
            .lines()
            .find(|l| {
                l.contains("finished processing request") && l.contains(&format!("request_id=\"{id}\""))
            })
            .unwrap_or_else(|| panic!("no finishing line for {id}:\n{logs}"));
        assert!(line.contains("route=\"/auth/verify\""), "{line}");
        assert!(line.contains("status=401"), "{line}");
    }
}
