//! The conditional writes on one session: `update` (compare-and-swap) and
//! `touch` (the idle slide).

use std::sync::Arc;

use serde_json::json;
use tessera_core::secret::{self, SESSION_HANDLE_PREFIX};
use tessera_core::{
    AuthInfo, Binding, EventKind, EventStore, NewEvent, Revocation, RevokeReason, SecretToken, SessionStore,
    StoreError, TokenKind,
};

use crate::support::*;

pub async fn store_update_cas<S: SessionStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (_, p) = session("alice", T0);
    insert(s, &p).await;
    let (_, q) = session("alice", T0);
    insert(s, &q).await;
    let subjects = ["alice"];
    let before = snapshot(s, &subjects, T0).await;

    let mut wrong = p.clone();
    wrong.version = 2;
    wrong.data = obj(json!({"k": "v"}));
    let ev = NewEvent::new(EventKind::Refreshed, &wrong, T0);
    assert!(
        !s.update(&wrong, 1, &[ev]).await.expect("update"),
        "wrong expected version"
    );
    assert_eq!(
        snapshot(s, &subjects, T0).await,
        before,
        "a failed CAS writes nothing"
    );

    // A swap that re-keys the token and changes every mutable field.
    let at = T0.plus_millis(MIN + 1);
    let new_tok = SecretToken::generate(TokenKind::Session);
    let mut next = p.clone();
    next.version = 1;
    next.token_hash = new_tok.hash();
    next.auth = AuthInfo {
        level: 2,
        methods: vec!["pwd".into(), "otp".into()],
        time: at,
    };
    next.last_seen_at = at;
    next.idle_expires_at = at.plus_millis(30 * MIN);
    next.data = obj(json!({"cart": [1, 2]}));
    next.binding = Some(Binding::Dpop {
        jkt: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into(),
    });
    let ev = NewEvent::new(EventKind::Elevated, &next, at);
    assert!(
        s.update(&next, 0, std::slice::from_ref(&ev))
            .await
            .expect("update")
    );
    assert_eq!(get(s, &p.handle).await, next);
    assert!(
        s.get_by_token(&p.token_hash)
            .await
            .expect("get_by_token")
            .is_none(),
        "a replaced token no longer finds the session"
    );
    let by_new = s.get_by_token(&new_tok.hash()).await.expect("get_by_token");
    assert_eq!(by_new.as_deref(), Some(&next), "the new token hash finds it");
    let events = all_events(s).await;
    assert_eq!(events.len(), before.events.len() + 1);
    assert_eq!(events.last().map(|e| &e.event), Some(&ev));

    // A second writer that also read version 0 loses.
    let mut loser = p.clone();
    loser.version = 1;
    loser.data = obj(json!({"lost": true}));
    assert!(
        !s.update(&loser, 0, &[]).await.expect("update"),
        "stale expected version"
    );
    assert_eq!(get(s, &p.handle).await, next);

    // Re-keying onto another session's hash never takes that hash over.
    let before = snapshot(s, &subjects, at).await;
    let mut steal = next.clone();
    steal.version = 2;
    steal.token_hash = q.token_hash;
    match s.update(&steal, 1, &[]).await {
        Ok(false) | Err(StoreError::Duplicate) => {}
        other => panic!("re-keying onto a hash in use must fail (false or Duplicate), got {other:?}"),
    }
    assert_eq!(
        snapshot(s, &subjects, at).await,
        before,
        "a refused re-key writes nothing"
    );
    let by_q = s.get_by_token(&q.token_hash).await.expect("get_by_token");
    assert_eq!(by_q.as_deref(), Some(&q));

    // A revocation round-trips and the session stays findable until swept.
    let rev_at = at.plus_millis(SEC);
    let mut rev = next.clone();
    rev.version = 2;
    rev.revoked = Some(Revocation {
        at: rev_at,
        reason: RevokeReason::Logout,
    });
    update_ok(s, &rev, &[NewEvent::revoked(&rev, RevokeReason::Logout, rev_at)]).await;
    assert_eq!(get(s, &p.handle).await, rev);
    let by_new = s.get_by_token(&new_tok.hash()).await.expect("get_by_token");
    assert_eq!(by_new.as_deref(), Some(&rev));
    assert_eq!(
        s.count_active(rev_at).await.expect("count_active"),
        1,
        "only q is active"
    );
}

pub async fn store_update_never_regresses_last_seen<S: SessionStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (_, p) = session("alice", T0);
    insert(s, &p).await;
    assert!(
        s.touch(
            &p.handle,
            &p.token_hash,
            T0.plus_millis(10 * MIN),
            T0.plus_millis(40 * MIN)
        )
        .await
        .expect("touch")
    );

    // A writer that read the record before that touch writes its stale
    // last_seen/idle_expires along with its real change.
    let mut next = p.clone();
    next.version = 1;
    next.data = obj(json!({"changed": true}));
    update_ok(s, &next, &[]).await;
    let got = get(s, &p.handle).await;
    assert_eq!(
        got.last_seen_at,
        T0.plus_millis(10 * MIN),
        "update must not undo a touch (last_seen_at)"
    );
    assert_eq!(
        got.idle_expires_at,
        T0.plus_millis(40 * MIN),
        "update must not undo a touch (idle_expires_at)"
    );
    assert_eq!(got.data, next.data, "the update itself is applied");
    assert_eq!(got.version, 1);

    // Later values do move forward.
    let mut later = got.clone();
    later.version = 2;
    later.last_seen_at = T0.plus_millis(20 * MIN);
    later.idle_expires_at = T0.plus_millis(50 * MIN);
    update_ok(s, &later, &[]).await;
    assert_eq!(get(s, &p.handle).await, later);
}

pub async fn store_touch_conditional_and_monotonic<S: SessionStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (_, p) = session("alice", T0);
    insert(s, &p).await;
    let (_, q) = session("alice", T0);
    insert(s, &q).await;
    let base = all_events(s).await.len();
    let at = |m: i64| T0.plus_millis(m * MIN);

    let unknown = secret::new_id(SESSION_HANDLE_PREFIX);
    assert!(
        !s.touch(&unknown, &p.token_hash, at(1), at(31))
            .await
            .expect("touch"),
        "unknown handle"
    );
    assert!(
        !s.touch(&p.handle, &q.token_hash, at(1), at(31))
            .await
            .expect("touch"),
        "wrong token hash"
    );
    assert_eq!(
        get(s, &p.handle).await,
        p,
        "a touch that did not match writes nothing"
    );

    assert!(
        s.touch(&p.handle, &p.token_hash, at(1), at(31))
            .await
            .expect("touch")
    );
    let mut expected = p.clone();
    expected.last_seen_at = at(1);
    expected.idle_expires_at = at(31);
    assert_eq!(
        get(s, &p.handle).await,
        expected,
        "touch sets both times and keeps the version"
    );
    assert_eq!(get(s, &q.handle).await, q, "touch changes only its own session");

    // Older values still match, but nothing moves back.
    assert!(
        s.touch(&p.handle, &p.token_hash, at(0), at(30))
            .await
            .expect("touch")
    );
    assert_eq!(
        get(s, &p.handle).await,
        expected,
        "touch keeps the later of stored and given"
    );
    // Each field takes its own maximum.
    assert!(
        s.touch(&p.handle, &p.token_hash, at(2), at(20))
            .await
            .expect("touch")
    );
    expected.last_seen_at = at(2);
    assert_eq!(get(s, &p.handle).await, expected);
    assert_eq!(all_events(s).await.len(), base, "touch appends no events");

    // After a re-key the old hash no longer matches.
    let new_tok = SecretToken::generate(TokenKind::Session);
    let mut next = expected.clone();
    next.version = 1;
    next.token_hash = new_tok.hash();
    update_ok(s, &next, &[]).await;
    assert!(
        !s.touch(&p.handle, &p.token_hash, at(5), at(35))
            .await
            .expect("touch"),
        "replaced hash"
    );
    assert_eq!(get(s, &p.handle).await, next);
    assert!(
        s.touch(&p.handle, &new_tok.hash(), at(5), at(35))
            .await
            .expect("touch")
    );
    next.last_seen_at = at(5);
    next.idle_expires_at = at(35);
    assert_eq!(get(s, &p.handle).await, next);

    // A revoked session is never slid again.
    let mut rev = next.clone();
    rev.version = 2;
    rev.revoked = Some(Revocation {
        at: at(6),
        reason: RevokeReason::Revoked,
    });
    update_ok(s, &rev, &[]).await;
    assert!(
        !s.touch(&p.handle, &new_tok.hash(), at(10), at(40))
            .await
            .expect("touch"),
        "revoked"
    );
    assert_eq!(get(s, &p.handle).await, rev);
}
