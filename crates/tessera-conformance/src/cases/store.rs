//! The trait contract, method by method, straight against the store.
//!
//! Records are built by hand here (not through `Sessions`) so every field
//! can be set to a value a careless encoding would lose.

use std::sync::Arc;

use serde_json::json;
use tessera_core::token::{self, API_KEY_ID_PREFIX, SESSION_HANDLE_PREFIX};
use tessera_core::{
    ApiKeyRecord, ApiKeyScope, AuthInfo, Binding, CreateOptions, CreateOutcome, DeviceInfo, Event, EventKind,
    EventQuery, NewEvent, Revocation, RevokeReason, SecretToken, SessionRecord, SessionStore, StoreError,
    Timestamp, TokenKind,
};

use crate::support::*;

pub async fn store_fresh_store_is_empty(store: Arc<dyn SessionStore>) {
    let s = &*store;
    let (tok, mut rec) = session("alice", T0);
    assert_eq!(
        s.count_active(T0).await.expect("count_active"),
        0,
        "a fresh store has no sessions"
    );
    assert!(all_events(s).await.is_empty(), "a fresh store has no events");
    assert!(
        s.list_api_keys().await.expect("list_api_keys").is_empty(),
        "a fresh store has no API keys"
    );
    assert!(
        s.list_by_subject("alice")
            .await
            .expect("list_by_subject")
            .is_empty()
    );
    assert!(s.get(&rec.handle).await.expect("get").is_none());
    assert!(s.get_by_token(&tok.hash()).await.expect("get_by_token").is_none());
    assert!(
        s.api_key_by_hash(&tok.hash())
            .await
            .expect("api_key_by_hash")
            .is_none()
    );

    // Conditional writes on nothing must match nothing, and in particular
    // `update` must never behave as an upsert.
    assert!(
        !s.touch(&rec.handle, &rec.token_hash, T0, T0)
            .await
            .expect("touch")
    );
    rec.version = 1;
    assert!(
        !s.update(&rec, 0, &[created_event(&rec)]).await.expect("update"),
        "update of a missing session"
    );
    assert!(
        s.revoke_subject("alice", None, RevokeReason::RevokeAll, T0)
            .await
            .expect("revoke_subject")
            .is_empty()
    );
    assert!(
        !s.revoke_api_key("key_nonexistent", T0)
            .await
            .expect("revoke_api_key")
    );
    assert_eq!(
        s.sweep(T0.plus_millis(10_000 * HOUR), 100).await.expect("sweep"),
        0
    );

    assert!(
        s.get(&rec.handle).await.expect("get").is_none(),
        "update must not insert"
    );
    assert!(all_events(s).await.is_empty(), "no-op calls append no events");
}

pub async fn store_ping_answers(store: Arc<dyn SessionStore>) {
    store.ping().await.expect("ping on a fresh store");
    // `/readyz` is polled concurrently with traffic; pings must not serialize
    // into an error.
    let pings = (0..16).map(|_| {
        let s = store.clone();
        tokio::spawn(async move { s.ping().await })
    });
    for p in futures::future::join_all(pings).await {
        p.expect("ping task").expect("concurrent ping");
    }
}

pub async fn store_create_get_round_trip(store: Arc<dyn SessionStore>) {
    let s = &*store;
    // Glob characters (Redis key patterns), SQL quotes and non-ASCII in the
    // subject: stores must treat it as opaque bytes.
    let subject = "user:42*?[x] 'O\"Brien'; ünï 😀";
    let (full_tok, mut full) = session(subject, T0);
    full.version = 7;
    full.last_seen_at = T0.plus_millis(7);
    full.idle_timeout_ms = 1_234_567;
    full.idle_expires_at = T0.plus_millis(7 + 1_234_567);
    full.absolute_expires_at = T0.plus_millis(28_800_001);
    full.auth = AuthInfo {
        level: 2,
        methods: vec!["pwd".into(), "otp".into(), "hwk".into()],
        time: T0.plus_millis(-999),
    };
    full.device = DeviceInfo {
        user_agent: Some("Mozilla/5.0 \"quoted\" ünïcødé\ttab".into()),
        ip: Some("2001:db8::1".into()),
        label: "Firefox on Linux".into(),
    };
    full.data = obj(json!({
        "s": "héllo 😀 \"q\" \\ \n",
        "n": -42,
        "big": u64::MAX,
        "f": 1.5,
        "t": true,
        "nul": null,
        "arr": [1, "x", {"k": []}],
        "obj": {"nested": {"deep": "v"}},
        "": "empty key",
    }));
    full.binding = Some(Binding::Dbsc {
        session_id: "dbsc_1".into(),
        jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into(),
    });

    // The other extreme: every optional field empty.
    let (min_tok, mut minimal) = session(subject, T0.plus_millis(1));
    minimal.auth.methods.clear();
    minimal.device = DeviceInfo {
        user_agent: None,
        ip: None,
        label: "Unknown device".into(),
    };

    // The other binding kinds, under a second subject.
    let (dpop_tok, mut dpop) = session("bob", T0.plus_millis(2));
    dpop.binding = Some(Binding::Dpop {
        jkt: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into(),
    });
    let (mtls_tok, mut mtls) = session("bob", T0.plus_millis(3));
    mtls.binding = Some(Binding::Mtls {
        x5t_s256: "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2".into(),
    });

    let all = [
        (&full_tok, &full),
        (&min_tok, &minimal),
        (&dpop_tok, &dpop),
        (&mtls_tok, &mtls),
    ];
    for (_, r) in all {
        insert(s, r).await;
    }
    for (tok, r) in all {
        assert_eq!(
            &get(s, &r.handle).await,
            r,
            "get returns exactly what create stored"
        );
        let by_token = s.get_by_token(&tok.hash()).await.expect("get_by_token");
        assert_eq!(
            by_token.as_deref(),
            Some(r),
            "get_by_token returns exactly what create stored"
        );
    }

    let mut listed: Vec<SessionRecord> = s
        .list_by_subject(subject)
        .await
        .expect("list_by_subject")
        .iter()
        .map(|r| SessionRecord::clone(r))
        .collect();
    listed.sort_by(|a, b| a.handle.cmp(&b.handle));
    let mut expected = vec![full.clone(), minimal.clone()];
    expected.sort_by(|a, b| a.handle.cmp(&b.handle));
    assert_eq!(
        listed, expected,
        "list_by_subject returns the subject's records, all fields intact"
    );

    let events = all_events(s).await;
    let written: Vec<NewEvent> = all.iter().map(|(_, r)| created_event(r)).collect();
    assert_eq!(
        events.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        written
    );
    assert_ids_increasing(&events);
}

/// Event ids start above 0 (the cursor `after = 0` means "from the start")
/// and strictly increase in write order.
fn assert_ids_increasing(events: &[Event]) {
    if let Some(first) = events.first() {
        assert!(
            first.id >= 1,
            "event ids start at 1 or more, else `after = 0` hides one: {}",
            first.id
        );
    }
    for w in events.windows(2) {
        assert!(
            w[0].id < w[1].id,
            "event ids strictly increase: {} then {}",
            w[0].id,
            w[1].id
        );
    }
}

pub async fn store_create_duplicate_rejected_writes_nothing(store: Arc<dyn SessionStore>) {
    let s = &*store;
    let (_, a) = session("alice", T0);
    insert(s, &a).await;
    let (_, c) = session("carol", T0);
    insert(s, &c).await;
    let now = T0.plus_millis(SEC);
    let subjects = ["alice", "carol"];
    let before = snapshot(s, &subjects, now).await;

    let (_, mut same_handle) = session("alice", now);
    same_handle.handle = a.handle.clone();
    let (_, mut same_hash) = session("alice", now);
    same_hash.token_hash = a.token_hash;

    // With a matching `replace` and a limit that would evict `a`, a store
    // that applied either effect before noticing the duplicate is caught.
    let plain = CreateOptions {
        now,
        ..CreateOptions::default()
    };
    let loaded = CreateOptions {
        replace: Some((c.handle.clone(), c.version)),
        max_per_subject: Some(1),
        now,
    };
    for (what, dup) in [("handle", &same_handle), ("token hash", &same_hash)] {
        for opts in [&plain, &loaded] {
            let events = [
                created_event(dup),
                NewEvent::new(EventKind::BindingFailed, dup, now),
            ];
            let r = s.create(dup, opts, &events).await;
            assert!(
                matches!(r, Err(StoreError::Duplicate)),
                "a duplicate {what} must be StoreError::Duplicate (opts {opts:?}), got {r:?}"
            );
            assert_eq!(
                snapshot(s, &subjects, now).await,
                before,
                "a duplicate {what} must write nothing (opts {opts:?})"
            );
        }
    }
    assert_eq!(get(s, &a.handle).await, a);
    let by_hash = s.get_by_token(&a.token_hash).await.expect("get_by_token");
    assert_eq!(
        by_hash.as_deref(),
        Some(&a),
        "the hash still finds the original session"
    );
    assert!(s.get(&same_hash.handle).await.expect("get").is_none());
}

pub async fn store_create_replace_revokes_previous_atomically(store: Arc<dyn SessionStore>) {
    let s = &*store;
    let (_, p) = session("anon", T0);
    insert(s, &p).await;
    let base = all_events(s).await.len();

    let now = T0.plus_millis(5 * SEC);
    let (_, n) = session("alice", now);
    let opts = CreateOptions {
        replace: Some((p.handle.clone(), p.version)),
        max_per_subject: None,
        now,
    };
    let out = s
        .create(&n, &opts, &[created_event(&n)])
        .await
        .expect("create with replace");
    assert_eq!(out, CreateOutcome::Created { evicted: vec![] });

    let p2 = get(s, &p.handle).await;
    let revocation = Revocation {
        at: now,
        reason: RevokeReason::Replaced,
    };
    assert_eq!(
        p2.revoked,
        Some(revocation),
        "the replaced session is revoked at opts.now"
    );
    // The version must move, or a CAS prepared against the old version (a
    // concurrent patch) would write the session back un-revoked.
    assert!(
        p2.version > p.version,
        "revoking through replace bumps the version"
    );
    let mut expected = p.clone();
    expected.revoked = p2.revoked;
    expected.version = p2.version;
    assert_eq!(p2, expected, "replace changes nothing else in the old session");
    assert_eq!(get(s, &n.handle).await, n);

    let events: Vec<NewEvent> = all_events(s).await[base..]
        .iter()
        .map(|e| e.event.clone())
        .collect();
    assert_eq!(
        events,
        vec![
            NewEvent::revoked(&p, RevokeReason::Replaced, now),
            created_event(&n)
        ],
        "one `revoked` event for the old session, then the new session's own events"
    );

    let mut stale = p.clone();
    stale.version = p.version + 1;
    stale.data = obj(json!({"written_by": "a stale writer"}));
    assert!(
        !s.update(&stale, p.version, &[]).await.expect("update"),
        "stale CAS after replace must fail"
    );
    assert_eq!(get(s, &p.handle).await, p2);
    let old = s.get_by_token(&p.token_hash).await.expect("get_by_token");
    assert_eq!(
        old.as_deref(),
        Some(&p2),
        "the old token finds the revoked session until it is swept"
    );
    assert_eq!(s.count_active(now).await.expect("count_active"), 1);
}

pub async fn store_create_replace_conflict_writes_nothing(store: Arc<dyn SessionStore>) {
    let s = &*store;
    let (_, p) = session("anon", T0);
    insert(s, &p).await;
    let (_, r) = session("anon", T0);
    insert(s, &r).await;
    let mut r_revoked = r.clone();
    r_revoked.version = 1;
    r_revoked.revoked = Some(Revocation {
        at: T0.plus_millis(SEC),
        reason: RevokeReason::Logout,
    });
    update_ok(s, &r_revoked, &[]).await;
    // Active under the new session's subject: a store that applied the limit
    // despite the conflict would evict it.
    let (_, q) = session("alice", T0);
    insert(s, &q).await;

    let now = T0.plus_millis(10 * SEC);
    let subjects = ["anon", "alice"];
    let before = snapshot(s, &subjects, now).await;
    let unknown = token::new_id(SESSION_HANDLE_PREFIX);
    let cases = [
        ("version ahead", (p.handle.clone(), p.version + 1)),
        ("version far off", (p.handle.clone(), 5)),
        ("already revoked", (r.handle.clone(), r_revoked.version)),
        ("unknown handle", (unknown, 0)),
    ];
    for (what, replace) in cases {
        let (_, n) = session("alice", now);
        let opts = CreateOptions {
            replace: Some(replace),
            max_per_subject: Some(1),
            now,
        };
        let out = s.create(&n, &opts, &[created_event(&n)]).await.expect("create");
        assert_eq!(out, CreateOutcome::Conflict, "replace with {what}");
        assert_eq!(
            snapshot(s, &subjects, now).await,
            before,
            "{what}: a conflict writes nothing"
        );
        assert!(
            s.get(&n.handle).await.expect("get").is_none(),
            "{what}: not inserted"
        );
        assert!(
            s.get_by_token(&n.token_hash)
                .await
                .expect("get_by_token")
                .is_none()
        );
    }
}

pub async fn store_create_session_limit_evicts_oldest(store: Arc<dyn SessionStore>) {
    let s = &*store;
    let now = T0.plus_millis(10 * SEC);
    let (_, a1) = session("alice", T0);
    // Same created_at: the handle breaks the tie, so a3 ("ses_A…") is older than a2 ("ses_B…").
    let (_, a2) = session_ranked("alice", T0.plus_millis(SEC), 'B');
    let (_, a3) = session_ranked("alice", T0.plus_millis(SEC), 'A');
    // Older than all of them but not active: must be neither counted nor evicted.
    let (_, r) = session("alice", T0.plus_millis(-10 * SEC));
    let (_, e) = expired_session("alice", now);
    // Another subject's older session: the limit is per subject.
    let (_, b1) = session("bob", T0.plus_millis(-10 * MIN));
    for rec in [&a1, &a2, &a3, &r, &e, &b1] {
        insert(s, rec).await;
    }
    let mut r_revoked = r.clone();
    r_revoked.version = 1;
    r_revoked.revoked = Some(Revocation {
        at: T0.plus_millis(-5 * SEC),
        reason: RevokeReason::Logout,
    });
    update_ok(s, &r_revoked, &[]).await;
    let base = all_events(s).await.len();

    let (_, a4) = session("alice", now);
    let opts = CreateOptions {
        replace: None,
        max_per_subject: Some(2),
        now,
    };
    let out = s.create(&a4, &opts, &[created_event(&a4)]).await.expect("create");
    let CreateOutcome::Created { evicted } = out else {
        panic!("create with a limit is never a conflict: {out:?}")
    };
    assert_eq!(
        sorted(&evicted),
        sorted(&[a1.handle.clone(), a3.handle.clone()]),
        "the two oldest go"
    );

    let limit = Some(Revocation {
        at: now,
        reason: RevokeReason::SessionLimit,
    });
    for old in [&a1, &a3] {
        let got = get(s, &old.handle).await;
        assert_eq!(
            got.revoked, limit,
            "evicted with reason session_limit at opts.now"
        );
        assert!(got.version > old.version, "eviction bumps the version");
        let mut expected = old.clone();
        expected.revoked = got.revoked;
        expected.version = got.version;
        assert_eq!(got, expected);
    }
    for kept in [&a2, &a4, &e, &b1] {
        assert_eq!(
            &get(s, &kept.handle).await,
            kept,
            "{} must be untouched",
            kept.handle
        );
    }
    assert_eq!(
        get(s, &r.handle).await,
        r_revoked,
        "an already revoked session keeps its revocation"
    );

    let events = &all_events(s).await[base..];
    assert_eq!(events.len(), 3, "one created and two revoked events: {events:?}");
    assert_eq!(
        events[0].event,
        created_event(&a4),
        "the new session's events come first"
    );
    let mut revoked_handles = Vec::new();
    for ev in &events[1..] {
        assert_eq!(ev.event.kind, EventKind::Revoked);
        assert_eq!(ev.event.reason, Some(RevokeReason::SessionLimit));
        assert_eq!(ev.event.at, now);
        assert_eq!(ev.event.subject, "alice");
        revoked_handles.push(ev.event.handle.clone());
    }
    assert_eq!(sorted(&revoked_handles), sorted(&evicted));
    assert_eq!(
        s.count_active(now).await.expect("count_active"),
        3,
        "a2, a4 and bob's"
    );

    // No limit: nothing is evicted.
    let (_, a5) = session("alice", now.plus_millis(SEC));
    insert(s, &a5).await;
    // A limit of one keeps only the newest.
    let later = now.plus_millis(2 * SEC);
    let (_, a6) = session("alice", later);
    let opts = CreateOptions {
        replace: None,
        max_per_subject: Some(1),
        now: later,
    };
    let out = s.create(&a6, &opts, &[created_event(&a6)]).await.expect("create");
    assert_eq!(
        out.sorted(),
        CreateOutcome::Created {
            evicted: sorted(&[a2.handle.clone(), a4.handle.clone(), a5.handle.clone()])
        },
        "max 1 evicts every older active session"
    );
    assert_eq!(
        s.count_active(later).await.expect("count_active"),
        2,
        "a6 and bob's"
    );
}

/// Order-insensitive comparison of `evicted`.
trait SortedOutcome {
    fn sorted(self) -> Self;
}
impl SortedOutcome for CreateOutcome {
    fn sorted(self) -> Self {
        match self {
            CreateOutcome::Created { evicted } => CreateOutcome::Created {
                evicted: sorted(&evicted),
            },
            c => c,
        }
    }
}

pub async fn store_update_cas(store: Arc<dyn SessionStore>) {
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

pub async fn store_update_never_regresses_last_seen(store: Arc<dyn SessionStore>) {
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

pub async fn store_touch_conditional_and_monotonic(store: Arc<dyn SessionStore>) {
    let s = &*store;
    let (_, p) = session("alice", T0);
    insert(s, &p).await;
    let (_, q) = session("alice", T0);
    insert(s, &q).await;
    let base = all_events(s).await.len();
    let at = |m: i64| T0.plus_millis(m * MIN);

    let unknown = token::new_id(SESSION_HANDLE_PREFIX);
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

pub async fn store_list_by_subject(store: Arc<dyn SessionStore>) {
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

pub async fn store_revoke_subject_except_and_events(store: Arc<dyn SessionStore>) {
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

async fn query(
    s: &dyn SessionStore,
    subject: Option<&str>,
    handle: Option<&str>,
    kind: Option<EventKind>,
    after: u64,
    limit: u32,
) -> Vec<Event> {
    let q = EventQuery {
        subject: subject.map(str::to_owned),
        handle: handle.map(str::to_owned),
        kind,
        after,
        limit,
    };
    s.events(&q).await.expect("events")
}

pub async fn store_events_order_filters_paging(store: Arc<dyn SessionStore>) {
    let s = &*store;
    let t = |ms: i64| T0.plus_millis(ms);
    let (_, a1) = session("alice", t(0));
    let (_, b1) = session("bob", t(1));
    let (_, a2) = session("alice", t(2));
    let mut expected: Vec<NewEvent> = Vec::new();

    insert(s, &a1).await;
    expected.push(created_event(&a1));
    insert(s, &b1).await;
    expected.push(created_event(&b1));
    let a2_events = [
        created_event(&a2),
        NewEvent::new(EventKind::BindingFailed, &a2, t(3)),
    ];
    let out = s
        .create(&a2, &CreateOptions::default(), &a2_events)
        .await
        .expect("create");
    assert_eq!(out, CreateOutcome::Created { evicted: vec![] });
    expected.extend(a2_events);

    let mut a1n = a1.clone();
    a1n.version = 1;
    let ev = NewEvent::new(EventKind::Elevated, &a1n, t(4));
    update_ok(s, &a1n, std::slice::from_ref(&ev)).await;
    expected.push(ev);

    let mut b1n = b1.clone();
    b1n.version = 1;
    let evs = [
        NewEvent::new(EventKind::Refreshed, &b1n, t(5)),
        NewEvent {
            reason: Some(RevokeReason::RefreshTokenReuse),
            ..NewEvent::new(EventKind::RefreshTokenReuse, &b1n, t(6))
        },
    ];
    update_ok(s, &b1n, &evs).await;
    expected.extend(evs);

    let mut a2n = a2.clone();
    a2n.version = 1;
    a2n.revoked = Some(Revocation {
        at: t(7),
        reason: RevokeReason::Logout,
    });
    let ev = NewEvent::revoked(&a2n, RevokeReason::Logout, t(7));
    update_ok(s, &a2n, std::slice::from_ref(&ev)).await;
    expected.push(ev);

    let all = query(s, None, None, None, 0, 1000).await;
    assert_eq!(
        all.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        expected,
        "events come back in write order with every field intact"
    );
    assert_ids_increasing(&all);

    // Each filter, and combinations, against the same filter applied here.
    type Filter<'a> = (Option<&'a str>, Option<&'a str>, Option<EventKind>);
    let filters: Vec<Filter<'_>> = vec![
        (Some("alice"), None, None),
        (Some("bob"), None, None),
        (None, Some(&a1.handle), None),
        (None, Some(&a2.handle), None),
        (None, None, Some(EventKind::Created)),
        (None, None, Some(EventKind::Revoked)),
        (Some("alice"), None, Some(EventKind::Created)),
        (None, Some(&b1.handle), Some(EventKind::Refreshed)),
        (Some("bob"), Some(&a1.handle), None),
        (Some("nobody"), None, None),
        (None, None, Some(EventKind::Expired)),
    ];
    for (subject, handle, kind) in filters {
        let want: Vec<Event> = all
            .iter()
            .filter(|e| subject.is_none_or(|x| e.event.subject == x))
            .filter(|e| handle.is_none_or(|x| e.event.handle == x))
            .filter(|e| kind.is_none_or(|k| e.event.kind == k))
            .cloned()
            .collect();
        let got = query(s, subject, handle, kind, 0, 1000).await;
        assert_eq!(
            got, want,
            "filter subject={subject:?} handle={handle:?} kind={kind:?}"
        );

        // Paging with the cursor: the limit applies after filtering, each
        // page is full until the last, and the pages add up to the whole.
        for limit in [1u32, 2, 3] {
            let mut paged = Vec::new();
            let mut after = 0;
            loop {
                let page = query(s, subject, handle, kind, after, limit).await;
                let remaining = want.len() - paged.len();
                assert_eq!(
                    page.len(),
                    remaining.min(limit as usize),
                    "page size with limit {limit} after {after} (filter {subject:?} {handle:?} {kind:?})"
                );
                let Some(last) = page.last() else { break };
                after = last.id;
                paged.extend(page);
            }
            assert_eq!(paged, want, "paging with limit {limit}");
        }
    }

    assert_eq!(
        query(s, None, None, None, all[2].id, 1000).await,
        all[3..].to_vec(),
        "after is exclusive"
    );
    let last_id = all.last().map_or(0, |e| e.id);
    assert!(
        query(s, None, None, None, last_id, 1000).await.is_empty(),
        "after the last id"
    );
    // u64::MAX is a valid cursor: a store that casts it to a signed -1 would
    // return everything.
    assert!(
        query(s, None, None, None, u64::MAX, 1000).await.is_empty(),
        "after = u64::MAX"
    );
    assert!(
        query(s, None, None, None, (i64::MAX as u64) + 1, 1000)
            .await
            .is_empty(),
        "after > i64::MAX"
    );
    assert_eq!(
        query(s, None, None, None, 0, u32::MAX).await,
        all,
        "limit = u32::MAX"
    );
}

pub async fn store_sweep_in_batches(store: Arc<dyn SessionStore>) {
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

pub async fn store_count_active(store: Arc<dyn SessionStore>) {
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

pub async fn store_api_keys(store: Arc<dyn SessionStore>) {
    let s = &*store;
    let key = |name: &str, at: Timestamp, scopes: &[ApiKeyScope]| ApiKeyRecord {
        id: token::new_id(API_KEY_ID_PREFIX),
        name: name.to_owned(),
        hash: SecretToken::generate(TokenKind::ApiKey).hash(),
        created_at: at,
        revoked_at: None,
        scopes: scopes.to_vec(),
    };
    // Scopes round-trip as stored: one, several, all, and none at all.
    let newer = key(
        "deploy bot",
        T0.plus_millis(SEC),
        &[ApiKeyScope::Sessions, ApiKeyScope::Events],
    );
    let older = key("ünï 'quoted' \"name\"", T0, &[ApiKeyScope::Revocations]);
    let admin = key("admin", T0.plus_millis(3 * SEC), &ApiKeyScope::ALL);
    let powerless = key("none", T0.plus_millis(4 * SEC), &[]);
    // Inserted newest first: "oldest first" is by creation time.
    s.insert_api_key(&newer).await.expect("insert_api_key");
    s.insert_api_key(&older).await.expect("insert_api_key");

    let mut dup_id = key("dup id", T0.plus_millis(2 * SEC), &[]);
    dup_id.id = newer.id.clone();
    let mut dup_hash = key("dup hash", T0.plus_millis(2 * SEC), &[]);
    dup_hash.hash = older.hash;
    for (what, dup) in [("id", &dup_id), ("hash", &dup_hash)] {
        let r = s.insert_api_key(dup).await;
        assert!(matches!(r, Err(StoreError::Duplicate)), "duplicate {what}: {r:?}");
    }
    assert!(
        s.api_key_by_hash(&dup_id.hash)
            .await
            .expect("api_key_by_hash")
            .is_none(),
        "dup not written"
    );
    s.insert_api_key(&admin).await.expect("insert_api_key");
    s.insert_api_key(&powerless).await.expect("insert_api_key");
    let listed = s.list_api_keys().await.expect("list_api_keys");
    assert_eq!(
        listed,
        vec![older.clone(), newer.clone(), admin.clone(), powerless.clone()],
        "all keys, oldest first, with their scopes, nothing else"
    );
    for k in [&admin, &powerless] {
        assert_eq!(
            s.api_key_by_hash(&k.hash)
                .await
                .expect("api_key_by_hash")
                .as_ref(),
            Some(k)
        );
    }

    assert_eq!(
        s.api_key_by_hash(&newer.hash).await.expect("api_key_by_hash"),
        Some(newer.clone())
    );
    assert_eq!(
        s.api_key_by_hash(&older.hash).await.expect("api_key_by_hash"),
        Some(older.clone())
    );
    let stranger = SecretToken::generate(TokenKind::ApiKey).hash();
    assert_eq!(s.api_key_by_hash(&stranger).await.expect("api_key_by_hash"), None);

    let at = T0.plus_millis(MIN);
    assert!(s.revoke_api_key(&newer.id, at).await.expect("revoke_api_key"));
    assert!(
        !s.revoke_api_key(&newer.id, at.plus_millis(MIN))
            .await
            .expect("revoke_api_key"),
        "already revoked"
    );
    assert!(
        !s.revoke_api_key("key_nonexistent", at)
            .await
            .expect("revoke_api_key")
    );
    let revoked = ApiKeyRecord {
        revoked_at: Some(at),
        ..newer.clone()
    };
    assert_eq!(
        s.api_key_by_hash(&newer.hash).await.expect("api_key_by_hash"),
        Some(revoked.clone()),
        "a revoked key is still found, with its first revocation time"
    );
    assert_eq!(
        s.list_api_keys().await.expect("list_api_keys"),
        vec![older, revoked, admin, powerless],
        "revoked keys are listed"
    );
}

/// Two logins in the same millisecond must not evict the session being
/// created, even when its handle sorts first: a login always yields a
/// working session, and the older one goes.
pub async fn store_create_session_limit_never_evicts_the_new_session(store: Arc<dyn SessionStore>) {
    let s = &*store;
    let (_, old) = session_ranked("alice", T0, 'Z');
    insert(s, &old).await;
    let (_, new) = session_ranked("alice", T0, 'A');
    let opts = CreateOptions {
        replace: None,
        max_per_subject: Some(1),
        now: T0,
    };
    let out = s
        .create(&new, &opts, &[created_event(&new)])
        .await
        .expect("create");
    assert_eq!(
        out,
        CreateOutcome::Created {
            evicted: vec![old.handle.clone()]
        },
        "the existing session goes, not the new one"
    );
    assert!(
        get(s, &new.handle).await.revoked.is_none(),
        "the new session stays active"
    );
    assert!(get(s, &old.handle).await.revoked.is_some());
}

/// Appends one event of `kind` at `at` for a new session of `subject`
/// (created with no events of its own).
async fn append_event(s: &dyn SessionStore, subject: &str, kind: EventKind, at: Timestamp) -> Event {
    let (_, rec) = session(subject, at);
    let ev = match kind {
        EventKind::Revoked => NewEvent::revoked(&rec, RevokeReason::Logout, at),
        other => NewEvent::new(other, &rec, at),
    };
    let out = s
        .create(&rec, &CreateOptions::default(), std::slice::from_ref(&ev))
        .await
        .expect("create");
    assert_eq!(out, CreateOutcome::Created { evicted: vec![] });
    let last = all_events(s).await.pop().expect("the event just appended");
    assert_eq!(last.event, ev);
    last
}

pub async fn store_events_cursor_since(store: Arc<dyn SessionStore>) {
    let s = &*store;
    let t = |min: i64| T0.plus_millis(min * MIN);
    assert_eq!(
        s.events_cursor_since(EventKind::Revoked, T0)
            .await
            .expect("events_cursor_since"),
        0,
        "an empty log"
    );
    // Old revocations, other kinds in between, then a window of recent
    // ones, one of them appended with a clock a minute behind.
    let old1 = append_event(s, "alice", EventKind::Revoked, t(0)).await;
    append_event(s, "bob", EventKind::Created, t(1)).await;
    let old2 = append_event(s, "bob", EventKind::Revoked, t(2)).await;
    let first_recent = append_event(s, "carol", EventKind::Revoked, t(10)).await;
    append_event(s, "dave", EventKind::Refreshed, t(11)).await;
    let skewed = append_event(s, "erin", EventKind::Revoked, t(9)).await;
    let last_recent = append_event(s, "frank", EventKind::Revoked, t(12)).await;
    let newest = append_event(s, "gina", EventKind::Created, t(13)).await;

    let cursor = |kind, since| async move {
        s.events_cursor_since(kind, since)
            .await
            .expect("events_cursor_since")
    };
    let revoked_after = |after: u64| async move {
        query(s, None, None, Some(EventKind::Revoked), after, 1000)
            .await
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    // Since t(10): the first revocation at or after it is `first_recent`;
    // reading from the cursor yields the whole window (and the skewed one,
    // which is older than the window but newer in the log).
    let c = cursor(EventKind::Revoked, t(10)).await;
    assert_eq!(c, first_recent.id - 1, "one less than the first id in the window");
    assert_eq!(
        revoked_after(c).await,
        vec![first_recent.id, skewed.id, last_recent.id]
    );
    // A window that starts with the skewed event: it has the smallest `at`
    // but not the smallest id.
    let c = cursor(EventKind::Revoked, t(9)).await;
    assert_eq!(c, first_recent.id - 1);
    // Everything: from before the first event.
    assert_eq!(cursor(EventKind::Revoked, T0).await, old1.id - 1);
    assert_eq!(cursor(EventKind::Revoked, t(1)).await, old2.id - 1);
    // Exactly at `at` counts as "since".
    assert_eq!(cursor(EventKind::Revoked, t(12)).await, last_recent.id - 1);
    // Nothing since: the newest id of any kind, so nothing is re-read.
    assert_eq!(cursor(EventKind::Revoked, t(13)).await, newest.id);
    assert!(revoked_after(newest.id).await.is_empty());
    // Other kinds answer the same way.
    assert_eq!(cursor(EventKind::Created, t(5)).await, newest.id - 1);
    assert_eq!(cursor(EventKind::Refreshed, t(12)).await, newest.id);
    assert_eq!(cursor(EventKind::Expired, T0).await, newest.id);
}

pub async fn store_delete_events_before_in_batches(store: Arc<dyn SessionStore>) {
    let s = &*store;
    let t = |min: i64| T0.plus_millis(min * MIN);
    assert_eq!(
        s.delete_events_before(t(100), 10)
            .await
            .expect("delete_events_before"),
        0,
        "an empty log"
    );
    let mut all = Vec::new();
    for i in 0..7 {
        let kind = if i % 2 == 0 {
            EventKind::Revoked
        } else {
            EventKind::Created
        };
        all.push(append_event(s, &format!("user-{i}"), kind, t(i)).await);
    }
    // A late writer's event with an older time than the one before it.
    all.push(append_event(s, "late", EventKind::Revoked, t(3)).await);
    let delete = |cutoff: Timestamp, batch: u32| async move {
        s.delete_events_before(cutoff, batch)
            .await
            .expect("delete_events_before")
    };
    let ids = |events: Vec<Event>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();

    assert_eq!(delete(t(0), 10).await, 0, "nothing is before the first event");
    assert_eq!(delete(t(5), 0).await, 0, "a batch of 0 deletes nothing");
    // Batches of 2, oldest first.
    assert_eq!(delete(t(5), 2).await, 2);
    assert_eq!(ids(all_events(s).await), ids(all[2..].to_vec()));
    assert_eq!(delete(t(5), 2).await, 2);
    // The cutoff is exclusive: t(4) stays, and so does everything after it,
    // including the late event that is itself older than the cutoff (only a
    // prefix of the log is deleted).
    assert_eq!(delete(t(5), 2).await, 1);
    assert_eq!(delete(t(5), 2).await, 0);
    assert_eq!(ids(all_events(s).await), ids(all[5..].to_vec()));
    // The feed's reads still work on what is left.
    let revoked: Vec<u64> = query(s, None, None, Some(EventKind::Revoked), 0, 100)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(revoked, vec![all[6].id, all[7].id]);
    assert_eq!(
        s.events_cursor_since(EventKind::Revoked, t(3))
            .await
            .expect("events_cursor_since"),
        all[6].id - 1
    );

    // Everything: ids are never reused afterwards.
    assert_eq!(delete(t(100), 1000).await, 3);
    assert!(all_events(s).await.is_empty());
    let next = append_event(s, "after", EventKind::Revoked, t(50)).await;
    assert!(
        next.id > all.last().map_or(0, |e| e.id),
        "id {} reused after every event was deleted",
        next.id
    );
}
