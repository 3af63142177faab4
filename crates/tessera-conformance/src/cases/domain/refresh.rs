//! Refresh-token rotation through the token service: the rotation race, the
//! grace window and reuse detection of SPEC §1 must hold on every backend.
//! The service signs its access tokens with keys from the same store.

use std::sync::Arc;

use tessera_core::tokens::TokenService;
use tessera_core::{
    Client, ClientRegistry, EventKind, EventQuery, EventStore, KeyManager, KeyPolicy, RefreshStore,
    RevokeReason, Sealer, SecretToken, SigningKeyStore, TokenPolicy, TokenRequest,
};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::support::*;

const RACERS: usize = 16;

async fn token_service<S: RefreshStore + SigningKeyStore + EventStore>(
    h: &Harness<S>,
    grace_secs: i64,
) -> TokenService {
    let sealer = Arc::new(Sealer::new(&Sealer::generate_key()));
    let keys = Arc::new(KeyManager::new(
        h.store.clone(),
        Arc::new(h.clock.clone()),
        sealer.clone(),
        KeyPolicy::default(),
    ));
    keys.ensure_key().await.expect("ensure_key");
    keys.reload().await.expect("reload");
    TokenService::new(
        h.sessions.clone(),
        h.store.clone(),
        keys,
        Arc::new(ClientRegistry::new(Vec::new()).expect("registry")),
        sealer,
        TokenPolicy {
            reuse_grace_secs: grace_secs,
            ..TokenPolicy::default()
        },
    )
}

/// A refresh token issued for `session` to the default client.
async fn issue(svc: &TokenService, session: &tessera_core::SessionRecord) -> SecretToken {
    svc.issue_for_session(session, &TokenRequest::default())
        .await
        .expect("issue")
        .refresh_token
        .expect("refresh token")
}

/// The successor of `rt` from one refresh that must succeed.
async fn rotate(svc: &TokenService, client: &Client, rt: &SecretToken, what: &str) -> SecretToken {
    svc.refresh(rt.expose(), client, None)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
        .refresh_token
        .expect("successor")
}

async fn count(store: &dyn EventStore, handle: &str, kind: EventKind) -> usize {
    events_matching(
        store,
        EventQuery {
            handle: Some(handle.to_owned()),
            kind: Some(kind),
            ..EventQuery::default()
        },
    )
    .await
    .len()
}

/// N concurrent refreshes with the same token inside the grace window:
/// exactly one rotation (one new family member), and every caller gets that
/// same successor.
pub async fn rt_11_concurrent_refreshes_rotate_once_and_share_the_successor<
    S: RefreshStore + SigningKeyStore + EventStore,
>(
    store: Arc<S>,
) {
    let h = Harness::new(store);
    let svc = token_service(&h, 10).await;
    let client = svc.clients().get("default").expect("default client").clone();
    for round in 0..10 {
        let s = h.login(&format!("racer{round}")).await;
        let t = svc
            .issue_for_session(&s.session, &TokenRequest::default())
            .await
            .expect("issue");
        let rt = t.refresh_token.expect("refresh token").expose().to_owned();
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for _ in 0..RACERS {
            let (svc, client, rt, barrier) = (svc.clone(), client.clone(), rt.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                svc.refresh(&rt, &client, None)
                    .await
                    .map(|t| t.refresh_token.map(|r| r.expose().to_owned()))
            });
        }
        let results = join_all(tasks).await;
        let successors: Vec<String> = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|e| panic!("round {round}: a refresh inside the grace failed: {e:?}"))
                    .expect("a successor")
            })
            .collect();
        assert!(
            successors.iter().all(|x| *x == successors[0]),
            "round {round}: every caller gets the same successor"
        );
        assert_ne!(successors[0], rt);
        let hash = tessera_core::secret::parse(tessera_core::TokenKind::Refresh, successors[0].as_bytes())
            .expect("successor parses");
        let l = h
            .store
            .find_refresh(&hash)
            .await
            .expect("find")
            .expect("successor stored");
        assert_eq!(l.generation, 1, "round {round}: exactly one new family member");
        assert_eq!(l.family.generation, 1);
        assert_eq!(count(&*h.store, &s.session.handle, EventKind::Refreshed).await, 1);
        assert!(
            h.stored(&s.session.handle).await.revoked.is_none(),
            "no reuse was detected"
        );
    }
}

/// With the grace window disabled (strict rotation), exactly one of the
/// concurrent callers gets a token.
pub async fn rt_11_strict_rotation_exactly_one_success<S: RefreshStore + SigningKeyStore + EventStore>(
    store: Arc<S>,
) {
    let h = Harness::new(store);
    let svc = token_service(&h, 0).await;
    let client = svc.clients().get("default").expect("default client").clone();
    for round in 0..10 {
        let s = h.login(&format!("strict{round}")).await;
        let t = svc
            .issue_for_session(&s.session, &TokenRequest::default())
            .await
            .expect("issue");
        let rt = t.refresh_token.expect("refresh token").expose().to_owned();
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for _ in 0..RACERS {
            let (svc, client, rt, barrier) = (svc.clone(), client.clone(), rt.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                svc.refresh(&rt, &client, None).await.map(|_| ())
            });
        }
        let ok = join_all(tasks).await.into_iter().filter(Result::is_ok).count();
        assert_eq!(ok, 1, "round {round}: exactly one caller rotates");
        assert_eq!(count(&*h.store, &s.session.handle, EventKind::Refreshed).await, 1);
    }
}

/// A consumed token presented after the grace window is theft: the session
/// and its family end, and `refresh_token_reuse` is recorded.
pub async fn rt_02_reuse_after_grace_revokes_the_session<S: RefreshStore + SigningKeyStore + EventStore>(
    store: Arc<S>,
) {
    let h = Harness::new(store);
    let svc = token_service(&h, 10).await;
    let client = svc.clients().get("default").expect("default client").clone();
    let s = h.login("victim").await;
    let rt1 = issue(&svc, &s.session).await;
    let rt2 = rotate(&svc, &client, &rt1, "first use").await;
    h.advance_ms(10 * SEC + 1);
    let e = svc.refresh(rt1.expose(), &client, None).await.expect_err("reuse");
    assert_eq!(e.code(), "invalid_grant");
    let e = svc
        .refresh(rt2.expose(), &client, None)
        .await
        .expect_err("family ended");
    assert_eq!(e.code(), "invalid_grant");
    let stored = h.stored(&s.session.handle).await;
    assert_eq!(
        stored.revoked.map(|r| r.reason),
        Some(RevokeReason::RefreshTokenReuse)
    );
    assert_eq!(
        count(&*h.store, &s.session.handle, EventKind::RefreshTokenReuse).await,
        1
    );
    assert!(
        h.sessions.verify(s.token.expose()).await.is_err(),
        "the session is gone"
    );
}

/// The family's stored record, as the store decodes it.
async fn sealed_of(store: &dyn RefreshStore, handle: &str) -> Vec<Option<Vec<u8>>> {
    store
        .refresh_families_of(handle)
        .await
        .expect("refresh_families_of")
        .iter()
        .map(|f| f.current_sealed.clone())
        .collect()
}

/// SPEC §5: the successor is kept sealed only for the grace window. Inside
/// it a retry gets the same successor, even after a clearing pass; once the
/// window has passed the clearing step removes it from the store, and a
/// later retry is reuse.
pub async fn rt_sealed_successor_kept_only_for_the_grace_window<
    S: RefreshStore + SigningKeyStore + EventStore,
>(
    store: Arc<S>,
) {
    let h = Harness::new(store);
    let svc = token_service(&h, 10).await;
    let client = svc.clients().get("default").expect("default client").clone();
    let s = h.login("alice").await;
    let rt1 = issue(&svc, &s.session).await;
    let rt2 = rotate(&svc, &client, &rt1, "rotation").await;
    assert!(
        sealed_of(&*h.store, &s.session.handle).await[0].is_some(),
        "kept for the grace window"
    );

    h.advance_ms(10 * SEC);
    assert_eq!(svc.clear_sealed_successors(2).await.expect("clear"), 0);
    let again = rotate(&svc, &client, &rt1, "a retry at the end of the window").await;
    assert_eq!(again.expose(), rt2.expose(), "the same successor");

    h.advance_ms(1);
    assert_eq!(svc.clear_sealed_successors(2).await.expect("clear"), 1);
    assert_eq!(
        sealed_of(&*h.store, &s.session.handle).await,
        vec![None],
        "gone from the store once the window has passed"
    );
    assert_eq!(svc.clear_sealed_successors(2).await.expect("clear"), 0);
    // The successor itself keeps working; the consumed token is reuse.
    let rt3 = rotate(&svc, &client, &rt2, "the successor rotates").await;
    assert_ne!(rt3.expose(), rt2.expose());
}

/// With grace 0 no rotation ever stores a sealed successor.
pub async fn rt_grace_0_never_stores_a_sealed_successor<S: RefreshStore + SigningKeyStore + EventStore>(
    store: Arc<S>,
) {
    let h = Harness::new(store);
    let svc = token_service(&h, 0).await;
    let client = svc.clients().get("default").expect("default client").clone();
    let s = h.login("alice").await;
    let mut rt = issue(&svc, &s.session).await;
    for _ in 0..3 {
        rt = rotate(&svc, &client, &rt, "rotation").await;
        assert_eq!(sealed_of(&*h.store, &s.session.handle).await, vec![None]);
    }
}
