//! Revocation of many (EX-07..11): a subject's sessions, everyone, and the
//! per-subject limit; and the application's data on a session.

use std::sync::Arc;

use serde_json::json;
use tessera_core::secret::{self, SESSION_HANDLE_PREFIX};
use tessera_core::{EventKind, EventStore, RevokeReason, SessionPolicy, SessionStore};

use super::*;
use crate::support::*;

pub async fn ex_07_revoke_all_ends_every_session<S: SessionStore + EventStore>(store: Arc<S>) {
    let h = Harness::new(store);
    let mut alice = Vec::new();
    for _ in 0..3 {
        alice.push(h.login("alice").await);
    }
    let bob = h.login("bob").await;
    h.advance_ms(SEC);
    let n = h
        .sessions
        .revoke_all("alice", None, RevokeReason::RevokeAll)
        .await
        .expect("revoke_all");
    assert_eq!(n, 3);
    for s in &alice {
        assert_eq!(
            kind(&h.sessions.verify(s.token.expose()).await),
            "session_revoked"
        );
        assert_eq!(
            h.stored(&s.session.handle).await.revoked.map(|r| r.reason),
            Some(RevokeReason::RevokeAll)
        );
    }
    assert_eq!(
        kind(&h.sessions.verify(bob.token.expose()).await),
        "ok",
        "other subjects unaffected"
    );
    let handles: Vec<String> = alice.iter().map(|s| s.session.handle.clone()).collect();
    assert_eq!(
        sorted(&revoked_events(&h, RevokeReason::RevokeAll).await),
        sorted(&handles)
    );
    assert_eq!(
        h.sessions
            .revoke_all("alice", None, RevokeReason::RevokeAll)
            .await
            .expect("revoke_all"),
        0
    );
    assert!(h.sessions.list("alice").await.expect("list").is_empty());
    assert_eq!(h.store.count_active(h.now()).await.expect("count_active"), 1);
}

pub async fn ex_08_revoke_all_except_current<S: SessionStore + EventStore>(store: Arc<S>) {
    let h = Harness::new(store);
    let cur = h.login("alice").await;
    let o1 = h.login("alice").await;
    let o2 = h.login("alice").await;
    let bob = h.login("bob").await;
    h.advance_ms(10 * SEC);
    // Password change: re-authenticate (rotating the current token), then
    // end every other session.
    let rotated = h
        .sessions
        .elevate(cur.token.expose(), level(1, &["pwd"]))
        .await
        .expect("re-authenticate");
    let n = h
        .sessions
        .revoke_all("alice", Some(&cur.session.handle), RevokeReason::RevokeAll)
        .await
        .expect("revoke_all");
    assert_eq!(n, 2);
    let v = h
        .sessions
        .verify(rotated.token.expose())
        .await
        .expect("the current session continues");
    assert_eq!(v.handle, cur.session.handle);
    assert_eq!(
        kind(&h.sessions.verify(cur.token.expose()).await),
        "session_invalid",
        "under a new token"
    );
    for o in [&o1, &o2] {
        assert_eq!(
            kind(&h.sessions.verify(o.token.expose()).await),
            "session_revoked"
        );
    }
    assert_eq!(kind(&h.sessions.verify(bob.token.expose()).await), "ok");
    let listed = h.sessions.list("alice").await.expect("list");
    assert_eq!(
        listed.iter().map(|s| s.handle.clone()).collect::<Vec<_>>(),
        vec![cur.session.handle.clone()]
    );
}

pub async fn ex_09_admin_revokes_one_subject<S: SessionStore + EventStore>(store: Arc<S>) {
    let h = Harness::new(store);
    let x1 = h.login("user-x").await;
    let x2 = h.login("user-x").await;
    let y1 = h.login("user-y").await;
    let y2 = h.login("user-y").await;

    // One session by handle.
    assert_eq!(
        h.sessions
            .revoke(&x1.session.handle, RevokeReason::Revoked)
            .await
            .ok(),
        Some(true)
    );
    assert_eq!(
        h.sessions
            .revoke(&x1.session.handle, RevokeReason::Revoked)
            .await
            .ok(),
        Some(false),
        "second revoke reports it was already revoked"
    );
    assert_eq!(
        kind(&h.sessions.verify(x1.token.expose()).await),
        "session_revoked"
    );
    assert_eq!(kind(&h.sessions.verify(x2.token.expose()).await), "ok");

    // Every session of one subject.
    let n = h
        .sessions
        .revoke_all("user-x", None, RevokeReason::Operator)
        .await
        .expect("revoke_all");
    assert_eq!(n, 1, "only the one still active");
    assert_eq!(
        kind(&h.sessions.verify(x2.token.expose()).await),
        "session_revoked"
    );
    assert_eq!(
        h.stored(&x2.session.handle).await.revoked.map(|r| r.reason),
        Some(RevokeReason::Operator)
    );
    for y in [&y1, &y2] {
        assert_eq!(
            kind(&h.sessions.verify(y.token.expose()).await),
            "ok",
            "other subjects unaffected"
        );
    }

    let unknown = secret::new_id(SESSION_HANDLE_PREFIX);
    assert_eq!(
        kind(&h.sessions.revoke(&unknown, RevokeReason::Revoked).await),
        "not_found"
    );
    assert_eq!(
        kind(&h.sessions.revoke("ses_../../x", RevokeReason::Revoked).await),
        "not_found"
    );

    // Everyone: the remaining subject too.
    h.sessions
        .revoke_all("user-y", None, RevokeReason::Operator)
        .await
        .expect("revoke_all");
    for s in [&x1, &x2, &y1, &y2] {
        assert_eq!(
            kind(&h.sessions.verify(s.token.expose()).await),
            "session_revoked"
        );
    }
    assert_eq!(h.store.count_active(h.now()).await.expect("count_active"), 0);
}

/// EX-09, the other half: an operator ends every active session of every
/// subject, in batches; sessions already revoked or expired are left as
/// they are, and each revocation is one `revoked` event.
pub async fn ex_09_operator_revokes_everyone_in_batches<S: SessionStore + EventStore>(store: Arc<S>) {
    let h = Harness::new(store);
    let mut live = Vec::new();
    for i in 0..3 {
        for _ in 0..4 {
            live.push(h.login(&format!("everyone-{i}")).await);
        }
    }
    let gone = h.login("everyone-0").await;
    h.sessions
        .revoke(&gone.session.handle, RevokeReason::Logout)
        .await
        .expect("revoke");
    // A session that expires before the operator acts.
    let mut short = login_request("everyone-1");
    short.ttl = Some(tessera_core::TtlInput {
        idle_secs: Some(5),
        absolute_secs: None,
    });
    let expired = h.sessions.create(short).await.expect("create");
    h.advance_ms(6 * SEC);
    let before = all_events(&*h.store).await.len();

    let n = h
        .sessions
        .revoke_everyone(RevokeReason::Operator, 5)
        .await
        .expect("revoke_everyone");
    assert_eq!(n, live.len() as u64, "every active session, across batches of 5");
    for s in &live {
        assert_eq!(
            kind(&h.sessions.verify(s.token.expose()).await),
            "session_revoked"
        );
        assert_eq!(
            h.stored(&s.session.handle).await.revoked.map(|r| r.reason),
            Some(RevokeReason::Operator)
        );
    }
    assert_eq!(
        h.stored(&gone.session.handle).await.revoked.map(|r| r.reason),
        Some(RevokeReason::Logout),
        "an earlier revocation keeps its reason"
    );
    assert!(
        h.stored(&expired.session.handle).await.revoked.is_none(),
        "expired ones are the sweeper's"
    );
    let new_events = &all_events(&*h.store).await[before..];
    assert_eq!(new_events.len(), live.len(), "one event per revoked session");
    assert!(
        new_events
            .iter()
            .all(|e| e.event.kind == EventKind::Revoked && e.event.reason == Some(RevokeReason::Operator))
    );
    assert_eq!(
        h.sessions
            .revoke_everyone(RevokeReason::Operator, 5)
            .await
            .expect("again"),
        0,
        "nothing left to revoke"
    );
}

pub async fn ex_11_session_limit_revokes_oldest<S: SessionStore + EventStore>(store: Arc<S>) {
    let policy = SessionPolicy {
        max_sessions_per_subject: Some(3),
        ..test_policy()
    };
    let h = Harness::with_policy(store, policy);
    let mut a = Vec::new();
    for _ in 0..4 {
        a.push(h.login("alice").await);
        h.advance_ms(SEC);
    }
    assert_eq!(
        kind(&h.sessions.verify(a[0].token.expose()).await),
        "session_revoked",
        "oldest is revoked"
    );
    assert_eq!(
        h.stored(&a[0].session.handle).await.revoked.map(|r| r.reason),
        Some(RevokeReason::SessionLimit)
    );
    for s in &a[1..] {
        assert_eq!(kind(&h.sessions.verify(s.token.expose()).await), "ok");
    }
    let listed: Vec<String> = h
        .sessions
        .list("alice")
        .await
        .expect("list")
        .iter()
        .map(|s| s.handle.clone())
        .collect();
    let newest_first: Vec<String> = a[1..].iter().rev().map(|s| s.session.handle.clone()).collect();
    assert_eq!(listed, newest_first, "three active, newest first");

    // Another subject's logins do not count against alice.
    for _ in 0..3 {
        h.login("bob").await;
    }
    assert_eq!(h.sessions.list("alice").await.expect("list").len(), 3);

    // A logged-out session frees its slot: no eviction.
    h.sessions
        .revoke_token(a[1].token.expose(), RevokeReason::Logout)
        .await
        .expect("logout");
    h.advance_ms(SEC);
    a.push(h.login("alice").await);
    assert_eq!(
        kind(&h.sessions.verify(a[2].token.expose()).await),
        "ok",
        "no eviction below the limit"
    );
    h.advance_ms(SEC);
    a.push(h.login("alice").await);
    assert_eq!(
        kind(&h.sessions.verify(a[2].token.expose()).await),
        "session_revoked"
    );
    assert_eq!(
        sorted(&revoked_events(&h, RevokeReason::SessionLimit).await),
        sorted(&[a[0].session.handle.clone(), a[2].session.handle.clone()]),
        "exactly the two oldest were evicted"
    );
    assert_eq!(h.sessions.list("alice").await.expect("list").len(), 3);
}

pub async fn data_merge_patch_persists<S: SessionStore + EventStore>(store: Arc<S>) {
    let h = Harness::new(store);
    let s = h
        .sessions
        .create(with_data("alice", json!({"x": 1, "a": {"c": 2}, "keep": "k"})))
        .await
        .expect("login");
    let handle = &s.session.handle;
    let r = h
        .sessions
        .patch_data(handle, &json!({"a": {"b": 1}, "x": null}))
        .await
        .expect("patch");
    let want = obj(json!({"a": {"b": 1, "c": 2}, "keep": "k"}));
    assert_eq!(r.data, want, "RFC 7396: merge objects, null deletes");
    let stored = h.stored(handle).await;
    assert_eq!(stored.data, want);
    assert_eq!(stored.version, s.session.version + 1);
    let v = h.sessions.verify(s.token.expose()).await.expect("verify");
    assert_eq!(v.data, want);
}
