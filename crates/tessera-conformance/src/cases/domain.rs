//! Domain rules (SPEC §1, §5 and the SC/EX/FX checklist) through `Sessions`
//! on the store under test. Time is a `ManualClock`: cases move it, never
//! sleep.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use tessera_core::token::{self, SESSION_HANDLE_PREFIX};
use tessera_core::{
    AuthInfo, AuthInput, CreateSession, EventKind, EventQuery, IssuedSession, Revocation, RevokeReason,
    SecretToken, SessionPolicy, SessionStore, TokenKind, TtlInput,
};

use crate::support::*;

fn level(l: u8, methods: &[&str]) -> AuthInput {
    AuthInput {
        level: Some(l),
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
    }
}

fn with_data(subject: &str, data: Value) -> CreateSession {
    CreateSession {
        data: Some(obj(data)),
        ..login_request(subject)
    }
}

/// Events of `kind` with `reason` in the whole log.
async fn revoked_events(h: &Harness, reason: RevokeReason) -> Vec<String> {
    let q = EventQuery {
        kind: Some(EventKind::Revoked),
        ..EventQuery::default()
    };
    events_matching(&*h.store, q)
        .await
        .into_iter()
        .filter(|e| e.event.reason == Some(reason))
        .map(|e| e.event.handle)
        .collect()
}

pub async fn sc_01_tokens_unique_and_hashed_at_rest(store: Arc<dyn SessionStore>) {
    const N: usize = 1000;
    let h = Harness::new(store);
    // Four logins at a time: uniqueness must hold under concurrent issuing too.
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..4 {
        let h = h.clone();
        tasks.spawn(async move {
            let mut v = Vec::with_capacity(N / 4);
            for i in 0..N / 4 {
                v.push(h.login(&format!("user-{t}-{}", i % 10)).await);
            }
            v
        });
    }
    let issued: Vec<IssuedSession> = join_all(tasks).await.into_iter().flatten().collect();
    assert_eq!(issued.len(), N);

    let tokens: HashSet<&str> = issued.iter().map(|i| i.token.expose()).collect();
    let hashes: HashSet<_> = issued.iter().map(|i| i.token.hash()).collect();
    let handles: HashSet<&str> = issued.iter().map(|i| i.session.handle.as_str()).collect();
    assert_eq!(tokens.len(), N, "every login gets a distinct token");
    assert_eq!(hashes.len(), N, "every token has a distinct hash");
    assert_eq!(handles.len(), N, "every session has a distinct handle");

    let events_json = serde_json::to_string(&all_events(&*h.store).await).expect("events serialize");
    for i in &issued {
        let tok = i.token.expose();
        let body = &tok[TokenKind::Session.prefix().len()..];
        assert_eq!(
            tok.len(),
            TokenKind::Session.encoded_len(),
            "tss_ plus 43 base64url chars (256 bits)"
        );
        // `parse` decodes the 32 secret bytes and hashes them: the stored
        // hash is SHA-256 of the secret, which the secret itself is not.
        assert_eq!(
            token::parse(TokenKind::Session, tok.as_bytes()),
            Ok(i.token.hash())
        );
        let stored = h.stored(&i.session.handle).await;
        assert_eq!(stored, *i.session, "the store holds exactly the issued record");
        assert_eq!(
            stored.token_hash,
            i.token.hash(),
            "the record holds only the token's hash"
        );
        let at_rest = format!("{stored:?}");
        assert!(
            !at_rest.contains(body),
            "the raw token must not be stored in any field"
        );
        assert!(
            !i.session.handle.contains(body),
            "the handle is not derived from the token"
        );
        assert!(!events_json.contains(body), "events never contain a token");
        let found = h.store.get_by_token(&i.token.hash()).await.expect("get_by_token");
        assert_eq!(found.map(|r| r.handle.clone()), Some(i.session.handle.clone()));
    }
    assert_eq!(
        h.store.count_active(h.now()).await.expect("count_active"),
        N as u64
    );
}

pub async fn sc_03_unknown_token_never_adopted(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let victim = h.login("alice").await;
    // Well-formed, but never issued: what an attacker plants in a cookie.
    let planted = SecretToken::generate(TokenKind::Session);
    let before = h.snapshot(&["alice"]).await;
    assert_eq!(
        kind(&h.sessions.verify(planted.expose()).await),
        "session_invalid"
    );
    assert_eq!(
        kind(&h.sessions.elevate(planted.expose(), level(2, &[])).await),
        "session_invalid"
    );
    assert_eq!(
        kind(
            &h.sessions
                .revoke_token(planted.expose(), RevokeReason::Logout)
                .await
        ),
        "session_invalid"
    );
    assert_eq!(
        h.snapshot(&["alice"]).await,
        before,
        "an unknown token writes nothing"
    );

    // Presented at login as the "previous" session, it is not adopted: the
    // login gets a fresh token and the planted value stays unknown.
    let req = CreateSession {
        previous_session_token: Some(planted.expose().to_owned()),
        ..with_data("alice", json!({"k": 1}))
    };
    let s = h
        .sessions
        .create(req)
        .await
        .expect("login with an unknown previous token");
    assert_ne!(s.token.expose(), planted.expose());
    assert_ne!(s.token.hash(), planted.hash());
    assert_eq!(
        s.session.data,
        obj(json!({"k": 1})),
        "nothing carried over from nowhere"
    );
    assert!(
        h.store
            .get_by_token(&planted.hash())
            .await
            .expect("get_by_token")
            .is_none()
    );
    assert_eq!(
        kind(&h.sessions.verify(planted.expose()).await),
        "session_invalid"
    );
    assert!(
        revoked_events(&h, RevokeReason::Replaced).await.is_empty(),
        "nothing was replaced"
    );
    assert_eq!(kind(&h.sessions.verify(victim.token.expose()).await), "ok");
}

pub async fn sc_12_two_logins_two_tokens(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let a = h.login("alice").await;
    let b = h.login("alice").await;
    assert_ne!(a.token.expose(), b.token.expose(), "two logins, two tokens");
    assert_ne!(a.token.hash(), b.token.hash());
    assert_ne!(a.session.handle, b.session.handle, "two logins, two sessions");
    let va = h.sessions.verify(a.token.expose()).await.expect("verify a");
    let vb = h.sessions.verify(b.token.expose()).await.expect("verify b");
    assert_eq!(va.handle, a.session.handle);
    assert_eq!(vb.handle, b.session.handle);
    let listed: Vec<String> = h
        .sessions
        .list("alice")
        .await
        .expect("list")
        .iter()
        .map(|s| s.handle.clone())
        .collect();
    assert_eq!(
        sorted(&listed),
        sorted(&[a.session.handle.clone(), b.session.handle.clone()])
    );
}

pub async fn sc_13_malformed_tokens_rejected_without_write(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let s = h.login("alice").await;
    let valid = s.token.expose();
    let body = &valid[4..];
    let swap_char = |at: usize, c: char| {
        let mut t: Vec<char> = valid.chars().collect();
        t[at] = c;
        t.into_iter().collect::<String>()
    };
    // Non-UTF-8 bytes cannot reach `verify(&str)`; the HTTP edge turns them
    // away before (its own tests cover that).
    let malformed = vec![
        "a".repeat(10 * 1024),
        swap_char(10, '\0'),
        "' OR 1=1--".to_owned(),
        String::new(),
        format!("tss_{}", "=".repeat(43)),
        format!("tsk_{body}"),
        format!("TSS_{body}"),
        format!("{valid}x"),
        valid[..valid.len() - 1].to_owned(),
        format!(" {}", &valid[..valid.len() - 1]),
        swap_char(20, '+'),
        swap_char(20, '/'),
        swap_char(20, 'é'),
        "\0".repeat(TokenKind::Session.encoded_len()),
        // Non-canonical: the last character carries bits past the 256th.
        format!("tss_{}B", "A".repeat(42)),
        format!("tss_{}%00", &body[..40]),
    ];
    let before = h.snapshot(&["alice"]).await;
    for m in &malformed {
        let shown: String = m.chars().take(60).collect();
        assert_eq!(
            kind(&h.sessions.verify(m).await),
            "session_invalid",
            "verify {shown:?}"
        );
        assert_eq!(
            kind(&h.sessions.elevate(m, level(2, &[])).await),
            "session_invalid",
            "elevate {shown:?}"
        );
        assert_eq!(
            kind(&h.sessions.revoke_token(m, RevokeReason::Logout).await),
            "session_invalid",
            "logout {shown:?}"
        );
    }
    assert_eq!(
        h.snapshot(&["alice"]).await,
        before,
        "malformed tokens write nothing"
    );
    let v = h
        .sessions
        .verify(valid)
        .await
        .expect("the real token still works");
    assert_eq!(v.handle, s.session.handle);
}

pub async fn ex_01_idle_timeout_slides(store: Arc<dyn SessionStore>) {
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

pub async fn ex_02_absolute_timeout_never_moves(store: Arc<dyn SessionStore>) {
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

pub async fn ex_03_expiry_checked_on_read_without_sweeper(store: Arc<dyn SessionStore>) {
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

pub async fn ex_04_logout_invalidates(store: Arc<dyn SessionStore>) {
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

pub async fn ex_07_revoke_all_ends_every_session(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let mut alice = Vec::new();
    for _ in 0..3 {
        alice.push(h.login("alice").await);
    }
    let bob = h.login("bob").await;
    h.advance_ms(SEC);
    let n = h
        .sessions
        .revoke_all("alice", None, RevokeReason::RevokeAll)
        .await
        .expect("revoke_all");
    assert_eq!(n, 3);
    for s in &alice {
        assert_eq!(
            kind(&h.sessions.verify(s.token.expose()).await),
            "session_revoked"
        );
        assert_eq!(
            h.stored(&s.session.handle).await.revoked.map(|r| r.reason),
            Some(RevokeReason::RevokeAll)
        );
    }
    assert_eq!(
        kind(&h.sessions.verify(bob.token.expose()).await),
        "ok",
        "other subjects unaffected"
    );
    let handles: Vec<String> = alice.iter().map(|s| s.session.handle.clone()).collect();
    assert_eq!(
        sorted(&revoked_events(&h, RevokeReason::RevokeAll).await),
        sorted(&handles)
    );
    assert_eq!(
        h.sessions
            .revoke_all("alice", None, RevokeReason::RevokeAll)
            .await
            .expect("revoke_all"),
        0
    );
    assert!(h.sessions.list("alice").await.expect("list").is_empty());
    assert_eq!(h.store.count_active(h.now()).await.expect("count_active"), 1);
}

pub async fn ex_08_revoke_all_except_current(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let cur = h.login("alice").await;
    let o1 = h.login("alice").await;
    let o2 = h.login("alice").await;
    let bob = h.login("bob").await;
    h.advance_ms(10 * SEC);
    // Password change: re-authenticate (rotating the current token), then
    // end every other session.
    let rotated = h
        .sessions
        .elevate(cur.token.expose(), level(1, &["pwd"]))
        .await
        .expect("re-authenticate");
    let n = h
        .sessions
        .revoke_all("alice", Some(&cur.session.handle), RevokeReason::RevokeAll)
        .await
        .expect("revoke_all");
    assert_eq!(n, 2);
    let v = h
        .sessions
        .verify(rotated.token.expose())
        .await
        .expect("the current session continues");
    assert_eq!(v.handle, cur.session.handle);
    assert_eq!(
        kind(&h.sessions.verify(cur.token.expose()).await),
        "session_invalid",
        "under a new token"
    );
    for o in [&o1, &o2] {
        assert_eq!(
            kind(&h.sessions.verify(o.token.expose()).await),
            "session_revoked"
        );
    }
    assert_eq!(kind(&h.sessions.verify(bob.token.expose()).await), "ok");
    let listed = h.sessions.list("alice").await.expect("list");
    assert_eq!(
        listed.iter().map(|s| s.handle.clone()).collect::<Vec<_>>(),
        vec![cur.session.handle.clone()]
    );
}

pub async fn ex_09_admin_revokes_one_subject(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let x1 = h.login("user-x").await;
    let x2 = h.login("user-x").await;
    let y1 = h.login("user-y").await;
    let y2 = h.login("user-y").await;

    // One session by handle.
    assert_eq!(
        h.sessions
            .revoke(&x1.session.handle, RevokeReason::Revoked)
            .await
            .ok(),
        Some(true)
    );
    assert_eq!(
        h.sessions
            .revoke(&x1.session.handle, RevokeReason::Revoked)
            .await
            .ok(),
        Some(false),
        "second revoke reports it was already revoked"
    );
    assert_eq!(
        kind(&h.sessions.verify(x1.token.expose()).await),
        "session_revoked"
    );
    assert_eq!(kind(&h.sessions.verify(x2.token.expose()).await), "ok");

    // Every session of one subject.
    let n = h
        .sessions
        .revoke_all("user-x", None, RevokeReason::Operator)
        .await
        .expect("revoke_all");
    assert_eq!(n, 1, "only the one still active");
    assert_eq!(
        kind(&h.sessions.verify(x2.token.expose()).await),
        "session_revoked"
    );
    assert_eq!(
        h.stored(&x2.session.handle).await.revoked.map(|r| r.reason),
        Some(RevokeReason::Operator)
    );
    for y in [&y1, &y2] {
        assert_eq!(
            kind(&h.sessions.verify(y.token.expose()).await),
            "ok",
            "other subjects unaffected"
        );
    }

    let unknown = token::new_id(SESSION_HANDLE_PREFIX);
    assert_eq!(
        kind(&h.sessions.revoke(&unknown, RevokeReason::Revoked).await),
        "not_found"
    );
    assert_eq!(
        kind(&h.sessions.revoke("ses_../../x", RevokeReason::Revoked).await),
        "not_found"
    );

    // Everyone: the remaining subject too.
    h.sessions
        .revoke_all("user-y", None, RevokeReason::Operator)
        .await
        .expect("revoke_all");
    for s in [&x1, &x2, &y1, &y2] {
        assert_eq!(
            kind(&h.sessions.verify(s.token.expose()).await),
            "session_revoked"
        );
    }
    assert_eq!(h.store.count_active(h.now()).await.expect("count_active"), 0);
}

pub async fn ex_11_session_limit_revokes_oldest(store: Arc<dyn SessionStore>) {
    let policy = SessionPolicy {
        max_sessions_per_subject: Some(3),
        ..test_policy()
    };
    let h = Harness::with_policy(store, policy);
    let mut a = Vec::new();
    for _ in 0..4 {
        a.push(h.login("alice").await);
        h.advance_ms(SEC);
    }
    assert_eq!(
        kind(&h.sessions.verify(a[0].token.expose()).await),
        "session_revoked",
        "oldest is revoked"
    );
    assert_eq!(
        h.stored(&a[0].session.handle).await.revoked.map(|r| r.reason),
        Some(RevokeReason::SessionLimit)
    );
    for s in &a[1..] {
        assert_eq!(kind(&h.sessions.verify(s.token.expose()).await), "ok");
    }
    let listed: Vec<String> = h
        .sessions
        .list("alice")
        .await
        .expect("list")
        .iter()
        .map(|s| s.handle.clone())
        .collect();
    let newest_first: Vec<String> = a[1..].iter().rev().map(|s| s.session.handle.clone()).collect();
    assert_eq!(listed, newest_first, "three active, newest first");

    // Another subject's logins do not count against alice.
    for _ in 0..3 {
        h.login("bob").await;
    }
    assert_eq!(h.sessions.list("alice").await.expect("list").len(), 3);

    // A logged-out session frees its slot: no eviction.
    h.sessions
        .revoke_token(a[1].token.expose(), RevokeReason::Logout)
        .await
        .expect("logout");
    h.advance_ms(SEC);
    a.push(h.login("alice").await);
    assert_eq!(
        kind(&h.sessions.verify(a[2].token.expose()).await),
        "ok",
        "no eviction below the limit"
    );
    h.advance_ms(SEC);
    a.push(h.login("alice").await);
    assert_eq!(
        kind(&h.sessions.verify(a[2].token.expose()).await),
        "session_revoked"
    );
    assert_eq!(
        sorted(&revoked_events(&h, RevokeReason::SessionLimit).await),
        sorted(&[a[0].session.handle.clone(), a[2].session.handle.clone()]),
        "exactly the two oldest were evicted"
    );
    assert_eq!(h.sessions.list("alice").await.expect("list").len(), 3);
}

pub async fn fx_01_login_replaces_previous_session_and_carries_data(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let pre = h
        .sessions
        .create(with_data("alice", json!({"cart": [1, 2], "theme": "dark"})))
        .await
        .expect("pre-login session");
    h.advance_ms(30 * SEC);
    let req = CreateSession {
        previous_session_token: Some(pre.token.expose().to_owned()),
        ..with_data("alice", json!({"theme": "light", "lang": "de"}))
    };
    let post = h.sessions.create(req).await.expect("login");
    let at = h.now();
    assert_ne!(
        post.token.expose(),
        pre.token.expose(),
        "login issues a new token"
    );
    assert_ne!(post.session.handle, pre.session.handle);
    let carried = obj(json!({"cart": [1, 2], "theme": "light", "lang": "de"}));
    assert_eq!(
        post.session.data, carried,
        "the same subject's data is carried over; the request wins on conflicts"
    );
    assert_eq!(h.stored(&post.session.handle).await.data, carried);
    assert_eq!(post.session.subject, "alice");

    assert_eq!(
        kind(&h.sessions.verify(pre.token.expose()).await),
        "session_revoked",
        "S0 is dead"
    );
    assert_eq!(
        h.stored(&pre.session.handle).await.revoked,
        Some(Revocation {
            at,
            reason: RevokeReason::Replaced
        })
    );
    let pre_revoked = events_of(&*h.store, &pre.session.handle).await;
    let post_created = events_of(&*h.store, &post.session.handle).await;
    let revoked_id = pre_revoked
        .iter()
        .find(|e| e.event.kind == EventKind::Revoked)
        .map(|e| e.id)
        .expect("a revoked event for S0");
    let created_id = post_created
        .first()
        .map(|e| e.id)
        .expect("a created event for S1");
    assert!(
        revoked_id < created_id,
        "the replaced session's revocation is logged first"
    );
    assert_eq!(kind(&h.sessions.verify(post.token.expose()).await), "ok");

    // Replaying S0 at another login carries nothing and replaces nothing.
    let req = CreateSession {
        previous_session_token: Some(pre.token.expose().to_owned()),
        ..login_request("alice")
    };
    let again = h.sessions.create(req).await.expect("login");
    assert!(
        again.session.data.is_empty(),
        "a revoked session's data is not carried over"
    );
    assert_eq!(
        revoked_events(&h, RevokeReason::Replaced).await,
        vec![pre.session.handle.clone()]
    );

    // FX-04: a planted cookie that is not even a token is ignored at login.
    let req = CreateSession {
        previous_session_token: Some("fixed123".to_owned()),
        ..login_request("alice")
    };
    let fixed = h.sessions.create(req).await.expect("login with a planted cookie");
    assert_ne!(fixed.token.expose(), "fixed123");
    assert_eq!(kind(&h.sessions.verify("fixed123").await), "session_invalid");
}

/// FX-01 on a shared browser: a login of another subject over a live
/// session ends that session in the same step but carries none of its data.
pub async fn fx_01_login_of_another_subject_drops_previous_data(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let alice = h
        .sessions
        .create(with_data("alice", json!({"role": "admin"})))
        .await
        .expect("alice's session");
    h.advance_ms(SEC);
    let req = CreateSession {
        previous_session_token: Some(alice.token.expose().to_owned()),
        ..with_data("bob", json!({"lang": "de"}))
    };
    let bob = h.sessions.create(req).await.expect("bob's login");
    let at = h.now();
    let own = obj(json!({"lang": "de"}));
    assert_eq!(bob.session.data, own, "none of alice's data reaches bob");
    assert_eq!(h.stored(&bob.session.handle).await.data, own);
    assert_eq!(
        h.stored(&alice.session.handle).await.revoked,
        Some(Revocation {
            at,
            reason: RevokeReason::Replaced
        }),
        "alice's session still ends with the login"
    );
    assert_eq!(
        kind(&h.sessions.verify(alice.token.expose()).await),
        "session_revoked"
    );
    assert_eq!(kind(&h.sessions.verify(bob.token.expose()).await), "ok");
}

pub async fn fx_02_elevate_rotates_token_keeps_handle(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let req = CreateSession {
        auth: Some(level(1, &["pwd"])),
        ..with_data("alice", json!({"k": "v"}))
    };
    let s = h.sessions.create(req).await.expect("login");
    h.advance_ms(90 * SEC);
    let e = h
        .sessions
        .elevate(s.token.expose(), level(2, &["otp", "pwd"]))
        .await
        .expect("elevate");
    let now = h.now();
    assert_ne!(e.token.expose(), s.token.expose(), "step-up rotates the token");
    assert_ne!(e.token.hash(), s.token.hash());
    assert_eq!(e.session.handle, s.session.handle, "the handle stays");

    let stored = h.stored(&s.session.handle).await;
    assert_eq!(stored, *e.session, "the store holds what elevate returned");
    assert_eq!(stored.token_hash, e.token.hash());
    assert_eq!(
        stored.auth,
        AuthInfo {
            level: 2,
            methods: vec!["pwd".into(), "otp".into()],
            time: now
        },
        "new level, methods appended once, auth time = now"
    );
    assert!(stored.version > s.session.version);
    assert_eq!(stored.created_at, s.session.created_at);
    assert_eq!(stored.absolute_expires_at, s.session.absolute_expires_at);
    assert_eq!(stored.idle_expires_at, now.plus_millis(600 * SEC));
    assert_eq!(stored.data, s.session.data);
    assert_eq!(stored.subject, s.session.subject);
    assert_eq!(stored.device, s.session.device);
    let evs = events_of(&*h.store, &s.session.handle).await;
    let last = evs.last().expect("events");
    assert_eq!((last.event.kind, last.event.at), (EventKind::Elevated, now));
    let v = h
        .sessions
        .verify(e.token.expose())
        .await
        .expect("the new token works");
    assert_eq!(v.handle, s.session.handle);
}

pub async fn fx_03_old_token_dead_after_elevate(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let s = h.login("alice").await;
    let e = h
        .sessions
        .elevate(s.token.expose(), level(2, &["otp"]))
        .await
        .expect("elevate");
    let old = s.token.expose();
    let before = h.snapshot(&["alice"]).await;
    assert_eq!(kind(&h.sessions.verify(old).await), "session_invalid");
    assert_eq!(
        kind(&h.sessions.elevate(old, level(3, &[])).await),
        "session_invalid"
    );
    assert_eq!(
        kind(&h.sessions.revoke_token(old, RevokeReason::Logout).await),
        "session_invalid",
        "a dead token cannot even log the session out"
    );
    assert_eq!(
        h.snapshot(&["alice"]).await,
        before,
        "an old token writes nothing"
    );
    assert!(
        h.store
            .get_by_token(&s.token.hash())
            .await
            .expect("get_by_token")
            .is_none()
    );
    h.sessions
        .verify(e.token.expose())
        .await
        .expect("the new token works");

    let e2 = h
        .sessions
        .elevate(e.token.expose(), level(3, &[]))
        .await
        .expect("elevate again");
    assert_eq!(
        kind(&h.sessions.verify(e.token.expose()).await),
        "session_invalid"
    );
    assert_eq!(kind(&h.sessions.verify(old).await), "session_invalid");
    assert_eq!(kind(&h.sessions.verify(e2.token.expose()).await), "ok");
}

pub async fn verify_failures_leave_store_unchanged(store: Arc<dyn SessionStore>) {
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

pub async fn data_merge_patch_persists(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let s = h
        .sessions
        .create(with_data("alice", json!({"x": 1, "a": {"c": 2}, "keep": "k"})))
        .await
        .expect("login");
    let handle = &s.session.handle;
    let r = h
        .sessions
        .patch_data(handle, &json!({"a": {"b": 1}, "x": null}))
        .await
        .expect("patch");
    let want = obj(json!({"a": {"b": 1, "c": 2}, "keep": "k"}));
    assert_eq!(r.data, want, "RFC 7396: merge objects, null deletes");
    let stored = h.stored(handle).await;
    assert_eq!(stored.data, want);
    assert_eq!(stored.version, s.session.version + 1);
    let v = h.sessions.verify(s.token.expose()).await.expect("verify");
    assert_eq!(v.data, want);
}

pub async fn sweep_through_sessions_loops_until_done(store: Arc<dyn SessionStore>) {
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

/// EX-09, the other half: an operator ends every active session of every
/// subject, in batches; sessions already revoked or expired are left as
/// they are, and each revocation is one `revoked` event.
pub async fn ex_09_operator_revokes_everyone_in_batches(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let mut live = Vec::new();
    for i in 0..3 {
        for _ in 0..4 {
            live.push(h.login(&format!("everyone-{i}")).await);
        }
    }
    let gone = h.login("everyone-0").await;
    h.sessions
        .revoke(&gone.session.handle, RevokeReason::Logout)
        .await
        .expect("revoke");
    // A session that expires before the operator acts.
    let mut short = login_request("everyone-1");
    short.ttl = Some(tessera_core::TtlInput {
        idle_secs: Some(5),
        absolute_secs: None,
    });
    let expired = h.sessions.create(short).await.expect("create");
    h.advance_ms(6 * SEC);
    let before = all_events(&*h.store).await.len();

    let n = h
        .sessions
        .revoke_everyone(RevokeReason::Operator, 5)
        .await
        .expect("revoke_everyone");
    assert_eq!(n, live.len() as u64, "every active session, across batches of 5");
    for s in &live {
        assert_eq!(
            kind(&h.sessions.verify(s.token.expose()).await),
            "session_revoked"
        );
        assert_eq!(
            h.stored(&s.session.handle).await.revoked.map(|r| r.reason),
            Some(RevokeReason::Operator)
        );
    }
    assert_eq!(
        h.stored(&gone.session.handle).await.revoked.map(|r| r.reason),
        Some(RevokeReason::Logout),
        "an earlier revocation keeps its reason"
    );
    assert!(
        h.stored(&expired.session.handle).await.revoked.is_none(),
        "expired ones are the sweeper's"
    );
    let new_events = &all_events(&*h.store).await[before..];
    assert_eq!(new_events.len(), live.len(), "one event per revoked session");
    assert!(
        new_events
            .iter()
            .all(|e| e.event.kind == EventKind::Revoked && e.event.reason == Some(RevokeReason::Operator))
    );
    assert_eq!(
        h.sessions
            .revoke_everyone(RevokeReason::Operator, 5)
            .await
            .expect("again"),
        0,
        "nothing left to revoke"
    );
}
