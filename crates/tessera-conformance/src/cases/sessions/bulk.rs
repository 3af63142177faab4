//! Many sessions at once: by subject, revocation of a subject, the sweep
//! and the active count.

use std::sync::Arc;

use tessera_core::{
    EventKind, EventStore, NewEvent, Revocation, RevokeReason, SecretToken, SessionRecord, SessionStore,
    Timestamp, TokenKind,
};

use crate::support::*;

pub async fn store_list_by_subject<S: SessionStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let now = T0.plus_millis(MIN);
    let (_, a1) = session("alice", T0);
    let (_, a2) = session("alice", T0);
    let (_, a3) = expired_session("alice", now);
    // Subjects that share a prefix or differ only in case are different subjects.
    let (_, b1) = session("bob", T0);
    let (_, c1) = session("alice2", T0);
    let (_, d1) = session("ALICE", T0);
    for r in [&a1, &a2, &a3, &b1, &c1, &d1] {
        insert(s, r).await;
    }
    let mut a2r = a2.clone();
    a2r.version = 1;
    a2r.revoked = Some(Revocation {
        at: now,
        reason: RevokeReason::Logout,
    });
    update_ok(s, &a2r, &[]).await;

    let list = |subject: &'static str| async move {
        let mut v: Vec<SessionRecord> = s
            .list_by_subject(subject)
            .await
            .expect("list_by_subject")
            .iter()
            .map(|r| SessionRecord::clone(r))
            .collect();
        v.sort_by(|a, b| a.handle.cmp(&b.handle));
        v
    };
    let by_handle = |mut v: Vec<SessionRecord>| {
        v.sort_by(|a, b| a.handle.cmp(&b.handle));
        v
    };
    assert_eq!(
        list("alice").await,
        by_handle(vec![a1.clone(), a2r.clone(), a3.clone()]),
        "revoked and expired sessions are listed until swept"
    );
    assert_eq!(list("bob").await, vec![b1]);
    assert_eq!(list("alice2").await, vec![c1]);
    assert_eq!(list("ALICE").await, vec![d1]);
    assert!(list("ali").await.is_empty(), "no prefix matching");
    assert!(list("nobody").await.is_empty());

    // A re-keyed session is still listed, with its new hash.
    let mut a1k = a1.clone();
    a1k.version = 1;
    a1k.token_hash = SecretToken::generate(TokenKind::Session).hash();
    update_ok(s, &a1k, &[]).await;
    // Swept sessions are gone from the list.
    assert_eq!(s.sweep(now, 100).await.expect("sweep"), 1);
    assert_eq!(list("alice").await, by_handle(vec![a1k, a2r]));
}

pub async fn store_revoke_subject_except_and_events<S: SessionStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let now = T0.plus_millis(MIN);
    let (_, s1) = session("alice", T0);
    let (_, s2) = session("alice", T0);
    let (_, s3) = session("alice", T0);
    let (_, s4) = session("alice", T0);
    let (_, s5) = expired_session("alice", now);
    let (_, b1) = session("bob", T0);
    for r in [&s1, &s2, &s3, &s4, &s5, &b1] {
        insert(s, r).await;
    }
    let mut s4r = s4.clone();
    s4r.version = 1;
    s4r.revoked = Some(Revocation {
        at: T0.plus_millis(10 * SEC),
        reason: RevokeReason::Logout,
    });
    update_ok(s, &s4r, &[]).await;
    let base = all_events(s).await.len();

    let got = s
        .revoke_subject("alice", Some(&s2.handle), RevokeReason::RevokeAll, now)
        .await
        .expect("revoke_subject");
    assert_eq!(
        sorted(&got),
        sorted(&[s1.handle.clone(), s3.handle.clone()]),
        "active ones except s2"
    );
    let all_rev = Some(Revocation {
        at: now,
        reason: RevokeReason::RevokeAll,
    });
    for old in [&s1, &s3] {
        let r = get(s, &old.handle).await;
        assert_eq!(r.revoked, all_rev);
        assert!(r.version > old.version, "revocation bumps the version");
        let mut expected = old.clone();
        expected.revoked = r.revoked;
        expected.version = r.version;
        assert_eq!(r, expected);
        let mut stale = old.clone();
        stale.version = old.version + 1;
        assert!(
            !s.update(&stale, old.version, &[]).await.expect("update"),
            "stale CAS after revoke_subject"
        );
    }
    assert_eq!(get(s, &s2.handle).await, s2, "the excepted session is untouched");
    assert_eq!(
        get(s, &s4.handle).await,
        s4r,
        "an already revoked session keeps its first revocation"
    );
    assert_eq!(get(s, &s5.handle).await, s5, "an expired session is not revoked");
    assert_eq!(get(s, &b1.handle).await, b1, "other subjects are untouched");

    let events = &all_events(s).await[base..];
    assert_eq!(
        events.len(),
        2,
        "one revoked event per revoked session: {events:?}"
    );
    for e in events {
        assert_eq!(e.event.kind, EventKind::Revoked);
        assert_eq!(e.event.reason, Some(RevokeReason::RevokeAll));
        assert_eq!(e.event.subject, "alice");
        assert_eq!(e.event.at, now);
    }
    let handles: Vec<String> = events.iter().map(|e| e.event.handle.clone()).collect();
    assert_eq!(sorted(&handles), sorted(&got));

    // Nothing left to revoke but the exception: no writes, no events.
    let again = s
        .revoke_subject("alice", Some(&s2.handle), RevokeReason::RevokeAll, now)
        .await
        .expect("revoke_subject");
    assert!(again.is_empty(), "second call revokes nothing: {again:?}");
    assert_eq!(all_events(s).await.len(), base + 2);

    let later = now.plus_millis(SEC);
    let last = s
        .revoke_subject("alice", None, RevokeReason::Operator, later)
        .await
        .expect("revoke_subject");
    assert_eq!(last, vec![s2.handle.clone()]);
    assert_eq!(
        get(s, &s2.handle).await.revoked,
        Some(Revocation {
            at: later,
            reason: RevokeReason::Operator
        })
    );
    assert!(
        s.revoke_subject("nobody", None, RevokeReason::Operator, later)
            .await
            .expect("revoke_subject")
            .is_empty()
    );
    assert_eq!(
        s.count_active(later).await.expect("count_active"),
        1,
        "only bob's"
    );
}

pub async fn store_sweep_in_batches<S: SessionStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let now = T0.plus_millis(10 * HOUR);
    let mut expired_live = Vec::new(); // expired, not revoked: one `expired` event each
    let mut expired_revoked = Vec::new(); // expired and revoked: deleted silently
    let mut kept = Vec::new();

    for i in 0..3 {
        // Idle-expired, absolute far ahead.
        let (_, mut r) = session(&format!("user-{i}"), T0);
        r.absolute_expires_at = now.plus_millis(HOUR);
        expired_live.push(r);
    }
    for _ in 0..2 {
        // Absolute-expired, idle far ahead.
        let (_, mut r) = session("alice", T0);
        r.idle_expires_at = now.plus_millis(HOUR);
        r.absolute_expires_at = now.plus_millis(-1);
        expired_live.push(r);
    }
    {
        // Expiring exactly now: expired (expires_at <= now).
        let (_, mut r) = session("alice", T0);
        r.idle_expires_at = now;
        r.absolute_expires_at = now.plus_millis(HOUR);
        expired_live.push(r);
    }
    for _ in 0..2 {
        let (_, r) = expired_session("alice", now);
        expired_revoked.push(r);
    }
    for _ in 0..2 {
        // Revoked but not yet expired: kept (its record answers "revoked").
        let (_, r) = session("alice", now.plus_millis(-MIN));
        kept.push(r);
    }
    {
        let (_, mut r) = session("alice", T0);
        r.idle_expires_at = now.plus_millis(1);
        r.absolute_expires_at = now.plus_millis(HOUR);
        kept.push(r);
        let (_, r) = session("bob", now);
        kept.push(r);
    }
    for r in expired_live.iter().chain(&expired_revoked).chain(&kept) {
        insert(s, r).await;
    }
    let rev = |r: &mut SessionRecord| {
        r.version += 1;
        r.revoked = Some(Revocation {
            at: now.plus_millis(-SEC),
            reason: RevokeReason::Revoked,
        });
    };
    for r in expired_revoked.iter_mut().chain(kept.iter_mut().take(2)) {
        rev(r);
        update_ok(s, r, &[]).await;
    }
    let base = all_events(s).await.len();

    let total_expired = expired_live.len() + expired_revoked.len();
    let stored = |handles: Vec<String>| async move {
        let mut n = 0;
        for h in handles {
            if s.get(&h).await.expect("get").is_some() {
                n += 1;
            }
        }
        n
    };
    let every: Vec<String> = expired_live
        .iter()
        .chain(&expired_revoked)
        .chain(&kept)
        .map(|r| r.handle.clone())
        .collect();
    let mut left = stored(every.clone()).await;
    let mut swept = 0u32;
    let mut returns = Vec::new();
    loop {
        let n = s.sweep(now, 3).await.expect("sweep");
        returns.push(n);
        assert!(n <= 3, "sweep deleted {n} with batch 3");
        let now_left = stored(every.clone()).await;
        assert_eq!(left - now_left, n as usize, "sweep returns how many it deleted");
        left = now_left;
        swept += n;
        if n < 3 {
            break;
        }
        assert!(returns.len() < 10, "sweep never finishes: {returns:?}");
    }
    assert_eq!(
        swept as usize, total_expired,
        "every expired session goes (returns {returns:?})"
    );
    assert_eq!(returns, vec![3, 3, 2], "full batches until the last");
    assert_eq!(s.sweep(now, 3).await.expect("sweep"), 0, "nothing left to sweep");

    for r in expired_live.iter().chain(&expired_revoked) {
        assert!(
            s.get(&r.handle).await.expect("get").is_none(),
            "{} is swept",
            r.handle
        );
        assert!(
            s.get_by_token(&r.token_hash)
                .await
                .expect("get_by_token")
                .is_none(),
            "token index cleaned"
        );
        let listed = s.list_by_subject(&r.subject).await.expect("list_by_subject");
        assert!(
            listed.iter().all(|l| l.handle != r.handle),
            "subject index cleaned"
        );
    }
    for r in &kept {
        assert_eq!(&get(s, &r.handle).await, r, "{} must be kept", r.handle);
    }

    let events = &all_events(s).await[base..];
    let mut want: Vec<NewEvent> = expired_live
        .iter()
        .map(|r| NewEvent::new(EventKind::Expired, r, now))
        .collect();
    want.sort_by(|a, b| a.handle.cmp(&b.handle));
    let mut got: Vec<NewEvent> = events.iter().map(|e| e.event.clone()).collect();
    got.sort_by(|a, b| a.handle.cmp(&b.handle));
    assert_eq!(
        got, want,
        "one `expired` event (at now) per swept session that had not been revoked"
    );
}

pub async fn store_count_active<S: SessionStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let at = |m: i64| T0.plus_millis(m * MIN);
    assert_eq!(s.count_active(T0).await.expect("count_active"), 0);
    let (_, a) = session("alice", T0); // idle until +30 min
    let (_, b) = session("alice", T0);
    let (_, mut c) = session("bob", T0);
    c.idle_expires_at = at(10);
    let (_, mut d) = session("carol", T0);
    d.absolute_expires_at = at(5);
    for r in [&a, &b, &c, &d] {
        insert(s, r).await;
    }
    let mut br = b.clone();
    br.version = 1;
    br.revoked = Some(Revocation {
        at: T0,
        reason: RevokeReason::Logout,
    });
    update_ok(s, &br, &[]).await;

    let count = |t: Timestamp| async move { s.count_active(t).await.expect("count_active") };
    assert_eq!(count(T0).await, 3, "revoked sessions are not active");
    assert_eq!(count(at(5).plus_millis(-1)).await, 3);
    assert_eq!(
        count(at(5)).await,
        2,
        "absolute expiry ends activity at expires_at"
    );
    assert_eq!(count(at(10).plus_millis(-1)).await, 2);
    assert_eq!(count(at(10)).await, 1, "idle expiry ends activity at expires_at");
    assert_eq!(count(at(30)).await, 0);
    assert!(
        s.touch(&a.handle, &a.token_hash, at(20), at(50))
            .await
            .expect("touch")
    );
    assert_eq!(
        count(at(30)).await,
        1,
        "a slid session is active again at the same instant"
    );
    assert_eq!(count(at(50)).await, 0);
}
