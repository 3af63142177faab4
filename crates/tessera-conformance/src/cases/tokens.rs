//! The store contract for stateless tokens: refresh-token families and
//! signing keys, method by method, and their compare-and-swaps under real
//! parallelism.
//!
//! These cases go straight to the store. Families are always created for a
//! stored session, as the token service does (a store may tie a family to
//! its session, e.g. with a foreign key).

use std::sync::Arc;

use tessera_core::{
    Binding, Event, EventKind, NewEvent, RefreshFamily, Revocation, RevokeReason, Rotation, SecretToken,
    SessionRecord, SessionStore, SigningAlg, SigningKeyRecord, StoreError, Timestamp, TokenHash, TokenKind,
};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::support::*;

const DAY: i64 = 24 * HOUR;

fn refresh_token() -> SecretToken {
    SecretToken::generate(TokenKind::Refresh)
}

/// What `hash` finds: the family and the generation the token was issued as.
async fn lookup(s: &dyn SessionStore, hash: &TokenHash) -> Option<(RefreshFamily, u64)> {
    s.find_refresh(hash)
        .await
        .expect("find_refresh")
        .map(|l| (RefreshFamily::clone(&l.family), l.generation))
}

/// The families of `handle`, by id (the contract leaves their order open).
async fn families_of(s: &dyn SessionStore, handle: &str) -> Vec<RefreshFamily> {
    let mut out: Vec<RefreshFamily> = s
        .refresh_families_of(handle)
        .await
        .expect("refresh_families_of")
        .iter()
        .map(|f| RefreshFamily::clone(f))
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn by_id(mut v: Vec<RefreshFamily>) -> Vec<RefreshFamily> {
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

async fn create_family(s: &dyn SessionStore, family: &RefreshFamily, first: &TokenHash, events: &[NewEvent]) {
    s.create_refresh_family(family, first, events)
        .await
        .unwrap_or_else(|e| panic!("create_refresh_family {}: {e}", family.id));
}

async fn rotate_ok(
    s: &dyn SessionStore,
    family: &RefreshFamily,
    successor: &TokenHash,
    sealed: &[u8],
    now: Timestamp,
) -> RefreshFamily {
    assert!(
        s.rotate_refresh(
            &Rotation::new(&family.id, family.generation, successor, now).sealed(sealed),
            &[]
        )
        .await
        .expect("rotate_refresh"),
        "rotation of {} from generation {} should swap",
        family.id,
        family.generation
    );
    RefreshFamily {
        generation: family.generation + 1,
        rotated_at: now,
        current_sealed: Some(sealed.to_vec()),
        ..family.clone()
    }
}

/// Everything the token methods can show about some sessions and hashes,
/// for "nothing was written" checks.
#[derive(Debug, PartialEq)]
struct TokenState {
    families: Vec<Vec<RefreshFamily>>,
    lookups: Vec<Option<(RefreshFamily, u64)>>,
    keys: Vec<SigningKeyRecord>,
    events: Vec<Event>,
}

async fn token_state(s: &dyn SessionStore, handles: &[&str], hashes: &[TokenHash]) -> TokenState {
    let mut families = Vec::new();
    for h in handles {
        families.push(families_of(s, h).await);
    }
    let mut lookups = Vec::new();
    for h in hashes {
        lookups.push(lookup(s, h).await);
    }
    TokenState {
        families,
        lookups,
        keys: s.signing_keys().await.expect("signing_keys"),
        events: all_events(s).await,
    }
}

/// The events appended after the first `skip`, without their ids.
async fn events_after(s: &dyn SessionStore, skip: usize) -> Vec<NewEvent> {
    all_events(s)
        .await
        .into_iter()
        .skip(skip)
        .map(|e| e.event)
        .collect()
}

pub async fn store_tokens_fresh_store_is_empty(store: Arc<dyn SessionStore>) {
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
    assert!(s.signing_keys().await.expect("signing_keys").is_empty());
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
        !s.delete_signing_key("kid-nonexistent")
            .await
            .expect("delete_signing_key")
    );
    assert!(
        s.find_refresh(&t.hash()).await.expect("find_refresh").is_none(),
        "a failed rotation records no successor"
    );
    assert!(all_events(s).await.is_empty(), "no-op calls append no events");
}

pub async fn store_refresh_family_round_trip(store: Arc<dyn SessionStore>) {
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

pub async fn store_refresh_family_duplicate_writes_nothing(store: Arc<dyn SessionStore>) {
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

pub async fn store_refresh_rotate_cas(store: Arc<dyn SessionStore>) {
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
pub async fn store_refresh_rotate_slides_the_session(store: Arc<dyn SessionStore>) {
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

pub async fn store_refresh_rotate_duplicate_successor_writes_nothing(store: Arc<dyn SessionStore>) {
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
pub async fn store_clear_sealed_successors_in_batches(store: Arc<dyn SessionStore>) {
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

pub async fn store_refresh_revoke_family(store: Arc<dyn SessionStore>) {
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

pub async fn store_refresh_families_of(store: Arc<dyn SessionStore>) {
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

pub async fn store_sweep_deletes_refresh_families(store: Arc<dyn SessionStore>) {
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
    s: &dyn SessionStore,
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

pub async fn store_find_refresh_with_session_matches_separate_reads(store: Arc<dyn SessionStore>) {
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

pub async fn store_signing_keys(store: Arc<dyn SessionStore>) {
    let s = &*store;
    let keys = move || async move { s.signing_keys().await.expect("signing_keys") };
    let insert_key = move |k: SigningKeyRecord, if_newest: Option<&'static str>| async move {
        s.insert_signing_key(&k, if_newest)
            .await
            .unwrap_or_else(|e| panic!("insert_signing_key {} if newest {if_newest:?}: {e}", k.kid))
    };
    // Kids sort against activation order, so a store that orders by kid
    // (or by insertion) is caught.
    let mut z = signing_key("kid-z", T0, T0.plus_millis(1));
    z.private_sealed = vec![0, 1, 0, 255, 254, 0];
    let mut m = signing_key("kid-m", T0.plus_millis(2), T0.plus_millis(DAY + 3));
    m.alg = SigningAlg::ES256;
    m.public_jwk = r#"{"kty":"EC","crv":"P-256","kid":"kid-m","note":"ünï \"q\" 'x'"}"#.to_owned();
    let mut c = signing_key("kid-c", T0.plus_millis(4), T0.plus_millis(2 * DAY));
    c.alg = SigningAlg::RS256;
    c.private_sealed = vec![42; 2048];

    assert!(
        insert_key(z.clone(), None).await,
        "the first key goes in with if_newest None"
    );
    assert_eq!(keys().await, vec![z.clone()], "every field round-trips");
    assert!(
        !insert_key(m.clone(), None).await,
        "None means: only into an empty store"
    );
    assert!(
        !insert_key(m.clone(), Some("kid-unknown")).await,
        "an unknown kid is not the newest"
    );
    assert_eq!(keys().await, vec![z.clone()], "refused inserts write nothing");

    assert!(insert_key(c.clone(), Some("kid-z")).await, "CAS on the newest");
    assert!(
        !insert_key(signing_key("kid-x", T0, T0.plus_millis(3 * DAY)), Some("kid-z")).await,
        "kid-z is no longer the newest"
    );
    // Inserted last but activating earlier: kid-c stays the newest.
    assert!(insert_key(m.clone(), Some("kid-c")).await);
    assert_eq!(
        keys().await,
        vec![z.clone(), m.clone(), c.clone()],
        "listed by activates_at, not by kid or insertion order"
    );
    assert!(
        !insert_key(signing_key("kid-y", T0, T0.plus_millis(3 * DAY)), Some("kid-m")).await,
        "the last inserted key is not the newest; the latest activation is"
    );

    // Same activates_at: the greater kid is the newer.
    let d = signing_key("kid-d", T0, c.activates_at);
    assert!(insert_key(d.clone(), Some("kid-c")).await);
    let a = signing_key("kid-a", T0, c.activates_at);
    assert!(
        !insert_key(a.clone(), Some("kid-c")).await,
        "kid-d > kid-c at the same activates_at"
    );
    assert!(insert_key(a.clone(), Some("kid-d")).await);
    assert!(
        !insert_key(signing_key("kid-b", T0, T0), Some("kid-a")).await,
        "kid-a, inserted last, sorts below kid-d"
    );
    let listed = keys().await;
    assert!(
        listed.windows(2).all(|w| w[0].activates_at <= w[1].activates_at),
        "oldest activates_at first: {:?}",
        listed.iter().map(|k| &k.kid).collect::<Vec<_>>()
    );
    let mut by_key = listed.clone();
    by_key.sort_by(|x, y| (x.activates_at, &x.kid).cmp(&(y.activates_at, &y.kid)));
    assert_eq!(
        by_key,
        vec![z.clone(), m.clone(), a.clone(), c.clone(), d.clone()],
        "exactly the accepted keys"
    );

    // A duplicate kid is never inserted.
    let mut dup = signing_key("kid-d", T0, T0.plus_millis(9 * DAY));
    dup.private_sealed = b"other".to_vec();
    let r = s.insert_signing_key(&dup, Some("kid-d")).await;
    assert!(
        matches!(r, Err(StoreError::Duplicate)),
        "a duplicate kid that passes the CAS is StoreError::Duplicate, got {r:?}"
    );
    let r = s.insert_signing_key(&dup, Some("kid-z")).await;
    assert!(
        !matches!(r, Ok(true)),
        "a duplicate kid failing the CAS is not inserted, got {r:?}"
    );
    assert_eq!(keys().await, listed, "duplicates write nothing");

    // Deletion.
    assert!(s.delete_signing_key("kid-z").await.expect("delete_signing_key"));
    assert!(
        !s.delete_signing_key("kid-z").await.expect("delete_signing_key"),
        "already deleted"
    );
    assert!(
        !s.delete_signing_key("kid-nonexistent")
            .await
            .expect("delete_signing_key")
    );
    // Deleting the newest makes the next one the newest.
    assert!(s.delete_signing_key("kid-d").await.expect("delete_signing_key"));
    let e = signing_key("kid-e", T0, T0.plus_millis(5 * DAY));
    assert!(
        !insert_key(e.clone(), Some("kid-d")).await,
        "a deleted key is not the newest"
    );
    assert!(insert_key(e.clone(), Some("kid-c")).await);
    let mut rest = keys().await;
    rest.sort_by(|x, y| (x.activates_at, &x.kid).cmp(&(y.activates_at, &y.kid)));
    assert_eq!(rest, vec![m, a, c, e]);
    assert!(all_events(s).await.is_empty(), "key operations log no events");
}

pub async fn concurrent_refresh_rotation_exactly_one_wins(store: Arc<dyn SessionStore>) {
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

pub async fn concurrent_key_rotation_one_insert(store: Arc<dyn SessionStore>) {
    const TASKS: usize = 8;
    const ROUNDS: usize = 10;
    let s = &*store;
    let mut newest: Option<String> = None;
    for round in 0..ROUNDS {
        let created = T0.plus_millis(round as i64 * HOUR);
        let barrier = Arc::new(Barrier::new(TASKS));
        let mut tasks = JoinSet::new();
        for i in 0..TASKS {
            let (store, barrier, newest) = (store.clone(), barrier.clone(), newest.clone());
            tasks.spawn(async move {
                let mut key = signing_key(&format!("kid-{round:02}-{i}"), created, created.plus_millis(DAY));
                key.public_jwk = format!(r#"{{"kid":"{}","round":{round}}}"#, key.kid);
                barrier.wait().await;
                let r = store.insert_signing_key(&key, newest.as_deref()).await;
                (key, r)
            });
        }
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for (key, r) in join_all(tasks).await {
            match r {
                Ok(true) => winners.push(key),
                Ok(false) => losers.push(key.kid),
                Err(e) => panic!("round {round}: insert of {} failed: {e}", key.kid),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one of {TASKS} inserts with if_newest {newest:?} wins: {:?}",
            winners.iter().map(|k| &k.kid).collect::<Vec<_>>()
        );
        let listed = s.signing_keys().await.expect("signing_keys");
        assert_eq!(listed.len(), round + 1, "round {round}: one key per rotation");
        assert_eq!(
            listed.last(),
            Some(&winners[0]),
            "round {round}: the winner is the newest"
        );
        assert!(
            listed.iter().all(|k| !losers.contains(&k.kid)),
            "round {round}: no loser was stored"
        );
        newest = Some(winners[0].kid.clone());
    }
}

pub async fn store_signing_key_revoke(store: Arc<dyn SessionStore>) {
    let s = &*store;
    let a = signing_key("kid-a", T0, T0);
    let b = signing_key("kid-b", T0.plus_millis(1), T0.plus_millis(DAY));
    assert!(s.insert_signing_key(&a, None).await.expect("insert_signing_key"));
    assert!(
        s.insert_signing_key(&b, Some("kid-a"))
            .await
            .expect("insert_signing_key")
    );
    let at = T0.plus_millis(5 * MIN);
    assert!(
        !s.revoke_signing_key("kid-none", at)
            .await
            .expect("revoke_signing_key"),
        "unknown kid"
    );
    // Revoking the newest key: marked with its time, private part erased,
    // everything else kept.
    assert!(
        s.revoke_signing_key("kid-b", at)
            .await
            .expect("revoke_signing_key")
    );
    let keys = s.signing_keys().await.expect("signing_keys");
    let mut want_b = b.clone();
    want_b.revoked_at = Some(at);
    want_b.private_sealed = Vec::new();
    assert_eq!(keys, vec![a.clone(), want_b.clone()]);
    assert!(
        !s.revoke_signing_key("kid-b", at.plus_millis(1))
            .await
            .expect("revoke_signing_key"),
        "already revoked: nothing changes"
    );
    assert_eq!(
        s.signing_keys().await.expect("signing_keys"),
        vec![a.clone(), want_b]
    );
    // The revoked key still counts as the newest for the compare-and-set.
    let c = signing_key("kid-c", T0.plus_millis(2), T0.plus_millis(2 * DAY));
    assert!(
        !s.insert_signing_key(&c, Some("kid-a"))
            .await
            .expect("insert_signing_key")
    );
    assert!(
        s.insert_signing_key(&c, Some("kid-b"))
            .await
            .expect("insert_signing_key")
    );
    // A record inserted as revoked keeps its mark; deleting a revoked key works.
    let mut d = signing_key("kid-d", T0.plus_millis(3), T0.plus_millis(3 * DAY));
    d.revoked_at = Some(at);
    d.private_sealed = Vec::new();
    assert!(
        s.insert_signing_key(&d, Some("kid-c"))
            .await
            .expect("insert_signing_key")
    );
    assert_eq!(s.signing_keys().await.expect("signing_keys")[3], d);
    assert!(s.delete_signing_key("kid-b").await.expect("delete_signing_key"));
    let kids: Vec<String> = s
        .signing_keys()
        .await
        .expect("signing_keys")
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, vec!["kid-a", "kid-c", "kid-d"]);
}
