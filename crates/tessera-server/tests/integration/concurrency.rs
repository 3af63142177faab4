//! Atomicity seen from outside: racing requests on one session or subject.

use futures::future::join_all;
use serde_json::json;

use crate::harness::{Opts, TestServer};

/// FX-02 under a race: the same token elevated 8 times at once → exactly
/// one new token; the others are refused (the old token is dead at once).
#[tokio::test]
async fn fx_02_concurrent_elevate_has_one_winner() {
    let srv = TestServer::start(Opts::default()).await;
    let c = srv.create(json!({"subject": "walt"})).await;
    let body = json!({"session_token": c.token, "auth": {"level": 2, "methods": ["otp"]}});
    let results = join_all((0..8).map(|_| srv.post("/v1/sessions/elevate", &body))).await;
    let winners: Vec<_> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one elevation wins: {:?}",
        results.iter().map(|r| (r.status, r.text())).collect::<Vec<_>>()
    );
    for r in results.iter().filter(|r| r.status != 200) {
        r.assert_problem(401, "session_invalid");
    }
    let t = winners[0].json()["session_token"].as_str().unwrap().to_owned();
    srv.assert_verifies(&t).await;
    srv.verify(&c.token).await.assert_problem(401, "session_invalid");
    let ev = srv.all_events("&subject=walt").await;
    assert_eq!(ev.iter().filter(|e| e["kind"] == "elevated").count(), 1, "{ev:?}");
    srv.finish().await;
}

/// EX-11 under a race: 12 simultaneous logins with a limit of 3 leave
/// exactly 3 active sessions, and every eviction is recorded.
#[tokio::test]
async fn ex_11_concurrent_logins_respect_limit() {
    let srv = TestServer::start(Opts::default().env("TESSERA_SESSION_MAX_SESSIONS_PER_SUBJECT", "3")).await;
    let body = json!({"subject": "xena"});
    let results = join_all((0..12).map(|_| srv.post("/v1/sessions", &body))).await;
    for r in &results {
        r.assert_status(201);
    }
    let list = srv.get("/v1/subjects/xena/sessions").await.json();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 3, "{list}");
    let mut alive = 0;
    for r in &results {
        let t = r.json()["session_token"].as_str().unwrap().to_owned();
        let v = srv.verify(&t).await;
        if v.status == 200 {
            alive += 1;
        } else {
            v.assert_problem(401, "session_revoked");
        }
    }
    assert_eq!(alive, 3);
    let ev = srv.all_events("&subject=xena").await;
    let limit = ev
        .iter()
        .filter(|e| e["kind"] == "revoked" && e["reason"] == "session_limit")
        .count();
    assert_eq!(limit, 9, "{ev:?}");
    srv.finish().await;
}

/// A logout racing verifications: once the 204 is back, no later verify
/// succeeds; nothing 5xx.
#[tokio::test]
async fn revoke_races_verify() {
    let srv = TestServer::start(Opts::default()).await;
    let c = srv.create(json!({"subject": "yuri"})).await;
    let verifies = join_all((0..16).map(|_| srv.verify(&c.token)));
    let body = json!({"session_token": c.token});
    let revoke = srv.post("/v1/sessions/revoke", &body);
    let (vs, rv) = futures::join!(verifies, revoke);
    rv.assert_status(204);
    for v in vs {
        if v.status != 200 {
            v.assert_problem(401, "session_revoked");
        }
    }
    for _ in 0..3 {
        srv.verify(&c.token).await.assert_problem(401, "session_revoked");
    }
    srv.finish().await;
}

/// FX-01 under a race: six logins present the same pre-login token at
/// once. All succeed with new tokens, the pre-login session is revoked
/// exactly once, and its data is carried over to exactly one of them.
#[tokio::test]
async fn fx_01_concurrent_logins_share_one_previous_session() {
    let srv = TestServer::start(Opts::default()).await;
    let pre = srv.create(json!({"subject": "zack", "data": {"cart": 3}})).await;
    let body = json!({"subject": "zack", "previous_session_token": pre.token});
    let results = join_all((0..6).map(|_| srv.post("/v1/sessions", &body))).await;
    let mut carried = 0;
    for r in &results {
        r.assert_status(201);
        let v = r.json();
        assert_ne!(v["session_token"], pre.token.as_str());
        if v["session"]["data"] == json!({"cart": 3}) {
            carried += 1;
        } else {
            assert_eq!(v["session"]["data"], json!({}));
        }
    }
    assert_eq!(carried, 1, "the pre-login data goes to exactly one login");
    srv.verify(&pre.token)
        .await
        .assert_problem(401, "session_revoked");
    let ev = srv.all_events("&subject=zack").await;
    let replaced = ev
        .iter()
        .filter(|e| e["kind"] == "revoked" && e["reason"] == "replaced")
        .count();
    assert_eq!(replaced, 1, "{ev:?}");
    srv.finish().await;
}
