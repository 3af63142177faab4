//! `create`: the round trip of every field, duplicates, replacement at
//! login, and the per-subject limit.

use std::sync::Arc;

use serde_json::json;
use tessera_core::secret::{self, SESSION_HANDLE_PREFIX};
use tessera_core::{
    AuthInfo, Binding, CreateOptions, CreateOutcome, DeviceInfo, EventKind, EventStore, NewEvent, Revocation,
    RevokeReason, SessionRecord, SessionStore, StoreError,
};

use crate::support::*;

pub async fn store_fresh_store_is_empty<S: SessionStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (tok, mut rec) = session("alice", T0);
    assert_eq!(
        s.count_active(T0).await.expect("count_active"),
        0,
        "a fresh store has no sessions"
    );
    assert!(all_events(s).await.is_empty(), "a fresh store has no events");
    assert!(
        s.list_by_subject("alice")
            .await
            .expect("list_by_subject")
            .is_empty()
    );
    assert!(s.get(&rec.handle).await.expect("get").is_none());
    assert!(s.get_by_token(&tok.hash()).await.expect("get_by_token").is_none());

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

pub async fn store_create_get_round_trip<S: SessionStore + EventStore>(store: Arc<S>) {
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
        jwk: r#"{"crv":"P-256","kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}"#.into(),
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

pub async fn store_create_duplicate_rejected_writes_nothing<S: SessionStore + EventStore>(store: Arc<S>) {
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

pub async fn store_create_replace_revokes_previous_atomically<S: SessionStore + EventStore>(store: Arc<S>) {
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

pub async fn store_create_replace_conflict_writes_nothing<S: SessionStore + EventStore>(store: Arc<S>) {
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
    let unknown = secret::new_id(SESSION_HANDLE_PREFIX);
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

pub async fn store_create_session_limit_evicts_oldest<S: SessionStore + EventStore>(store: Arc<S>) {
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

/// Two logins in the same millisecond must not evict the session being
/// created, even when its handle sorts first: a login always yields a
/// working session, and the older one goes.
pub async fn store_create_session_limit_never_evicts_the_new_session<S: SessionStore + EventStore>(
    store: Arc<S>,
) {
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
