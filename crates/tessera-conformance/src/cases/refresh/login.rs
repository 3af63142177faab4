//! A login that hands out a refresh token:
//! [`RefreshStore::create_with_refresh_family`] stores the session and its
//! family in one step, both or neither.

use std::sync::Arc;

use tessera_core::{
    CreateOptions, CreateOutcome, EventKind, NewEvent, RefreshStore, SessionRecord, StoreError,
};

use super::*;
use crate::support::*;

/// Everything a login could have left of `rec` and its family's first
/// token: the session by handle and by token, the subject's list, the
/// family's lookup and the session's families.
async fn login_traces<S: RefreshStore + EventStore>(
    s: &S,
    rec: &SessionRecord,
    first: &TokenHash,
) -> (bool, bool, bool, bool, usize) {
    (
        s.get(&rec.handle).await.expect("get").is_some(),
        s.get_by_token(&rec.token_hash)
            .await
            .expect("get_by_token")
            .is_some(),
        s.list_by_subject(&rec.subject)
            .await
            .expect("list_by_subject")
            .iter()
            .any(|r| r.handle == rec.handle),
        lookup(s, first).await.is_some(),
        families_of(s, &rec.handle).await.len(),
    )
}

pub async fn store_create_with_refresh_family_stores_both<S: RefreshStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (_, older) = session("alice", T0);
    insert(s, &older).await;
    let now = T0.plus_millis(SEC);
    let (_, rec) = session("alice", now);
    let (first, family) = refresh_family(&rec, now);
    let opts = CreateOptions {
        max_per_subject: Some(1),
        now,
        ..CreateOptions::default()
    };
    let skip = all_events(s).await.len();
    let out = s
        .create_with_refresh_family(&rec, &opts, &[created_event(&rec)], &family, &first.hash())
        .await
        .expect("create_with_refresh_family");
    // The create's own effects are those of `create`: here the limit.
    assert_eq!(
        out,
        CreateOutcome::Created {
            evicted: vec![older.handle.clone()]
        }
    );
    assert_eq!(get(s, &rec.handle).await, rec);
    assert!(
        get(s, &older.handle).await.revoked.is_some(),
        "the limit evicted the older session"
    );
    assert_eq!(
        lookup(s, &first.hash()).await,
        Some((family.clone(), 0)),
        "the family is found by its first token"
    );
    assert_eq!(families_of(s, &rec.handle).await, vec![family.clone()]);
    let (l, with) = s
        .find_refresh_with_session(&first.hash())
        .await
        .expect("find_refresh_with_session")
        .expect("the family and its session");
    assert_eq!(*l.family, family);
    assert_eq!(with.as_deref(), Some(&rec));
    let kinds: Vec<_> = events_after(s, skip).await.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![EventKind::Created, EventKind::Revoked],
        "the session's events and the eviction's, nothing for the family"
    );

    // The family goes with its session's sweep, as one created apart does.
    let later = rec.expires_at().plus_millis(1);
    s.sweep(later, 100).await.expect("sweep");
    assert_eq!(
        login_traces(s, &rec, &first.hash()).await,
        (false, false, false, false, 0)
    );
}

pub async fn store_create_with_refresh_family_writes_nothing_when_either_fails<
    S: RefreshStore + EventStore,
>(
    store: Arc<S>,
) {
    let s = &*store;
    let (_, a) = session("alice", T0);
    insert(s, &a).await;
    let (taken, f) = refresh_family(&a, T0);
    create_family(s, &f, &taken.hash(), &[]).await;
    let now = T0.plus_millis(MIN);
    let none = (false, false, false, false, 0);

    // A taken family id, or a taken first token: Duplicate, and not even
    // the session is stored.
    let (_, rec) = session("bob", now);
    let (first, mut same_id) = refresh_family(&rec, now);
    same_id.id = f.id.clone();
    let (_, other) = refresh_family(&rec, now);
    let opts = CreateOptions {
        now,
        ..CreateOptions::default()
    };
    for (what, family, first) in [
        ("family id", &same_id, first.hash()),
        ("first token", &other, taken.hash()),
    ] {
        let before = all_events(s).await;
        let r = s
            .create_with_refresh_family(&rec, &opts, &[created_event(&rec)], family, &first)
            .await;
        assert!(
            matches!(r, Err(StoreError::Duplicate)),
            "a taken {what} must be StoreError::Duplicate, got {r:?}"
        );
        assert_eq!(
            login_traces(s, &rec, &refresh_token().hash()).await,
            none,
            "a taken {what} must leave no session"
        );
        assert_eq!(all_events(s).await, before, "a taken {what} must append no event");
    }
    assert_eq!(
        lookup(s, &taken.hash()).await,
        Some((f.clone(), 0)),
        "the other family is untouched"
    );

    // A taken session handle: Duplicate, and no family is stored.
    let (_, mut dup) = session("bob", now);
    dup.handle = a.handle.clone();
    let (first, family) = refresh_family(&dup, now);
    let r = s
        .create_with_refresh_family(&dup, &opts, &[created_event(&dup)], &family, &first.hash())
        .await;
    assert!(matches!(r, Err(StoreError::Duplicate)), "got {r:?}");
    assert!(
        lookup(s, &first.hash()).await.is_none(),
        "a duplicate session stores no family"
    );
    assert_eq!(families_of(s, &a.handle).await, vec![f.clone()]);

    // `replace` that no longer matches: Conflict, and neither is stored.
    let (_, rec) = session("alice", now);
    let (first, family) = refresh_family(&rec, now);
    let stale = CreateOptions {
        replace: Some((a.handle.clone(), a.version + 1)),
        now,
        ..CreateOptions::default()
    };
    let before = all_events(s).await;
    let r = s
        .create_with_refresh_family(&rec, &stale, &[created_event(&rec)], &family, &first.hash())
        .await;
    assert_eq!(r.expect("a conflict is an outcome"), CreateOutcome::Conflict);
    assert_eq!(
        login_traces(s, &rec, &first.hash()).await,
        none,
        "a conflict stores neither"
    );
    assert_eq!(all_events(s).await, before, "a conflict appends no event");
    assert!(
        get(s, &a.handle).await.revoked.is_none(),
        "the session to replace stays"
    );

    // And with `replace` matching, the previous session ends in the step.
    let current = CreateOptions {
        replace: Some((a.handle.clone(), a.version)),
        now,
        ..CreateOptions::default()
    };
    let r = s
        .create_with_refresh_family(&rec, &current, &[created_event(&rec)], &family, &first.hash())
        .await;
    assert_eq!(r.expect("create"), CreateOutcome::Created { evicted: vec![] });
    assert!(get(s, &a.handle).await.revoked.is_some(), "replaced");
    assert_eq!(
        login_traces(s, &rec, &first.hash()).await,
        (true, true, true, true, 1)
    );
}

async fn assert_unchanged<S: RefreshStore + EventStore>(
    s: &S,
    a: &SessionRecord,
    old: &RefreshFamily,
    what: &str,
) {
    assert_eq!(&get(s, &a.handle).await, a, "{what}: the session is unchanged");
    assert_eq!(
        families_of(s, &a.handle).await,
        vec![old.clone()],
        "{what}: no new family"
    );
}

pub async fn store_update_with_refresh_family_stores_both_or_neither<S: RefreshStore + EventStore>(
    store: Arc<S>,
) {
    let s = &*store;
    let (_, a) = session("alice", T0);
    let (_, b) = session("bob", T0);
    insert(s, &a).await;
    insert(s, &b).await;
    let (taken, old) = refresh_family(&a, T0);
    create_family(s, &old, &taken.hash(), &[]).await;
    let now = T0.plus_millis(MIN);

    // The step-up: a new token and level under the same handle.
    let fresh_token = refresh_token();
    let mut next = a.clone();
    next.version += 1;
    next.token_hash = refresh_token().hash();
    next.auth.level = 2;
    next.auth.time = now;
    let events = [NewEvent::new(EventKind::Elevated, &next, now)];
    let (first, family) = refresh_family(&next, now);

    // Lost compare-and-swap: false, and no family.
    let before = all_events(s).await;
    let r = s
        .update_with_refresh_family(&next, a.version + 5, &events, &family, &first.hash())
        .await;
    assert!(
        !r.expect("a lost swap is an outcome"),
        "a stale version does not swap"
    );
    assert!(
        lookup(s, &first.hash()).await.is_none(),
        "a lost swap stores no family"
    );
    assert_unchanged(s, &a, &old, "a lost swap").await;
    assert_eq!(all_events(s).await, before, "a lost swap appends no event");

    // A taken family id or first token: Duplicate, and no swap.
    let mut same_id = family.clone();
    same_id.id = old.id.clone();
    for (what, fam, first) in [
        ("family id", &same_id, fresh_token.hash()),
        ("first token", &family, taken.hash()),
    ] {
        let r = s
            .update_with_refresh_family(&next, a.version, &events, fam, &first)
            .await;
        assert!(
            matches!(r, Err(StoreError::Duplicate)),
            "a taken {what} must be StoreError::Duplicate, got {r:?}"
        );
        assert_unchanged(s, &a, &old, "a taken family").await;
        assert_eq!(all_events(s).await, before, "a taken {what} appends no event");
    }

    // A taken session token: Duplicate, and no family.
    let mut clash = next.clone();
    clash.token_hash = b.token_hash;
    let r = s
        .update_with_refresh_family(&clash, a.version, &events, &family, &first.hash())
        .await;
    assert!(matches!(r, Err(StoreError::Duplicate)), "got {r:?}");
    assert!(
        lookup(s, &first.hash()).await.is_none(),
        "a taken token stores no family"
    );
    assert_unchanged(s, &a, &old, "a taken session token").await;

    // Both, in one step.
    let r = s
        .update_with_refresh_family(&next, a.version, &events, &family, &first.hash())
        .await;
    assert!(r.expect("update_with_refresh_family"), "swapped");
    assert_eq!(get(s, &a.handle).await, next);
    assert_eq!(lookup(s, &first.hash()).await, Some((family.clone(), 0)));
    assert_eq!(
        families_of(s, &a.handle).await,
        by_id(vec![old.clone(), family.clone()])
    );
    let kinds: Vec<_> = events_after(s, before.len())
        .await
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![EventKind::Elevated],
        "the session's event, nothing for the family"
    );
}
