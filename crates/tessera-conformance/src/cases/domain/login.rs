//! Login and step-up: tokens (SC), replacement of the previous session and
//! what it carries over, and the token change on elevation (FX).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use tessera_core::secret::{self};
use tessera_core::{
    AuthInfo, CreateSession, EventKind, EventStore, IssuedSession, Revocation, RevokeReason, SecretToken,
    SessionStore, TokenKind,
};

use super::*;
use crate::support::*;

pub async fn sc_01_tokens_unique_and_hashed_at_rest<S: SessionStore + EventStore>(store: Arc<S>) {
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
            secret::parse(TokenKind::Session, tok.as_bytes()),
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

pub async fn sc_03_unknown_token_never_adopted<S: SessionStore + EventStore>(store: Arc<S>) {
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

pub async fn sc_12_two_logins_two_tokens<S: SessionStore + EventStore>(store: Arc<S>) {
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

pub async fn sc_13_malformed_tokens_rejected_without_write<S: SessionStore + EventStore>(store: Arc<S>) {
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

pub async fn fx_01_login_replaces_previous_session_and_carries_data<S: SessionStore + EventStore>(
    store: Arc<S>,
) {
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
pub async fn fx_01_login_of_another_subject_drops_previous_data<S: SessionStore + EventStore>(store: Arc<S>) {
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

pub async fn fx_02_elevate_rotates_token_keeps_handle<S: SessionStore + EventStore>(store: Arc<S>) {
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

pub async fn fx_03_old_token_dead_after_elevate<S: SessionStore + EventStore>(store: Arc<S>) {
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
