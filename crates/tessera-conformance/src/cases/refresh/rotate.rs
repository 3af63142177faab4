//! Rotation: the compare-and-swap on the generation, the session slide in
//! the same step, and clearing the sealed successors after the grace window.

use std::sync::Arc;

use tessera_core::{
    EventKind, RefreshFamily, RefreshStore, Revocation, RevokeReason, Rotation, StoreError, Timestamp,
    TokenHash,
};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::*;
use crate::support::*;

pub async fn store_refresh_rotate_cas<S: RefreshStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (_, a) = session("alice", T0);
    insert(s, &a).await;
    let (t0, f) = refresh_family(&a, T0);
    create_family(s, &f, &t0.hash(), &[]).await;
    let (t1, t2, t3) = (refresh_token(), refresh_token(), refresh_token());
    let hashes = [t0.hash(), t1.hash(), t2.hash(), t3.hash()];
    let at1 = T0.plus_millis(MIN + 1);
    let sealed1 = vec![0u8, 1, 2, 255, 0];

    // Wrong generations: no swap, nothing written.
    let before = token_state(s, &[&a.handle], &hashes).await;
    for g in [1, 2, u64::MAX] {
        let swapped = s
            .rotate_refresh(
                &Rotation::new(&f.id, g, &t1.hash(), at1).sealed(&sealed1),
                &[refreshed_event(&a, at1)],
            )
            .await
            .expect("rotate_refresh");
        assert!(!swapped, "rotation from generation {g} of a family at 0");
        assert_eq!(
            token_state(s, &[&a.handle], &hashes).await,
            before,
            "a failed rotation (expected {g}) writes nothing"
        );
    }

    // The right generation swaps.
    let skip = all_events(s).await.len();
    let ev1 = refreshed_event(&a, at1);
    assert!(
        s.rotate_refresh(
            &Rotation::new(&f.id, 0, &t1.hash(), at1).sealed(&sealed1),
            std::slice::from_ref(&ev1)
        )
        .await
        .expect("rotate_refresh"),
        "rotation from the current generation"
    );
    let want1 = RefreshFamily {
        generation: 1,
        rotated_at: at1,
        current_sealed: Some(sealed1.clone()),
        ..f.clone()
    };
    assert_eq!(
        lookup(s, &t1.hash()).await,
        Some((want1.clone(), 1)),
        "the successor is generation 1"
    );
    assert_eq!(
        lookup(s, &t0.hash()).await,
        Some((want1.clone(), 0)),
        "the consumed token still finds its family, as generation 0"
    );
    assert_eq!(families_of(s, &a.handle).await, vec![want1.clone()]);
    assert_eq!(events_after(s, skip).await, vec![ev1], "the rotation's events");

    // Generation 0 is gone: a second rotation from it loses.
    let before = token_state(s, &[&a.handle], &hashes).await;
    assert!(
        !s.rotate_refresh(
            &Rotation::new(&f.id, 0, &t2.hash(), at1.plus_millis(1)).sealed(b"late"),
            &[refreshed_event(&a, at1)]
        )
        .await
        .expect("rotate_refresh"),
        "a stale rotation from generation 0"
    );
    assert_eq!(
        token_state(s, &[&a.handle], &hashes).await,
        before,
        "a stale rotation writes nothing"
    );

    // And the chain goes on from 1.
    let at2 = at1.plus_millis(MIN);
    let want2 = rotate_ok(s, &want1, &t2.hash(), b"sealed-2", at2).await;
    for (t, g) in [(&t0, 0), (&t1, 1), (&t2, 2)] {
        assert_eq!(
            lookup(s, &t.hash()).await,
            Some((want2.clone(), g)),
            "every token of the chain keeps its generation and sees the family now"
        );
    }
    assert_eq!(want2.generation, 2);

    assert!(
        !s.rotate_refresh(
            &Rotation::new("rtf_nonexistent", 2, &t3.hash(), at2).sealed(b"x"),
            &[]
        )
        .await
        .expect("rotate_refresh"),
        "rotation of an unknown family"
    );

    // A revoked family does not rotate, even from its current generation.
    let at3 = at2.plus_millis(MIN);
    assert!(
        s.revoke_refresh_family(&f.id, RevokeReason::Revoked, at3, &[])
            .await
            .expect("revoke_refresh_family")
    );
    let before = token_state(s, &[&a.handle], &hashes).await;
    assert!(
        !s.rotate_refresh(
            &Rotation::new(&f.id, 2, &t3.hash(), at3).sealed(b"sealed-3"),
            &[refreshed_event(&a, at3)]
        )
        .await
        .expect("rotate_refresh"),
        "rotation of a revoked family"
    );
    assert_eq!(
        token_state(s, &[&a.handle], &hashes).await,
        before,
        "a refused rotation of a revoked family writes nothing"
    );
    assert!(lookup(s, &t3.hash()).await.is_none());
}

/// A rotation may carry the session's idle slide (`Rotation::touch`): it is
/// applied in the same step by exactly the rules of `touch` (only for the
/// session's current token hash and while it is not revoked; later values
/// win; `version` unchanged), it does not decide the rotation, and a
/// rotation that does not swap slides nothing either.
pub async fn store_refresh_rotate_binds_an_unbound_family_once<S: RefreshStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (_, a) = session("alice", T0);
    insert(s, &a).await;
    let (t0, f) = refresh_family(&a, T0);
    assert_eq!(f.binding, None);
    create_family(s, &f, &t0.hash(), &[]).await;
    let (t1, t2) = (refresh_token(), refresh_token());
    let (h1, h2) = (t1.hash(), t2.hash());
    let k1 = tessera_core::Binding::Dpop {
        jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into(),
    };
    let k2 = tessera_core::Binding::Mtls {
        x5t_s256: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into(),
    };
    let at1 = T0.plus_millis(MIN + 1);
    let mut r = Rotation::new(&f.id, 0, &h1, at1);
    r.bind = Some(&k1);
    assert!(s.rotate_refresh(&r, &[]).await.expect("rotate_refresh"));
    let (got, g) = lookup(s, &t1.hash()).await.expect("the successor");
    assert_eq!((got.binding.as_ref(), g), (Some(&k1), 1), "bound by the rotation");
    // Once bound, a later rotation's binding does not replace it.
    let mut r = Rotation::new(&f.id, 1, &h2, at1.plus_millis(1));
    r.bind = Some(&k2);
    assert!(s.rotate_refresh(&r, &[]).await.expect("rotate_refresh"));
    let (got, _) = lookup(s, &t2.hash()).await.expect("the successor");
    assert_eq!(got.binding, Some(k1.clone()), "a binding never changes");
    assert_eq!(families_of(s, &a.handle).await[0].binding, Some(k1));
}

pub async fn store_refresh_rotate_slides_the_session<S: RefreshStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (_, a) = session("alice", T0);
    insert(s, &a).await;
    let (t0, f) = refresh_family(&a, T0);
    create_family(s, &f, &t0.hash(), &[]).await;
    let slide = |at: Timestamp, idle: Timestamp| tessera_core::Touch {
        handle: &a.handle,
        token_hash: &a.token_hash,
        last_seen_at: at,
        idle_expires_at: idle,
    };

    // The slide goes with the swap.
    let (t1, at1) = (refresh_token(), T0.plus_millis(MIN));
    let t1_hash = t1.hash();
    let idle1 = at1.plus_millis(30 * MIN);
    let r = Rotation::new(&f.id, 0, &t1_hash, at1).touching(slide(at1, idle1));
    assert!(s.rotate_refresh(&r, &[]).await.expect("rotate_refresh"));
    let got = get(s, &a.handle).await;
    assert_eq!((got.last_seen_at, got.idle_expires_at), (at1, idle1));
    assert_eq!(got.version, a.version, "a slide does not change the version");
    assert_eq!(lookup(s, &t1_hash).await.map(|(_, g)| g), Some(1));

    // A stale rotation (generation 0 again) writes nothing, slide included.
    let at2 = at1.plus_millis(MIN);
    let late_hash = refresh_token().hash();
    let r = Rotation::new(&f.id, 0, &late_hash, at2).touching(slide(at2, at2.plus_millis(30 * MIN)));
    assert!(!s.rotate_refresh(&r, &[]).await.expect("rotate_refresh"));
    let got = get(s, &a.handle).await;
    assert_eq!((got.last_seen_at, got.idle_expires_at), (at1, idle1));

    // Earlier values than the stored ones never move the window back.
    let t2_hash = refresh_token().hash();
    let r = Rotation::new(&f.id, 1, &t2_hash, at2).touching(slide(T0, T0.plus_millis(MIN)));
    assert!(s.rotate_refresh(&r, &[]).await.expect("rotate_refresh"));
    let got = get(s, &a.handle).await;
    assert_eq!((got.last_seen_at, got.idle_expires_at), (at1, idle1));

    // Another token hash (the session was re-keyed) or a revoked session:
    // the rotation happens, the session is left as it is.
    let mut rekeyed = get(s, &a.handle).await;
    rekeyed.version += 1;
    rekeyed.token_hash = TokenHash::of_secret(b"another session token");
    update_ok(s, &rekeyed, &[]).await;
    let (t3_hash, at3) = (refresh_token().hash(), at2.plus_millis(MIN));
    let r = Rotation::new(&f.id, 2, &t3_hash, at3).touching(slide(at3, at3.plus_millis(30 * MIN)));
    assert!(s.rotate_refresh(&r, &[]).await.expect("rotate_refresh"));
    assert_eq!(get(s, &a.handle).await, rekeyed, "another token hash: no slide");

    let mut revoked = rekeyed.clone();
    revoked.version += 1;
    revoked.revoked = Some(Revocation {
        at: at3,
        reason: RevokeReason::Logout,
    });
    update_ok(s, &revoked, &[]).await;
    let (t4_hash, at4) = (refresh_token().hash(), at3.plus_millis(MIN));
    let r = Rotation::new(&f.id, 3, &t4_hash, at4).touching(tessera_core::Touch {
        token_hash: &rekeyed.token_hash,
        ..slide(at4, at4.plus_millis(30 * MIN))
    });
    assert!(s.rotate_refresh(&r, &[]).await.expect("rotate_refresh"));
    assert_eq!(get(s, &a.handle).await, revoked, "a revoked session: no slide");
}

pub async fn store_refresh_rotate_duplicate_successor_writes_nothing<S: RefreshStore + EventStore>(
    store: Arc<S>,
) {
    let s = &*store;
    let (_, a) = session("alice", T0);
    let (_, b) = session("bob", T0);
    insert(s, &a).await;
    insert(s, &b).await;
    let (t0, f) = refresh_family(&a, T0);
    create_family(s, &f, &t0.hash(), &[]).await;
    let (u0, g) = refresh_family(&b, T0);
    create_family(s, &g, &u0.hash(), &[]).await;
    let t1 = refresh_token();
    let f1 = rotate_ok(s, &f, &t1.hash(), b"sealed-1", T0.plus_millis(SEC)).await;

    let t2 = refresh_token();
    let hashes = [t0.hash(), t1.hash(), u0.hash(), t2.hash()];
    let before = token_state(s, &[&a.handle, &b.handle], &hashes).await;
    let at = T0.plus_millis(MIN);
    let cases = [
        ("its own current token", t1.hash()),
        ("its own consumed token", t0.hash()),
        ("another family's token", u0.hash()),
    ];
    for (what, dup) in cases {
        let r = s
            .rotate_refresh(
                &Rotation::new(&f.id, 1, &dup, at).sealed(b"dup"),
                &[refreshed_event(&a, at)],
            )
            .await;
        assert!(
            matches!(r, Err(StoreError::Duplicate)),
            "a successor equal to {what} must be StoreError::Duplicate, got {r:?}"
        );
        assert_eq!(
            token_state(s, &[&a.handle, &b.handle], &hashes).await,
            before,
            "a duplicate successor ({what}) writes nothing: no swap, no hash, no event"
        );
    }
    // The failed attempts did not use up generation 1.
    let f2 = rotate_ok(s, &f1, &t2.hash(), b"sealed-2", at).await;
    assert_eq!(lookup(s, &t2.hash()).await, Some((f2, 2)));
    assert_eq!(
        lookup(s, &u0.hash()).await,
        Some((g, 0)),
        "the other family is untouched"
    );
}

/// `clear_sealed_successors` clears `current_sealed` of the families
/// rotated strictly before the bound, in batches, and nothing else: no
/// generation, rotation time, token or event changes, and families rotated
/// at or after the bound keep theirs.
pub async fn store_clear_sealed_successors_in_batches<S: RefreshStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (_, a) = session("alice", T0);
    insert(s, &a).await;
    let bound = T0.plus_millis(10 * SEC);
    let mut kept = Vec::new();
    let mut cleared = Vec::new();
    let mut hashes = Vec::new();
    // Rotated 3 s, 2 s and 1 ms before the bound, at it and after it.
    for (i, at) in [
        bound.plus_millis(-3 * SEC),
        bound.plus_millis(-2 * SEC),
        bound.plus_millis(-1),
        bound,
        bound.plus_millis(SEC),
    ]
    .into_iter()
    .enumerate()
    {
        let (t0, f) = refresh_family(&a, T0);
        create_family(s, &f, &t0.hash(), &[]).await;
        let t1 = refresh_token();
        let f = rotate_ok(s, &f, &t1.hash(), format!("sealed-{i}").as_bytes(), at).await;
        hashes.extend([t0.hash(), t1.hash()]);
        if at < bound {
            cleared.push(f);
        } else {
            kept.push(f);
        }
    }
    // One rotated long before, but without a sealed successor (grace 0).
    let (t0, f) = refresh_family(&a, T0);
    create_family(s, &f, &t0.hash(), &[]).await;
    let t1 = refresh_token();
    let t1_hash = t1.hash();
    assert!(
        s.rotate_refresh(&Rotation::new(&f.id, 0, &t1_hash, T0), &[])
            .await
            .expect("rotate_refresh")
    );
    let unsealed = RefreshFamily {
        generation: 1,
        rotated_at: T0,
        current_sealed: None,
        ..f
    };
    let events_before = all_events(s).await;

    assert_eq!(s.clear_sealed_successors(bound, 0).await.expect("clear"), 0);
    assert_eq!(s.clear_sealed_successors(bound, 2).await.expect("clear"), 2);
    assert_eq!(s.clear_sealed_successors(bound, 2).await.expect("clear"), 1);
    assert_eq!(s.clear_sealed_successors(bound, 2).await.expect("clear"), 0);

    let mut want: Vec<RefreshFamily> = cleared
        .into_iter()
        .map(|f| RefreshFamily {
            current_sealed: None,
            ..f
        })
        .chain(kept)
        .collect();
    want.push(unsealed);
    assert_eq!(families_of(s, &a.handle).await, by_id(want.clone()));
    for h in &hashes {
        assert!(lookup(s, h).await.is_some(), "every token still finds its family");
    }
    assert_eq!(all_events(s).await, events_before, "no events");
}

pub async fn concurrent_refresh_rotation_exactly_one_wins<S: RefreshStore + EventStore>(store: Arc<S>) {
    const TASKS: usize = 16;
    const ROUNDS: usize = 20;
    let s = &*store;
    for round in 0..ROUNDS {
        let (_, a) = session("alice", T0);
        insert(s, &a).await;
        let (t0, f) = refresh_family(&a, T0);
        create_family(s, &f, &t0.hash(), &[]).await;
        // Two races per round: from generation 0, then from 1.
        for generation in 0..2u64 {
            let at = T0.plus_millis((generation as i64 + 1) * SEC);
            let successors: Vec<TokenHash> = (0..TASKS).map(|_| refresh_token().hash()).collect();
            let barrier = Arc::new(Barrier::new(TASKS));
            let mut tasks = JoinSet::new();
            for (i, succ) in successors.iter().enumerate() {
                let (store, barrier, a, fid, succ) =
                    (store.clone(), barrier.clone(), a.clone(), f.id.clone(), *succ);
                tasks.spawn(async move {
                    let sealed = format!("sealed-{round}-{generation}-{i}").into_bytes();
                    barrier.wait().await;
                    let r = store
                        .rotate_refresh(
                            &Rotation::new(&fid, generation, &succ, at).sealed(&sealed),
                            &[refreshed_event(&a, at)],
                        )
                        .await;
                    (i, r)
                });
            }
            let mut winners = Vec::new();
            for (i, r) in join_all(tasks).await {
                match r {
                    Ok(true) => winners.push(i),
                    Ok(false) => {}
                    Err(e) => panic!("round {round}, generation {generation}: rotation {i} failed: {e}"),
                }
            }
            assert_eq!(
                winners.len(),
                1,
                "round {round}: exactly one of {TASKS} rotations from generation {generation} wins: {winners:?}"
            );
            let w = winners[0];
            let (family, g) = lookup(s, &t0.hash())
                .await
                .expect("the first token finds its family");
            assert_eq!(g, 0);
            assert_eq!(
                family.generation,
                generation + 1,
                "round {round}: one rotation, not several"
            );
            assert_eq!(
                family.current_sealed,
                Some(format!("sealed-{round}-{generation}-{w}").into_bytes()),
                "round {round}: the family holds the winner's sealed token"
            );
            for (i, succ) in successors.iter().enumerate() {
                let found = lookup(s, succ).await.map(|(_, g)| g);
                let want = (i == w).then_some(generation + 1);
                assert_eq!(
                    found, want,
                    "round {round}: only the winner's successor is recorded (task {i}, winner {w})"
                );
            }
            let refreshed = events_of(s, &a.handle)
                .await
                .iter()
                .filter(|e| e.event.kind == EventKind::Refreshed)
                .count();
            assert_eq!(
                refreshed as u64,
                generation + 1,
                "round {round}: only the winner's events are written"
            );
        }
    }
}
