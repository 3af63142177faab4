//! Families as records: creation, lookup by any of their tokens, the
//! session read alongside, revocation, and deletion with their session.

use std::sync::Arc;

use tessera_core::{
    Binding, EventKind, NewEvent, RefreshFamily, RefreshStore, Revocation, RevokeReason, Rotation,
    SessionRecord, StoreError, TokenHash,
};

use super::*;
use crate::support::*;

pub async fn store_refresh_fresh_store_is_empty<S: RefreshStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (_, rec) = session("alice", T0);
    let t = refresh_token();
    assert!(s.find_refresh(&t.hash()).await.expect("find_refresh").is_none());
    assert!(
        s.refresh_families_of(&rec.handle)
            .await
            .expect("refresh_families_of")
            .is_empty()
    );
    // Conditional writes on nothing match nothing; rotation is no upsert.
    assert!(
        !s.rotate_refresh(
            &Rotation::new("rtf_nonexistent", 0, &t.hash(), T0).sealed(b"sealed"),
            &[refreshed_event(&rec, T0)]
        )
        .await
        .expect("rotate_refresh"),
        "rotation of a missing family"
    );
    assert!(
        !s.revoke_refresh_family(
            "rtf_nonexistent",
            RevokeReason::Revoked,
            T0,
            &[NewEvent::revoked(&rec, RevokeReason::Revoked, T0)]
        )
        .await
        .expect("revoke_refresh_family"),
        "revocation of a missing family"
    );
    assert!(
        s.find_refresh(&t.hash()).await.expect("find_refresh").is_none(),
        "a failed rotation records no successor"
    );
    assert!(all_events(s).await.is_empty(), "no-op calls append no events");
}

pub async fn store_refresh_family_round_trip<S: RefreshStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (_, a) = session("alice", T0);
    insert(s, &a).await;
    let at = T0.plus_millis(1_234);

    // Every field set to something a careless encoding would lose.
    let (t1, mut f1) = refresh_family(&a, at);
    f1.client_id = "client 'quoted' \"ünï\" 😀".to_owned();
    f1.scope = vec!["openid".to_owned(), "read:all".to_owned(), "ünï'\"\\".to_owned()];
    f1.audience = vec!["https://api.example/".to_owned(), "tessera".to_owned()];
    f1.rotated_at = at.plus_millis(7);
    f1.current_sealed = Some(vec![0, 255, 1, 0, 128, b'\n', b'\'', b'"', 0]);
    f1.binding = Some(Binding::Dpop {
        jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".to_owned(),
    });
    // Nothing optional, empty scope, one audience.
    let (t2, mut f2) = refresh_family(&a, at.plus_millis(1));
    f2.scope = vec![];
    f2.audience = vec!["only".to_owned()];
    f2.binding = Some(Binding::Mtls {
        x5t_s256: "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2".to_owned(),
    });
    // Issued on a session token that has since been replaced.
    let (t3, mut f3) = refresh_family(&a, at.plus_millis(2));
    f3.session_token_hash = refresh_token().hash();
    f3.binding = Some(Binding::Dbsc {
        session_id: "dbsc 'sid'".to_owned(),
        jkt: "jkt-ünï".to_owned(),
        jwk: String::new(),
    });
    f3.current_sealed = Some(vec![7; 300]);

    let skip = all_events(s).await.len();
    let ev1 = [refreshed_event(&a, at)];
    let ev3 = [
        NewEvent::new(EventKind::Created, &a, at.plus_millis(2)),
        NewEvent::new(EventKind::BindingFailed, &a, at.plus_millis(3)),
    ];
    create_family(s, &f1, &t1.hash(), &ev1).await;
    create_family(s, &f2, &t2.hash(), &[]).await;
    create_family(s, &f3, &t3.hash(), &ev3).await;

    for (t, f) in [(&t1, &f1), (&t2, &f2), (&t3, &f3)] {
        assert_eq!(
            lookup(s, &t.hash()).await,
            Some((f.clone(), 0)),
            "the first token finds family {} as generation 0, every field intact",
            f.id
        );
    }
    assert_eq!(
        families_of(s, &a.handle).await,
        by_id(vec![f1.clone(), f2.clone(), f3.clone()]),
        "refresh_families_of returns every family of the session"
    );
    let want: Vec<NewEvent> = ev1.iter().chain(&ev3).cloned().collect();
    assert_eq!(
        events_after(s, skip).await,
        want,
        "create_refresh_family appends its events, in order"
    );
    assert_eq!(get(s, &a.handle).await, a, "the session itself is untouched");
    assert!(
        s.find_refresh(&refresh_token().hash())
            .await
            .expect("find_refresh")
            .is_none(),
        "an unknown hash finds nothing"
    );
}

pub async fn store_refresh_family_duplicate_writes_nothing<S: RefreshStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (_, a) = session("alice", T0);
    let (_, b) = session("bob", T0);
    insert(s, &a).await;
    insert(s, &b).await;
    let (t0, f) = refresh_family(&a, T0);
    create_family(s, &f, &t0.hash(), &[]).await;
    // t0 is consumed, t1 current: both must count as taken.
    let t1 = refresh_token();
    rotate_ok(s, &f, &t1.hash(), b"sealed-1", T0.plus_millis(SEC)).await;

    let now = T0.plus_millis(MIN);
    let fresh = refresh_token();
    let hashes = [t0.hash(), t1.hash(), fresh.hash()];
    let before = token_state(s, &[&a.handle, &b.handle], &hashes).await;

    let (_, mut same_id) = refresh_family(&b, now);
    same_id.id = f.id.clone();
    let (_, other) = refresh_family(&b, now);
    let cases: [(&str, &RefreshFamily, TokenHash); 3] = [
        ("id", &same_id, fresh.hash()),
        ("first hash (a consumed token)", &other, t0.hash()),
        ("first hash (a current token)", &other, t1.hash()),
    ];
    for (what, family, first) in cases {
        let events = [refreshed_event(&b, now)];
        let r = s.create_refresh_family(family, &first, &events).await;
        assert!(
            matches!(r, Err(StoreError::Duplicate)),
            "a duplicate {what} must be StoreError::Duplicate, got {r:?}"
        );
        assert_eq!(
            token_state(s, &[&a.handle, &b.handle], &hashes).await,
            before,
            "a duplicate {what} must write nothing (no family, no hash, no event)"
        );
    }
}

pub async fn store_refresh_revoke_family<S: RefreshStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (_, a) = session("alice", T0);
    insert(s, &a).await;
    let (t0, f) = refresh_family(&a, T0);
    create_family(s, &f, &t0.hash(), &[]).await;
    let (u0, g) = refresh_family(&a, T0);
    create_family(s, &g, &u0.hash(), &[]).await;
    let t1 = refresh_token();
    let f1 = rotate_ok(s, &f, &t1.hash(), b"sealed-1", T0.plus_millis(SEC)).await;
    assert!(f1.current_sealed.is_some());

    let at = T0.plus_millis(2 * MIN + 3);
    let skip = all_events(s).await.len();
    let ev = NewEvent {
        reason: Some(RevokeReason::RefreshTokenReuse),
        ..NewEvent::new(EventKind::RefreshTokenReuse, &a, at)
    };
    assert!(
        s.revoke_refresh_family(
            &f.id,
            RevokeReason::RefreshTokenReuse,
            at,
            std::slice::from_ref(&ev)
        )
        .await
        .expect("revoke_refresh_family"),
        "revocation of an active family"
    );
    let want = RefreshFamily {
        revoked: Some(Revocation {
            at,
            reason: RevokeReason::RefreshTokenReuse,
        }),
        current_sealed: None,
        ..f1.clone()
    };
    assert_eq!(
        lookup(s, &t0.hash()).await,
        Some((want.clone(), 0)),
        "revoked: the sealed token is cleared, generation and the rest kept"
    );
    assert_eq!(lookup(s, &t1.hash()).await, Some((want.clone(), 1)));
    assert_eq!(events_after(s, skip).await, vec![ev], "the revocation's events");

    // Idempotent: false, and the first revocation stands.
    let hashes = [t0.hash(), t1.hash(), u0.hash()];
    let before = token_state(s, &[&a.handle], &hashes).await;
    let later = at.plus_millis(MIN);
    assert!(
        !s.revoke_refresh_family(
            &f.id,
            RevokeReason::Revoked,
            later,
            &[NewEvent::revoked(&a, RevokeReason::Revoked, later)]
        )
        .await
        .expect("revoke_refresh_family"),
        "a second revocation"
    );
    assert_eq!(
        token_state(s, &[&a.handle], &hashes).await,
        before,
        "a second revocation writes nothing"
    );
    assert_eq!(
        families_of(s, &a.handle).await,
        by_id(vec![want, g.clone()]),
        "revoked families are still listed; the other family is untouched"
    );
    assert_eq!(lookup(s, &u0.hash()).await, Some((g, 0)));
    assert_eq!(
        get(s, &a.handle).await,
        a,
        "revoking a family leaves its session alone"
    );
}

pub async fn store_refresh_families_of<S: RefreshStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (_, a) = session("alice", T0);
    let (_, b) = session("alice", T0);
    let (_, c) = session("bob", T0);
    for r in [&a, &b, &c] {
        insert(s, r).await;
    }
    let (t1, f1) = refresh_family(&a, T0);
    let (t2, mut f2) = refresh_family(&a, T0.plus_millis(1));
    f2.client_id = "other-client".to_owned();
    let (t3, f3) = refresh_family(&b, T0);
    for (t, f) in [(&t1, &f1), (&t2, &f2), (&t3, &f3)] {
        create_family(s, f, &t.hash(), &[]).await;
    }
    let at = T0.plus_millis(SEC);
    assert!(
        s.revoke_refresh_family(&f2.id, RevokeReason::Logout, at, &[])
            .await
            .expect("revoke_refresh_family")
    );
    let f2r = RefreshFamily {
        revoked: Some(Revocation {
            at,
            reason: RevokeReason::Logout,
        }),
        ..f2
    };
    assert_eq!(
        families_of(s, &a.handle).await,
        by_id(vec![f1, f2r]),
        "both of a's families, the revoked one included"
    );
    assert_eq!(families_of(s, &b.handle).await, vec![f3], "only b's own family");
    assert!(
        families_of(s, &c.handle).await.is_empty(),
        "a session without families"
    );
    assert!(families_of(s, "ses_nonexistent").await.is_empty());
}

pub async fn store_sweep_deletes_refresh_families<S: RefreshStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let now = T0.plus_millis(10 * HOUR);
    // Two expired sessions (one of them revoked), one live, one revoked but
    // not yet expired.
    let (_, dead) = session("alice", T0);
    let (_, mut dead_revoked) = session("alice", T0);
    let (_, live) = session("alice", now.plus_millis(-MIN));
    let (_, mut revoked_live) = session("bob", now.plus_millis(-MIN));
    for r in [&dead, &dead_revoked, &live, &revoked_live] {
        insert(s, r).await;
    }
    for r in [&mut dead_revoked, &mut revoked_live] {
        r.version += 1;
        r.revoked = Some(Revocation {
            at: now.plus_millis(-SEC),
            reason: RevokeReason::Revoked,
        });
        update_ok(s, r, &[]).await;
    }

    // Each expired session: a rotated family and a revoked one.
    let mut doomed: Vec<(String, Vec<TokenHash>)> = Vec::new();
    for r in [&dead, &dead_revoked] {
        let (a0, fa) = refresh_family(r, r.created_at);
        create_family(s, &fa, &a0.hash(), &[]).await;
        let a1 = refresh_token();
        rotate_ok(s, &fa, &a1.hash(), b"sealed", r.created_at.plus_millis(MIN)).await;
        let (b0, fb) = refresh_family(r, r.created_at);
        create_family(s, &fb, &b0.hash(), &[]).await;
        assert!(
            s.revoke_refresh_family(&fb.id, RevokeReason::Revoked, r.created_at.plus_millis(MIN), &[])
                .await
                .expect("revoke_refresh_family")
        );
        doomed.push((r.handle.clone(), vec![a0.hash(), a1.hash(), b0.hash()]));
    }
    let (l0, fl) = refresh_family(&live, live.created_at);
    create_family(s, &fl, &l0.hash(), &[]).await;
    let l1 = refresh_token();
    let fl = rotate_ok(s, &fl, &l1.hash(), b"live", now.plus_millis(-1)).await;
    let (k0, fk) = refresh_family(&revoked_live, revoked_live.created_at);
    create_family(s, &fk, &k0.hash(), &[]).await;

    let kept_ok = {
        let (fl, fk, l0, l1, k0) = (fl.clone(), fk.clone(), l0.hash(), l1.hash(), k0.hash());
        let (live, revoked_live) = (live.handle.clone(), revoked_live.handle.clone());
        move |what: &'static str| {
            let (fl, fk, live, revoked_live) = (fl.clone(), fk.clone(), live.clone(), revoked_live.clone());
            async move {
                assert_eq!(
                    lookup(s, &l0).await,
                    Some((fl.clone(), 0)),
                    "{what}: live family kept"
                );
                assert_eq!(
                    lookup(s, &l1).await,
                    Some((fl.clone(), 1)),
                    "{what}: live family kept"
                );
                assert_eq!(lookup(s, &k0).await, Some((fk.clone(), 0)), "{what}: kept");
                assert_eq!(families_of(s, &live).await, vec![fl], "{what}");
                assert_eq!(families_of(s, &revoked_live).await, vec![fk], "{what}");
            }
        }
    };

    // One session per batch: only the swept session's families go.
    assert_eq!(s.sweep(now, 1).await.expect("sweep"), 1);
    let swept_first = if s.get(&dead.handle).await.expect("get").is_none() {
        0
    } else {
        1
    };
    for (i, (handle, hashes)) in doomed.iter().enumerate() {
        let gone = i == swept_first;
        assert_eq!(
            families_of(s, handle).await.is_empty(),
            gone,
            "after one batch, the families of {handle} are gone iff it was swept"
        );
        for h in hashes {
            assert_eq!(
                lookup(s, h).await.is_none(),
                gone,
                "after one batch, the tokens of {handle} are gone iff it was swept"
            );
        }
    }
    kept_ok("after the first batch").await;

    assert_eq!(s.sweep(now, 1).await.expect("sweep"), 1);
    assert_eq!(s.sweep(now, 1).await.expect("sweep"), 0, "nothing else expired");
    for (handle, hashes) in &doomed {
        assert!(
            families_of(s, handle).await.is_empty(),
            "{handle}'s families swept"
        );
        for h in hashes {
            assert!(lookup(s, h).await.is_none(), "{handle}'s token hashes swept");
        }
    }
    kept_ok("after both batches").await;

    // The hashes are deleted, not just hidden: a new family may take one.
    let (_, mut reborn) = refresh_family(&live, now);
    reborn.id = format!("{}-new", fl.id);
    let reused = doomed[0].1[1];
    s.create_refresh_family(&reborn, &reused, &[])
        .await
        .expect("a swept family's token hash is free again");
    assert_eq!(lookup(s, &reused).await, Some((reborn, 0)));
}

/// What `find_refresh_with_session` finds for `hash`, after asserting that
/// it is exactly what the two reads it stands for find: `find_refresh`, then
/// `get` of the family's handle.
async fn found_with_session(
    s: &dyn RefreshStore,
    hash: &TokenHash,
    what: &str,
) -> Option<(RefreshFamily, u64, Option<SessionRecord>)> {
    let together = s
        .find_refresh_with_session(hash)
        .await
        .expect("find_refresh_with_session")
        .map(|(l, session)| {
            (
                RefreshFamily::clone(&l.family),
                l.generation,
                session.map(|r| SessionRecord::clone(&r)),
            )
        });
    let apart = match lookup(s, hash).await {
        Some((family, generation)) => {
            let session = s.get(&family.handle).await.expect("get");
            Some((family, generation, session.map(|r| SessionRecord::clone(&r))))
        }
        None => None,
    };
    assert_eq!(
        together, apart,
        "{what}: find_refresh_with_session finds what find_refresh and then get find"
    );
    together
}

pub async fn store_find_refresh_with_session_matches_separate_reads<S: RefreshStore + EventStore>(
    store: Arc<S>,
) {
    let s = &*store;
    let now = T0.plus_millis(10 * HOUR);
    let (_, a) = session("alice", now.plus_millis(-MIN));
    let (_, mut b) = session("bob", now.plus_millis(-MIN));
    let (_, dead) = expired_session("carol", now);
    for r in [&a, &b, &dead] {
        insert(s, r).await;
    }

    assert_eq!(
        found_with_session(s, &refresh_token().hash(), "an unknown hash").await,
        None,
        "an unknown hash finds nothing"
    );

    // A rotated family: its consumed and its current token both find the
    // family and its session.
    let (a0, fa) = refresh_family(&a, a.created_at);
    create_family(s, &fa, &a0.hash(), &[]).await;
    let a1 = refresh_token();
    let fa = rotate_ok(s, &fa, &a1.hash(), b"sealed-a", a.created_at.plus_millis(SEC)).await;
    assert_eq!(
        found_with_session(s, &a0.hash(), "a consumed token").await,
        Some((fa.clone(), 0, Some(a.clone()))),
    );
    assert_eq!(
        found_with_session(s, &a1.hash(), "the current token").await,
        Some((fa.clone(), 1, Some(a.clone()))),
    );
    // A revoked family still finds its session.
    let (r0, mut fr) = refresh_family(&a, a.created_at);
    create_family(s, &fr, &r0.hash(), &[]).await;
    let revoked_at = a.created_at.plus_millis(2 * SEC);
    assert!(
        s.revoke_refresh_family(&fr.id, RevokeReason::Revoked, revoked_at, &[])
            .await
            .expect("revoke_refresh_family")
    );
    fr.revoked = Some(Revocation {
        at: revoked_at,
        reason: RevokeReason::Revoked,
    });
    assert_eq!(
        found_with_session(s, &r0.hash(), "a revoked family").await,
        Some((fr, 0, Some(a.clone()))),
    );

    // The session as stored now, not as the family was issued on: bob's
    // token was replaced after his family was created, and that shows.
    let (b0, fb) = refresh_family(&b, b.created_at);
    create_family(s, &fb, &b0.hash(), &[]).await;
    b.version += 1;
    b.token_hash = refresh_token().hash();
    update_ok(s, &b, &[]).await;
    let found = found_with_session(s, &b0.hash(), "a replaced session token").await;
    assert_eq!(found, Some((fb.clone(), 0, Some(b.clone()))));
    assert_ne!(fb.session_token_hash, b.token_hash);

    // A revoked session is still stored, and found as it is.
    let mut a_revoked = a.clone();
    a_revoked.version += 1;
    a_revoked.revoked = Some(Revocation {
        at: now,
        reason: RevokeReason::Revoked,
    });
    update_ok(s, &a_revoked, &[]).await;
    assert_eq!(
        found_with_session(s, &a1.hash(), "a revoked session").await,
        Some((fa.clone(), 1, Some(a_revoked.clone()))),
    );

    // Swept past its expiry, a session takes its families and tokens along:
    // nothing is found, neither token nor session.
    let (d0, fd) = refresh_family(&dead, dead.created_at);
    create_family(s, &fd, &d0.hash(), &[]).await;
    assert_eq!(
        found_with_session(s, &d0.hash(), "an expired session before the sweep").await,
        Some((fd, 0, Some(dead.clone()))),
        "expired but not yet swept: still stored"
    );
    assert_eq!(
        s.sweep(now, 100).await.expect("sweep"),
        1,
        "only carol's session expired"
    );
    assert_eq!(
        found_with_session(s, &d0.hash(), "a swept session").await,
        None,
        "a swept session's token finds nothing"
    );
    assert_eq!(
        found_with_session(s, &a1.hash(), "a live session after the sweep").await,
        Some((fa, 1, Some(a_revoked))),
    );
    assert_eq!(
        found_with_session(s, &b0.hash(), "a live session after the sweep").await,
        Some((fb, 0, Some(b))),
    );
}
