//! Expiry (EX-01..04): the idle and absolute windows, expiry on every read,
//! logout, the sweep, and verification failures that write nothing.

use std::sync::Arc;

use serde_json::json;
use tessera_core::{
    CreateSession, EventKind, EventQuery, EventStore, Revocation, RevokeReason, SecretToken, SessionPolicy,
    SessionStore, TokenKind, TtlInput,
};

use super::*;
use crate::support::*;

pub async fn ex_01_idle_timeout_slides<S: SessionStore + EventStore>(store: Arc<S>) {
    // test_policy: idle 600 s, absolute 3600 s, touch at most every 60 s.
    let h = Harness::new(store);
    let s = h.login("alice").await;
    let handle = s.session.handle.clone();
    let tok = s.token.expose();
    let idle = 600 * SEC;

    // Activity every idle/2, for three idle windows: still alive, and each
    // verify slides the stored expiry to now + idle.
    for _ in 0..6 {
        h.advance_ms(idle / 2);
        let v = h
            .sessions
            .verify(tok)
            .await
            .expect("active use keeps the session alive");
        assert_eq!(v.last_seen_at, h.now());
        let stored = h.stored(&handle).await;
        assert_eq!(stored.last_seen_at, h.now(), "verify records the activity");
        assert_eq!(
            stored.idle_expires_at,
            h.now().plus_millis(idle),
            "the idle window slides"
        );
    }

    // Within the touch interval a verify does not rewrite the record.
    let written = h.stored(&handle).await;
    h.advance_ms(30 * SEC);
    h.sessions.verify(tok).await.expect("verify");
    assert_eq!(
        h.stored(&handle).await,
        written,
        "no write within touch_interval_secs"
    );

    // One millisecond short of the window (measured from the last write): alive.
    h.clock.set(written.last_seen_at.plus_millis(idle - 1));
    h.sessions.verify(tok).await.expect("alive until the idle expiry");
    let last = h.stored(&handle).await;
    assert_eq!(last.last_seen_at, h.now());

    // Idle for exactly the window: expired.
    h.advance_ms(idle);
    assert_eq!(kind(&h.sessions.verify(tok).await), "session_expired");
    assert_eq!(kind(&h.sessions.get(&handle).await), "not_found");
    assert!(h.sessions.list("alice").await.expect("list").is_empty());
    assert_eq!(h.stored(&handle).await, last, "a refused verify writes nothing");
}

pub async fn ex_02_absolute_timeout_never_moves<S: SessionStore + EventStore>(store: Arc<S>) {
    let policy = SessionPolicy {
        absolute_timeout_secs: 1800,
        ..test_policy()
    };
    let h = Harness::with_policy(store, policy);
    let s = h.login("alice").await;
    let handle = s.session.handle.clone();
    let absolute = T0.plus_millis(1800 * SEC);
    assert_eq!(s.session.absolute_expires_at, absolute);
    let mut tok = s.token.expose().to_owned();

    for step in 1..=5 {
        h.advance_ms(300 * SEC);
        if step == 3 {
            // Step-up and data changes do not extend the absolute lifetime either.
            tok = h
                .sessions
                .elevate(&tok, level(2, &["otp"]))
                .await
                .expect("elevate")
                .token
                .expose()
                .to_owned();
            h.sessions
                .patch_data(&handle, &json!({"step": step}))
                .await
                .expect("patch");
        } else {
            h.sessions.verify(&tok).await.expect("active");
        }
        let stored = h.stored(&handle).await;
        assert_eq!(
            stored.absolute_expires_at, absolute,
            "absolute expiry never moves (step {step})"
        );
        assert!(
            stored.idle_expires_at <= absolute,
            "the idle window is capped by the absolute expiry"
        );
    }
    h.clock.set(absolute.plus_millis(-1));
    h.sessions
        .verify(&tok)
        .await
        .expect("alive until the absolute expiry");
    assert_eq!(
        h.stored(&handle).await.idle_expires_at,
        absolute,
        "idle slide capped at absolute"
    );
    // Active a millisecond ago, yet over.
    h.clock.set(absolute);
    assert_eq!(kind(&h.sessions.verify(&tok).await), "session_expired");
    assert_eq!(
        kind(&h.sessions.elevate(&tok, level(2, &[])).await),
        "session_expired"
    );
}

pub async fn ex_03_expiry_checked_on_read_without_sweeper<S: SessionStore + EventStore>(store: Arc<S>) {
    let h = Harness::new(store);
    let s = h
        .sessions
        .create(with_data("alice", json!({"cart": [1]})))
        .await
        .expect("login");
    let handle = s.session.handle.clone();
    let tok = s.token.expose();
    // No sweeper runs in this case: expiry must be decided on every read.
    h.advance_ms(600 * SEC);
    let before = h.snapshot(&["alice"]).await;
    assert_eq!(kind(&h.sessions.verify(tok).await), "session_expired");
    assert_eq!(
        kind(&h.sessions.elevate(tok, level(2, &[])).await),
        "session_expired"
    );
    assert_eq!(kind(&h.sessions.get(&handle).await), "not_found");
    assert_eq!(
        kind(&h.sessions.patch_data(&handle, &json!({"x": 1})).await),
        "not_found"
    );
    assert!(h.sessions.list("alice").await.expect("list").is_empty());
    assert_eq!(h.store.count_active(h.now()).await.expect("count_active"), 0);
    assert_eq!(
        h.snapshot(&["alice"]).await,
        before,
        "refusing an expired session writes nothing"
    );
    let rec = h.stored(&handle).await;
    assert_eq!(
        rec.revoked, None,
        "still stored, never revoked: only the read decided"
    );

    // An expired pre-login session is neither replaced nor a source of data.
    let req = CreateSession {
        previous_session_token: Some(tok.to_owned()),
        ..login_request("alice")
    };
    let next = h.sessions.create(req).await.expect("login");
    assert!(
        next.session.data.is_empty(),
        "data of an expired session is not carried over"
    );
    assert_eq!(
        h.stored(&handle).await.revoked,
        None,
        "an expired session is not `replaced`"
    );

    // Logout of an expired session is idempotent success.
    h.sessions
        .revoke_token(tok, RevokeReason::Logout)
        .await
        .expect("logout of an expired session");
    assert_eq!(kind(&h.sessions.verify(tok).await), "session_revoked");
}

pub async fn ex_04_logout_invalidates<S: SessionStore + EventStore>(store: Arc<S>) {
    let h = Harness::new(store);
    let a = h.login("alice").await;
    let other = h.login("alice").await;
    let tok = a.token.expose();
    h.advance_ms(5 * SEC);
    h.sessions
        .revoke_token(tok, RevokeReason::Logout)
        .await
        .expect("logout");
    let at = h.now();

    assert_eq!(
        kind(&h.sessions.verify(tok).await),
        "session_revoked",
        "a logged-out token is refused"
    );
    assert_eq!(
        h.stored(&a.session.handle).await.revoked,
        Some(Revocation {
            at,
            reason: RevokeReason::Logout
        })
    );
    let kinds = |evs: Vec<tessera_core::Event>| {
        evs.into_iter()
            .map(|e| (e.event.kind, e.event.reason))
            .collect::<Vec<_>>()
    };
    let expected = vec![
        (EventKind::Created, None),
        (EventKind::Revoked, Some(RevokeReason::Logout)),
    ];
    assert_eq!(kinds(events_of(&*h.store, &a.session.handle).await), expected);

    h.advance_ms(SEC);
    h.sessions
        .revoke_token(tok, RevokeReason::Logout)
        .await
        .expect("logout is idempotent");
    assert_eq!(
        kinds(events_of(&*h.store, &a.session.handle).await),
        expected,
        "a second logout writes no second event"
    );
    assert_eq!(
        h.stored(&a.session.handle).await.revoked.map(|r| r.at),
        Some(at),
        "the first revocation stands"
    );
    assert_eq!(
        kind(&h.sessions.elevate(tok, level(2, &[])).await),
        "session_revoked"
    );
    assert_eq!(kind(&h.sessions.get(&a.session.handle).await), "not_found");
    assert_eq!(
        kind(&h.sessions.patch_data(&a.session.handle, &json!({"x": 1})).await),
        "not_found"
    );
    assert_eq!(
        h.sessions
            .revoke(&a.session.handle, RevokeReason::Revoked)
            .await
            .ok(),
        Some(false),
        "revoking by handle reports it was already revoked"
    );
    let listed = h.sessions.list("alice").await.expect("list");
    assert_eq!(
        listed.iter().map(|s| s.handle.clone()).collect::<Vec<_>>(),
        vec![other.session.handle.clone()]
    );
    assert_eq!(kind(&h.sessions.verify(other.token.expose()).await), "ok");
}

pub async fn verify_failures_leave_store_unchanged<S: SessionStore + EventStore>(store: Arc<S>) {
    let h = Harness::new(store);
    let live = h
        .sessions
        .create(with_data("alice", json!({"k": 1})))
        .await
        .expect("login");
    let revoked = h.login("alice").await;
    h.sessions
        .revoke_token(revoked.token.expose(), RevokeReason::Logout)
        .await
        .expect("logout");
    let short = CreateSession {
        ttl: Some(TtlInput {
            idle_secs: Some(60),
            absolute_secs: None,
        }),
        ..login_request("alice")
    };
    let expired = h.sessions.create(short).await.expect("login");
    let stale = h.login("alice").await;
    h.sessions
        .elevate(stale.token.expose(), level(2, &[]))
        .await
        .expect("elevate");
    h.advance_ms(120 * SEC);

    let subjects = ["alice", "bob"];
    let before = h.snapshot(&subjects).await;
    let unknown = SecretToken::generate(TokenKind::Session);
    let tokens = [
        ("unknown", unknown.expose(), "session_invalid"),
        ("malformed", "tss_not-a-token", "session_invalid"),
        ("revoked", revoked.token.expose(), "session_revoked"),
        ("expired", expired.token.expose(), "session_expired"),
        ("replaced by elevate", stale.token.expose(), "session_invalid"),
    ];
    for (what, tok, want) in tokens {
        assert_eq!(kind(&h.sessions.verify(tok).await), want, "verify {what}");
        assert_eq!(
            kind(&h.sessions.elevate(tok, level(2, &[])).await),
            want,
            "elevate {what}"
        );
        assert_eq!(
            h.snapshot(&subjects).await,
            before,
            "a failed verify/elevate ({what}) writes nothing"
        );
    }
    // Refused input on a live session.
    let live_tok = live.token.expose();
    assert_eq!(
        kind(&h.sessions.elevate(live_tok, level(0, &[])).await),
        "validation_failed"
    );
    assert_eq!(
        kind(&h.sessions.elevate(live_tok, level(99, &[])).await),
        "validation_failed"
    );
    assert_eq!(
        kind(&h.sessions.elevate(live_tok, level(2, &["bad method"])).await),
        "validation_failed"
    );
    let handle = &live.session.handle;
    assert_eq!(
        kind(&h.sessions.patch_data(handle, &json!([1])).await),
        "validation_failed"
    );
    let huge = json!({"big": "x".repeat(20 * 1024)});
    assert_eq!(
        kind(&h.sessions.patch_data(handle, &huge).await),
        "payload_too_large"
    );
    assert_eq!(
        kind(
            &h.sessions
                .patch_data(&expired.session.handle, &json!({"a": 1}))
                .await
        ),
        "not_found"
    );
    assert_eq!(
        kind(
            &h.sessions
                .patch_data(&revoked.session.handle, &json!({"a": 1}))
                .await
        ),
        "not_found"
    );
    assert_eq!(
        kind(&h.sessions.revoke("bogus", RevokeReason::Revoked).await),
        "not_found"
    );
    assert_eq!(
        kind(
            &h.sessions
                .revoke_token(unknown.expose(), RevokeReason::Logout)
                .await
        ),
        "session_invalid"
    );
    assert_eq!(
        kind(&h.sessions.create(login_request("")).await),
        "validation_failed"
    );
    assert_eq!(
        kind(&h.sessions.create(with_data("bob", huge)).await),
        "payload_too_large"
    );
    assert_eq!(
        h.snapshot(&subjects).await,
        before,
        "refused requests write nothing"
    );
}

pub async fn sweep_through_sessions_loops_until_done<S: SessionStore + EventStore>(store: Arc<S>) {
    let h = Harness::new(store);
    let short = || CreateSession {
        ttl: Some(TtlInput {
            idle_secs: Some(60),
            absolute_secs: None,
        }),
        ..login_request("alice")
    };
    let mut gone = Vec::new();
    for _ in 0..5 {
        gone.push(h.sessions.create(short()).await.expect("login"));
    }
    let stays = h.login("bob").await;
    h.advance_ms(60 * SEC);
    assert_eq!(
        h.sessions.sweep(2).await.expect("sweep"),
        5,
        "all five, in batches of two"
    );
    for s in &gone {
        assert!(h.store.get(&s.session.handle).await.expect("get").is_none());
    }
    h.stored(&stays.session.handle).await;
    let q = EventQuery {
        kind: Some(EventKind::Expired),
        ..EventQuery::default()
    };
    let expired: Vec<String> = events_matching(&*h.store, q)
        .await
        .into_iter()
        .map(|e| e.event.handle)
        .collect();
    let handles: Vec<String> = gone.iter().map(|s| s.session.handle.clone()).collect();
    assert_eq!(sorted(&expired), sorted(&handles));
    assert_eq!(h.sessions.sweep(2).await.expect("sweep"), 0);
}
