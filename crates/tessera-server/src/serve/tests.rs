use super::*;
use tessera_core::{
    ApiKeyStore, Clock, CreateSession, EventStore, ManualClock, MemoryStore, RefreshStore, Sealer,
    TokenRequest,
};

/// The sweeper's first pass clears the sealed refresh successors whose
/// grace window has passed (and only those).
#[tokio::test]
async fn the_sweeper_clears_sealed_successors_past_the_grace_window() {
    let clock = ManualClock::new(tessera_core::Timestamp::from_unix_secs(1_800_000_000));
    let store = Arc::new(MemoryStore::new());
    let config = Config {
        store: Some("memory://".into()),
        ..Config::default()
    };
    let sessions = Sessions::new(store.clone(), Arc::new(clock.clone()), config.policy());
    let sealer = Sealer::new(&Sealer::generate_key());
    let oauth = crate::issuer::OAuth::new(
        &config,
        sessions,
        store.clone(),
        store.clone(),
        store.clone(),
        Arc::new(clock.clone()),
        sealer,
    );
    crate::issuer::start(&oauth).await.unwrap();
    let tokens = oauth.tokens.clone();
    let client = tokens.clients().get("default").unwrap().clone();
    let mut handles = Vec::new();
    for (subject, age) in [("old", 11), ("new", 0)] {
        let s = tokens
            .sessions()
            .create(CreateSession {
                subject: subject.into(),
                ..CreateSession::default()
            })
            .await
            .unwrap();
        let rt = tokens
            .issue_for_session(&s.session, &TokenRequest::default())
            .await
            .unwrap()
            .refresh_token
            .unwrap();
        tokens.refresh(rt.expose(), &client, None).await.unwrap();
        clock.advance_secs(age);
        handles.push(s.session.handle.clone());
    }
    let sealed = |h: String| {
        let store = store.clone();
        async move {
            store.refresh_families_of(&h).await.unwrap()[0]
                .current_sealed
                .is_some()
        }
    };
    assert!(sealed(handles[0].clone()).await);

    let lease = DutyLease::new(
        store.clone(),
        Arc::new(clock.clone()),
        "sweep",
        Duration::from_secs(180),
    );
    let task = tokio::spawn(sweeper(
        tokens,
        (
            oauth.dpop_token.clone(),
            Arc::new(tessera_core::ratelimit::RateLimiter::new(
                store.clone(),
                Arc::new(clock.clone()),
            )),
        ),
        EventLog::new(store.clone()),
        Duration::from_secs(60),
        10,
        EventRetention::of(&config),
        Arc::new(lease),
    ));
    for _ in 0..1000 {
        if !sealed(handles[0].clone()).await {
            break;
        }
        tokio::task::yield_now().await;
    }
    task.abort();
    assert!(
        !sealed(handles[0].clone()).await,
        "past its grace window: cleared"
    );
    assert!(sealed(handles[1].clone()).await, "inside its grace window: kept");
}

const DAY: i64 = 86_400;

fn retention(days: u32, ttl: i64) -> EventRetention {
    let mut c = Config::default();
    c.events.retention_days = days;
    c.oauth.access_token_ttl_secs = ttl;
    EventRetention::of(&c)
}

#[test]
fn retention_cutoff_never_reaches_into_the_revocation_window() {
    let now = Timestamp::from_unix_secs(1_800_000_000);
    assert_eq!(retention(0, 300).cutoff(now), None, "0 keeps events forever");
    assert_eq!(retention(90, 300).cutoff(now), Some(now.plus_secs(-90 * DAY)));
    // One day of retention, access tokens valid for a day: revocations
    // of the last day and a minute still feed resource servers.
    assert_eq!(retention(1, DAY).cutoff(now), Some(now.plus_secs(-DAY - 60)));
}

/// The sweeper deletes events past `[events] retention_days` in
/// batches, and keeps the revocations whose access tokens may still be
/// valid even when the retention is shorter than that.
#[tokio::test]
async fn events_past_retention_are_swept_but_live_revocations_stay() {
    use tessera_core::{CreateSession, EventKind, EventQuery, ManualClock, RevokeReason, SessionPolicy};
    let t0 = Timestamp::from_unix_secs(1_800_000_000);
    let clock = Arc::new(ManualClock::new(t0));
    let store = Arc::new(MemoryStore::new());
    let sessions = Sessions::new(store.clone(), clock.clone(), SessionPolicy::default());
    let log = EventLog::new(store.clone());
    let login = |s: &'static str| CreateSession {
        subject: s.into(),
        auth: None,
        device: None,
        data: None,
        ttl: None,
        previous_session_token: None,
    };
    // Seven old logins, then (two days later) a revocation.
    for _ in 0..7 {
        sessions.create(login("old")).await.unwrap();
    }
    clock.set(t0.plus_secs(2 * DAY));
    let s = sessions.create(login("alice")).await.unwrap();
    clock.set(t0.plus_secs(3 * DAY - 30));
    assert!(
        sessions
            .revoke(&s.session.handle, RevokeReason::Logout)
            .await
            .unwrap()
    );
    let events = |kind: Option<EventKind>| {
        let store = store.clone();
        async move {
            store
                .events(&EventQuery {
                    kind,
                    limit: 1000,
                    ..EventQuery::default()
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(events(None).await.len(), 9);

    // Nothing is a day old yet at t0 + 1 day.
    clock.set(t0.plus_secs(DAY));
    assert_eq!(
        sweep_events(&log, clock.now(), 3, retention(1, 300))
            .await
            .unwrap(),
        0
    );
    // Four days on: the old logins go, in batches of 3; alice's
    // revocation is older than a day but with day-long access tokens
    // still inside its window, so it stays, and so does everything after it.
    clock.set(t0.plus_secs(4 * DAY));
    assert_eq!(
        sweep_events(&log, clock.now(), 3, retention(1, DAY))
            .await
            .unwrap(),
        8
    );
    let left = events(None).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].event.kind, EventKind::Revoked);
    // With 5-minute tokens it is past its window and goes too.
    assert_eq!(
        sweep_events(&log, clock.now(), 3, retention(1, 300))
            .await
            .unwrap(),
        1
    );
    assert!(events(None).await.is_empty());
    // Forever means forever.
    sessions.create(login("bob")).await.unwrap();
    clock.set(t0.plus_secs(400 * DAY));
    assert_eq!(
        sweep_events(&log, clock.now(), 3, retention(0, 300))
            .await
            .unwrap(),
        0
    );
    assert_eq!(events(None).await.len(), 1);
}

#[tokio::test]
async fn bootstrap_key_is_written_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let api_keys = ApiKeys::new(store.clone(), Duration::ZERO);
    let now = tessera_core::Timestamp::from_unix_secs(1);
    let path = bootstrap_api_key(&api_keys, dir.path(), now)
        .await
        .unwrap()
        .unwrap();
    let key = std::fs::read_to_string(&path).unwrap();
    assert!(key.starts_with("tsk_") && key.ends_with('\n'), "{key:?}");
    let hash =
        tessera_core::secret::parse(tessera_core::TokenKind::ApiKey, key.trim_end().as_bytes()).unwrap();
    assert!(store.api_key_by_hash(&hash).await.unwrap().is_some());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert_eq!(bootstrap_api_key(&api_keys, dir.path(), now).await.unwrap(), None);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), key, "not rewritten");
}

/// Two processes starting at the same instant on one empty shared store
/// (two connections to one Redis, two data directories) create one
/// bootstrap API key between them: the lease makes the list-then-insert
/// of each one step for the cluster.
#[tokio::test]
async fn two_processes_bootstrapping_one_empty_store_at_once_make_one_key() {
    let shared = tessera_redis::testing::fresh_store(None).await;
    let second = tessera_redis::RedisStore::connect_url_with(
        &tessera_redis::testing::server().url(),
        shared.options().clone(),
    )
    .await
    .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(tessera_core::SystemClock);
    let config = Config {
        store: Some("memory://".into()),
        ..Config::default()
    };
    let node = |store: tessera_redis::RedisStore| {
        let store = Arc::new(store);
        (
            ApiKeys::new(store.clone(), Duration::ZERO),
            Sessions::new(store.clone(), clock.clone(), config.policy()),
            Leases::new(store, clock.clone(), &config),
            tempfile::tempdir().unwrap(),
        )
    };
    let (keys_a, sessions_a, leases_a, dir_a) = node(shared.clone());
    let (keys_b, sessions_b, leases_b, dir_b) = node(second);
    let (a, b) = tokio::join!(
        bootstrap_api_key_once(&keys_a, dir_a.path(), &sessions_a, &leases_a.bootstrap),
        bootstrap_api_key_once(&keys_b, dir_b.path(), &sessions_b, &leases_b.bootstrap),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        [a.is_some(), b.is_some()].iter().filter(|w| **w).count(),
        1,
        "one of them writes a key file: {a:?} {b:?}"
    );
    assert_eq!(
        shared.list_api_keys().await.unwrap().len(),
        1,
        "one key in the store"
    );
    // Done: the lease is free again for whatever comes next.
    assert!(leases_b.bootstrap.hold().await.unwrap());
}
