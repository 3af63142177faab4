//! Atomicity under real parallelism: tasks spawned on the 4-worker runtime,
//! lined up on a `Barrier` so they hit the store at the same moment.
//!
//! Orderings are judged with a "returned before" flag: an operation that
//! *started* after another *returned* must see its effect. Operations that
//! overlap may go either way, so those are not judged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering::SeqCst};

use serde_json::json;
use tessera_core::{
    AuthInput, CreateOptions, CreateOutcome, CreateSession, Error, EventKind, EventQuery, EventStore,
    RevokeReason, SessionPolicy, SessionStore, StoreError,
};
use tokio::sync::Barrier;
use tokio::task::{JoinSet, yield_now};

use crate::support::*;

pub async fn concurrent_50_verifies_and_1_revoke<S: SessionStore + EventStore>(store: Arc<S>) {
    const VERIFIERS: usize = 50;
    const ROUNDS: usize = 40;
    // touch_interval 0: every verify also writes (touch), so the race is
    // touch against revoke, not only reads against a write.
    let policy = SessionPolicy {
        touch_interval_secs: 0,
        ..test_policy()
    };
    let h = Harness::with_policy(store, policy);
    let s = h.login("alice").await;
    let token = s.token.expose().to_owned();
    let handle = s.session.handle.clone();

    let barrier = Arc::new(Barrier::new(VERIFIERS + 1));
    let revoke_returned = Arc::new(AtomicBool::new(false));
    let verifies_done = Arc::new(AtomicUsize::new(0));

    #[derive(Default)]
    struct Tally {
        ok_before: usize,
        ok_after_revoke: usize,
        revoked: usize,
        unexpected: Vec<String>,
    }
    let mut tasks = JoinSet::new();
    for _ in 0..VERIFIERS {
        let (h, token, handle) = (h.clone(), token.clone(), handle.clone());
        let (barrier, revoke_returned, done) =
            (barrier.clone(), revoke_returned.clone(), verifies_done.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let mut t = Tally::default();
            for round in 0..ROUNDS {
                // Half-way, each verifier waits for the revoke to return:
                // the revoke (started after a quarter of all verifies)
                // then always lands mid-load, whatever the scheduler does,
                // and the second halves all run after it.
                if round == ROUNDS / 2 {
                    while !revoke_returned.load(SeqCst) {
                        yield_now().await;
                    }
                }
                h.advance_ms(1);
                let after_revoke = revoke_returned.load(SeqCst);
                let r = h.sessions.verify(&token).await;
                done.fetch_add(1, SeqCst);
                match r {
                    Ok(rec) if rec.handle != handle => {
                        t.unexpected.push(format!("verify found {}", rec.handle))
                    }
                    Ok(_) if after_revoke => t.ok_after_revoke += 1,
                    Ok(_) => t.ok_before += 1,
                    Err(Error::SessionRevoked) => t.revoked += 1,
                    Err(e) => t.unexpected.push(error_kind(&e).to_owned()),
                }
                yield_now().await;
            }
            t
        });
    }
    let revoker = {
        let (h, handle) = (h.clone(), handle.clone());
        let (barrier, revoke_returned, done) =
            (barrier.clone(), revoke_returned.clone(), verifies_done.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            // Land the revoke in the middle of the verifies, not before them.
            while done.load(SeqCst) < VERIFIERS * ROUNDS / 4 {
                yield_now().await;
            }
            let r = h.sessions.revoke(&handle, RevokeReason::Revoked).await;
            revoke_returned.store(true, SeqCst);
            r
        })
    };
    let tallies = join_all(tasks).await;
    let revoked = revoker.await.expect("revoker task");
    assert_eq!(kind(&revoked), "ok", "revoke under verify load");
    assert_eq!(revoked.ok(), Some(true), "the revoke found the session active");

    let ok_after: usize = tallies.iter().map(|t| t.ok_after_revoke).sum();
    let ok_before: usize = tallies.iter().map(|t| t.ok_before).sum();
    let refused: usize = tallies.iter().map(|t| t.revoked).sum();
    let unexpected: Vec<&String> = tallies.iter().flat_map(|t| &t.unexpected).collect();
    assert_eq!(
        ok_after, 0,
        "verifies that started after revoke returned succeeded {ok_after} times"
    );
    assert!(
        unexpected.is_empty(),
        "only session_revoked may fail a verify: {unexpected:?}"
    );
    assert!(
        ok_before > 0 && refused > 0,
        "the revoke did land mid-load ({ok_before} ok, {refused} revoked)"
    );

    assert_eq!(kind(&h.sessions.verify(&token).await), "session_revoked");
    let rec = h.stored(&handle).await;
    assert_eq!(
        rec.revoked.map(|r| r.reason),
        Some(RevokeReason::Revoked),
        "the session ends revoked"
    );
    let revocations = events_of(&*h.store, &handle)
        .await
        .iter()
        .filter(|e| e.event.kind == EventKind::Revoked)
        .count();
    assert_eq!(revocations, 1, "exactly one revoked event");
}

pub async fn concurrent_2_elevations_exactly_one_wins<S: SessionStore + EventStore>(store: Arc<S>) {
    let h = Harness::new(store);
    for round in 0..20 {
        let s = h.login("alice").await;
        let barrier = Arc::new(Barrier::new(2));
        let mut tasks = JoinSet::new();
        for i in 0..2 {
            let (h, token, barrier) = (h.clone(), s.token.expose().to_owned(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                let auth = AuthInput {
                    level: Some(2),
                    methods: vec![format!("otp{i}")],
                };
                h.sessions.elevate(&token, auth).await
            });
        }
        let results = join_all(tasks).await;
        let kinds: Vec<&str> = results.iter().map(kind).collect();
        let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            wins.len(),
            1,
            "round {round}: exactly one of two elevations wins, got {kinds:?}"
        );
        assert!(
            kinds.contains(&"session_invalid"),
            "round {round}: the loser's token is gone: {kinds:?}"
        );
        let w = wins[0];

        let stored = h.stored(&s.session.handle).await;
        assert_eq!(
            stored, *w.session,
            "round {round}: the store holds the winner's record"
        );
        assert_eq!(
            stored.version,
            s.session.version + 1,
            "round {round}: one swap, not two"
        );
        assert_eq!(kind(&h.sessions.verify(w.token.expose()).await), "ok");
        assert_eq!(
            kind(&h.sessions.verify(s.token.expose()).await),
            "session_invalid"
        );
        let elevated = events_of(&*h.store, &s.session.handle)
            .await
            .iter()
            .filter(|e| e.event.kind == EventKind::Elevated)
            .count();
        assert_eq!(elevated, 1, "round {round}: one elevated event");
    }
}

pub async fn concurrent_creates_respect_session_limit<S: SessionStore + EventStore>(store: Arc<S>) {
    const ALICE: usize = 20;
    const BOB: usize = 3;
    const MAX: usize = 5;
    let policy = SessionPolicy {
        max_sessions_per_subject: Some(MAX as u32),
        ..test_policy()
    };
    let h = Harness::with_policy(store, policy);
    let barrier = Arc::new(Barrier::new(ALICE + BOB));
    let mut tasks = JoinSet::new();
    for i in 0..ALICE + BOB {
        let (h, barrier) = (h.clone(), barrier.clone());
        let subject = if i < ALICE { "alice" } else { "bob" };
        tasks.spawn(async move {
            barrier.wait().await;
            h.sessions.create(login_request(subject)).await
        });
    }
    let issued: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("a concurrent login failed: {e}")))
        .collect();

    let alice: Vec<String> = issued
        .iter()
        .filter(|i| i.session.subject == "alice")
        .map(|i| i.session.handle.clone())
        .collect();
    // The order the creates were applied in is up to the store; whatever it
    // was, exactly MAX stay active and every other one went for the limit.
    // (A new session is never the one evicted, so with same-millisecond
    // ties the survivors are not simply the newest by handle.)
    let active: Vec<String> = h
        .sessions
        .list("alice")
        .await
        .expect("list")
        .iter()
        .map(|s| s.handle.clone())
        .collect();
    assert_eq!(active.len(), MAX, "exactly {MAX} stay active: {active:?}");
    assert!(active.iter().all(|a| alice.contains(a)));
    let evicted: Vec<String> = alice.iter().filter(|a| !active.contains(a)).cloned().collect();
    for hd in &evicted {
        let r = h.stored(hd).await;
        assert_eq!(
            r.revoked.map(|r| r.reason),
            Some(RevokeReason::SessionLimit),
            "{hd} evicted"
        );
    }
    let q = EventQuery {
        subject: Some("alice".into()),
        kind: Some(EventKind::Revoked),
        ..EventQuery::default()
    };
    let revoked: Vec<String> = events_matching(&*h.store, q)
        .await
        .into_iter()
        .map(|e| {
            assert_eq!(e.event.reason, Some(RevokeReason::SessionLimit));
            e.event.handle
        })
        .collect();
    assert_eq!(
        sorted(&revoked),
        sorted(&evicted),
        "one session_limit event per evicted session, no more"
    );
    assert_eq!(
        h.sessions.list("bob").await.expect("list").len(),
        BOB,
        "bob is under the limit"
    );
    assert_eq!(
        h.store.count_active(h.now()).await.expect("count_active"),
        (MAX + BOB) as u64
    );
}

pub async fn concurrent_patches_lose_no_update<S: SessionStore + EventStore>(store: Arc<S>) {
    const WRITERS: usize = 24;
    let h = Harness::new(store);
    let s = h
        .sessions
        .create(CreateSession {
            data: Some(obj(json!({"base": true}))),
            ..login_request("alice")
        })
        .await
        .expect("login");
    let handle = s.session.handle.clone();
    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut tasks = JoinSet::new();
    for i in 0..WRITERS {
        let (h, handle, barrier) = (h.clone(), handle.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let patch = json!({ format!("k{i}"): i });
            // `Conflict` means "lost the CAS too often; retry", which is
            // what an API client does.
            for attempt in 0..200 {
                match h.sessions.patch_data(&handle, &patch).await {
                    Ok(_) => return attempt,
                    Err(Error::Conflict) => yield_now().await,
                    Err(e) => panic!("patch k{i} failed: {e}"),
                }
            }
            panic!("patch k{i} never got through")
        });
    }
    join_all(tasks).await;
    let stored = h.stored(&handle).await;
    let mut want = obj(json!({"base": true}));
    for i in 0..WRITERS {
        want.insert(format!("k{i}"), json!(i));
    }
    assert_eq!(stored.data, want, "every concurrent patch is kept");
    assert_eq!(
        stored.version,
        s.session.version + WRITERS as u64,
        "one version per successful patch"
    );
}

pub async fn concurrent_touch_and_revoke_never_resurrects<S: SessionStore + EventStore>(store: Arc<S>) {
    const TOUCHERS: usize = 8;
    const PATCHERS: usize = 2;
    const ITER: usize = 30;
    let h = Harness::new(store);
    for round in 0..10 {
        let s = h.login("alice").await;
        let handle = s.session.handle.clone();
        let hash = s.token.hash();
        let barrier = Arc::new(Barrier::new(TOUCHERS + PATCHERS + 1));
        let revoke_returned = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicUsize::new(0));
        let clock_ms = Arc::new(AtomicI64::new(h.now().unix_millis()));

        // Touchers go straight to the store; patchers go through Sessions
        // (read, then CAS) like PATCH /v1/sessions/{handle}.
        let mut touchers = JoinSet::new();
        for _ in 0..TOUCHERS {
            let (store, handle) = (h.store.clone(), handle.clone());
            let (barrier, revoke_returned, progress, clock_ms) = (
                barrier.clone(),
                revoke_returned.clone(),
                progress.clone(),
                clock_ms.clone(),
            );
            touchers.spawn(async move {
                barrier.wait().await;
                let (mut latest_match, mut late) = (None, 0);
                for _ in 0..ITER {
                    let t = tessera_core::Timestamp::from_unix_millis(clock_ms.fetch_add(1, SeqCst) + 1);
                    let after_revoke = revoke_returned.load(SeqCst);
                    let matched = store
                        .touch(&handle, &hash, t, t.plus_millis(600 * SEC))
                        .await
                        .expect("touch");
                    progress.fetch_add(1, SeqCst);
                    if matched {
                        latest_match = latest_match.max(Some(t));
                        late += usize::from(after_revoke);
                    }
                    yield_now().await;
                }
                (latest_match, late)
            });
        }
        let mut patchers = JoinSet::new();
        for p in 0..PATCHERS {
            let (h, handle) = (h.clone(), handle.clone());
            let (barrier, revoke_returned) = (barrier.clone(), revoke_returned.clone());
            patchers.spawn(async move {
                barrier.wait().await;
                let (mut kept, mut late, mut unexpected) = (Vec::new(), 0, Vec::new());
                for j in 0..ITER {
                    let key = format!("p{p}-{j}");
                    let after_revoke = revoke_returned.load(SeqCst);
                    match h.sessions.patch_data(&handle, &json!({ key.clone(): j })).await {
                        Ok(_) if after_revoke => late += 1,
                        Ok(_) => kept.push(key),
                        Err(Error::NotFound | Error::Conflict) => {}
                        Err(e) => unexpected.push(error_kind(&e)),
                    }
                    yield_now().await;
                }
                (kept, late, unexpected)
            });
        }
        let revoker = {
            let (h, handle, barrier, revoke_returned, progress) = (
                h.clone(),
                handle.clone(),
                barrier.clone(),
                revoke_returned.clone(),
                progress.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                while progress.load(SeqCst) < TOUCHERS * ITER / 3 {
                    yield_now().await;
                }
                // Concurrent patches may win the CAS race; Conflict means retry.
                let mut outcome = String::from("gave up after 100 conflicts");
                for _ in 0..100 {
                    match h.sessions.revoke(&handle, RevokeReason::Revoked).await {
                        Err(Error::Conflict) => yield_now().await,
                        Ok(true) => {
                            outcome = "revoked".into();
                            break;
                        }
                        Ok(false) => {
                            outcome = "already revoked".into();
                            break;
                        }
                        Err(e) => {
                            outcome = error_kind(&e).into();
                            break;
                        }
                    }
                }
                revoke_returned.store(true, SeqCst);
                outcome
            })
        };

        let touched = join_all(touchers).await;
        let patched = join_all(patchers).await;
        let outcome = revoker.await.expect("revoker task");
        assert_eq!(outcome, "revoked", "round {round}: revoke succeeds under load");

        let late_touches: usize = touched.iter().map(|t| t.1).sum();
        assert_eq!(
            late_touches, 0,
            "round {round}: touch matched a session already revoked"
        );
        let late_patches: usize = patched.iter().map(|p| p.1).sum();
        assert_eq!(
            late_patches, 0,
            "round {round}: patch succeeded on a session already revoked"
        );
        let unexpected: Vec<_> = patched.iter().flat_map(|p| &p.2).collect();
        assert!(
            unexpected.is_empty(),
            "round {round}: unexpected patch errors {unexpected:?}"
        );

        let rec = h.stored(&handle).await;
        assert_eq!(
            rec.revoked.map(|r| r.reason),
            Some(RevokeReason::Revoked),
            "round {round}: revoked stays revoked"
        );
        if let Some(latest) = touched.iter().filter_map(|t| t.0).max() {
            assert!(
                rec.last_seen_at >= latest,
                "round {round}: a later write undid a touch"
            );
        }
        for key in patched.iter().flat_map(|p| &p.0) {
            assert!(
                rec.data.contains_key(key),
                "round {round}: acknowledged patch {key} was lost"
            );
        }
        let revocations = events_of(&*h.store, &handle)
            .await
            .iter()
            .filter(|e| e.event.kind == EventKind::Revoked)
            .count();
        assert_eq!(revocations, 1, "round {round}: exactly one revoked event");
        let t = tessera_core::Timestamp::from_unix_millis(clock_ms.load(SeqCst) + 1000);
        assert!(!h.store.touch(&handle, &hash, t, t).await.expect("touch"));
        assert_eq!(
            h.stored(&handle).await,
            rec,
            "round {round}: touch after revoke writes nothing"
        );
        assert_eq!(
            kind(&h.sessions.verify(s.token.expose()).await),
            "session_revoked"
        );
    }
}

pub async fn concurrent_2_logins_replace_previous_once<S: SessionStore + EventStore>(store: Arc<S>) {
    let h = Harness::new(store);
    for round in 0..10 {
        let pre = h
            .sessions
            .create(CreateSession {
                data: Some(obj(json!({"cart": round}))),
                ..login_request("alice")
            })
            .await
            .expect("pre-login session");
        let barrier = Arc::new(Barrier::new(2));
        let mut tasks = JoinSet::new();
        for i in 0..2 {
            let (h, barrier, prev) = (h.clone(), barrier.clone(), pre.token.expose().to_owned());
            tasks.spawn(async move {
                barrier.wait().await;
                let req = CreateSession {
                    previous_session_token: Some(prev),
                    data: Some(obj(json!({"who": i}))),
                    ..login_request("alice")
                };
                h.sessions.create(req).await
            });
        }
        let logins: Vec<_> = join_all(tasks)
            .await
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("round {round}: a login failed: {e}")))
            .collect();
        let carried = logins
            .iter()
            .filter(|l| l.session.data.contains_key("cart"))
            .count();
        assert_eq!(
            carried, 1,
            "round {round}: the previous session's data goes to exactly one login"
        );
        assert_eq!(
            h.stored(&pre.session.handle).await.revoked.map(|r| r.reason),
            Some(RevokeReason::Replaced)
        );
        let replaced = events_of(&*h.store, &pre.session.handle)
            .await
            .iter()
            .filter(|e| e.event.kind == EventKind::Revoked)
            .count();
        assert_eq!(replaced, 1, "round {round}: replaced once");
        for l in &logins {
            assert_eq!(kind(&h.sessions.verify(l.token.expose()).await), "ok");
        }
    }
}

pub async fn concurrent_duplicate_creates_exactly_one_wins<S: SessionStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    for round in 0..20 {
        let (_, a) = session("alice", T0);
        let (_, mut b) = session("bob", T0);
        let same = if round % 2 == 0 {
            b.handle = a.handle.clone();
            "handle"
        } else {
            b.token_hash = a.token_hash;
            "token hash"
        };
        let barrier = Arc::new(Barrier::new(2));
        let mut tasks = JoinSet::new();
        for rec in [a.clone(), b.clone()] {
            let (store, barrier) = (store.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                let opts = CreateOptions {
                    now: T0,
                    ..CreateOptions::default()
                };
                let r = store.create(&rec, &opts, &[created_event(&rec)]).await;
                (rec, r)
            });
        }
        let results = join_all(tasks).await;
        let mut winners = Vec::new();
        for (rec, r) in results {
            match r {
                Ok(CreateOutcome::Created { evicted }) if evicted.is_empty() => winners.push(rec),
                Err(StoreError::Duplicate) => {}
                other => panic!("round {round} (same {same}): unexpected {other:?}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one of two creates with the same {same} wins"
        );
        let w = &winners[0];
        assert_eq!(&get(s, &w.handle).await, w);
        let by_hash = s.get_by_token(&w.token_hash).await.expect("get_by_token");
        assert_eq!(
            by_hash.as_deref(),
            Some(w),
            "round {round}: indexes point at the winner"
        );
        let created: Vec<(String, String)> = all_events(s)
            .await
            .into_iter()
            .filter(|e| e.event.handle == a.handle || e.event.handle == b.handle)
            .map(|e| (e.event.handle, e.event.subject))
            .collect();
        let want = vec![(w.handle.clone(), w.subject.clone())];
        assert_eq!(created, want, "round {round}: only the winner's event is written");
        let loser_subject = if w.subject == "alice" { "bob" } else { "alice" };
        let mut listed = s.list_by_subject(loser_subject).await.expect("list_by_subject");
        listed.retain(|r| r.handle == a.handle || r.handle == b.handle);
        assert!(
            listed.is_empty(),
            "round {round}: the loser is not indexed under its subject"
        );
    }
}
