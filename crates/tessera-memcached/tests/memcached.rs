//! What the conformance suite does not cover: several store instances
//! over one memcached, a server that is down or restarts, and the states
//! an interrupted operation or an eviction leaves (layout.rs says why each
//! is harmless; these prove it).
#![forbid(unsafe_code)]

use std::sync::Arc;

use tessera_conformance::support::{T0, created_event, insert, refresh_family, session};
use tessera_core::secret::{SecretToken, TokenKind};
use tessera_core::{
    EventQuery, EventStore, NewEvent, RefreshStore, RevokeReason, Rotation, SessionStore, StoreError,
    StoreHealth, TokenHash, Touch,
};
use tessera_memcached::MemcachedStore;
use tessera_memcached::testing::{self as support, text_command};

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("a port in the test URL")
}

/// Two processes' stores (own clients, own connections) on one prefix.
async fn two_nodes() -> (MemcachedStore, MemcachedStore, String) {
    let url = support::server_url();
    let prefix = support::fresh_prefix();
    let a = support::store_on(&url, &prefix).await;
    let b = support::store_on(&url, &prefix).await;
    (a, b, prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_node_is_refused_at_once_by_the_other() {
    let (a, b, _) = two_nodes().await;
    for i in 0..20 {
        let (token, rec) = session(&format!("user-{i}"), T0);
        insert(&a, &rec).await;
        // A verifies it (a node that would cache it now has it cached).
        let seen = a.get_by_token(&token.hash()).await.expect("get").expect("found");
        assert!(seen.is_active(T0));
        // B revokes it; A's very next read refuses it: nothing is cached.
        let revoked = b
            .revoke_subject(&rec.subject, None, RevokeReason::Operator, T0)
            .await
            .expect("revoke on B");
        assert_eq!(revoked, vec![rec.handle.clone()]);
        let after = a.get_by_token(&token.hash()).await.expect("get").expect("found");
        assert!(
            !after.is_active(T0),
            "node A still accepts a session node B revoked"
        );
        // And a touch on A built on the old record does not bring it back.
        assert!(
            !a.touch(
                &rec.handle,
                &rec.token_hash,
                T0.plus_millis(1),
                T0.plus_millis(60_000)
            )
            .await
            .expect("touch"),
        );
        assert!(
            a.get(&rec.handle)
                .await
                .expect("get")
                .expect("found")
                .revoked
                .is_some()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_fails_closed_and_the_store_recovers_by_itself() {
    // A port nothing listens on yet: the store opens anyway (lazily).
    let port = support::private_server().stop();
    let store = MemcachedStore::open_lazy(&format!(
        "memcached://127.0.0.1:{port}?prefix=down:&timeout_ms=300"
    ))
    .expect("open while memcached is down");
    let (token, rec) = session("alice", T0);
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
    assert!(matches!(
        store.get_by_token(&token.hash()).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.create(&rec, &Default::default(), &[]).await,
        Err(StoreError::Unavailable(_))
    ));

    // It comes up: the same store works, no reopening.
    let server = support::start_on(Some(port), "");
    store.ping().await.expect("ping once memcached is up");
    insert(&store, &rec).await;
    assert!(store.get_by_token(&token.hash()).await.expect("get").is_some());

    // It goes away again: every call fails closed, none hangs.
    let port = server.stop();
    assert!(matches!(
        store.get_by_token(&token.hash()).await,
        Err(StoreError::Unavailable(_))
    ));
    // Back, empty (memcached keeps nothing across a restart): the session
    // is gone, the store answers again.
    let _server = support::start_on(Some(port), "");
    assert!(
        store
            .get_by_token(&token.hash())
            .await
            .expect("get after restart")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_session_is_gone_everywhere_and_its_index_entries_are_skipped() {
    let url = support::server_url();
    let prefix = support::fresh_prefix();
    let store = support::store_on(&url, &prefix).await;
    let (kept_token, kept) = session("alice", T0);
    let (lost_token, lost) = session("alice", T0);
    insert(&store, &kept).await;
    insert(&store, &lost).await;
    // memcached evicts the record (as it would under memory pressure).
    let answer = text_command(port_of(&url), &format!("delete {prefix}s:{}", lost.handle)).expect("delete");
    assert_eq!(answer, vec!["DELETED".to_owned()]);

    assert!(
        store
            .get_by_token(&lost_token.hash())
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .get_by_token(&kept_token.hash())
            .await
            .expect("get")
            .is_some()
    );
    let listed: Vec<String> = store
        .list_by_subject("alice")
        .await
        .expect("list")
        .iter()
        .map(|s| s.handle.clone())
        .collect();
    assert_eq!(listed, vec![kept.handle.clone()]);
    assert_eq!(store.count_active(T0).await.expect("count"), 1);
    assert_eq!(
        store
            .revoke_subject("alice", None, RevokeReason::Operator, T0)
            .await
            .expect("revoke"),
        vec![kept.handle.clone()]
    );
    // The sweep finds nothing to delete for it and does not fail on it.
    assert_eq!(
        store
            .sweep(T0.plus_millis(24 * 3600 * 1000), 100)
            .await
            .expect("sweep"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_taken_by_a_writer_that_died_does_not_stall_the_log() {
    let url = support::server_url();
    let prefix = support::fresh_prefix();
    let store = support::store_on(&url, &prefix).await;
    let (_, rec) = session("alice", T0);
    insert(&store, &rec).await;
    let first = store
        .events(&EventQuery {
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .expect("events")[0]
        .id;
    // A writer took the next id (`incr`) and died before its `add`.
    let answer = text_command(port_of(&url), &format!("incr {prefix}e:seq 1")).expect("incr");
    assert_eq!(answer, vec!["2".to_owned()]);
    store
        .append_events(&[NewEvent::revoked(&rec, RevokeReason::Logout, T0)])
        .await
        .expect("append");
    let events = store
        .events(&EventQuery {
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .expect("events");
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        vec![first, first + 2],
        "the hole is skipped, the later event is read"
    );
    // The dead writer's late `add` cannot slip in behind a reader's cursor.
    let late = text_command(port_of(&url), &format!("add {prefix}e:{} 0 0 1\r\nx", first + 1)).expect("add");
    assert_eq!(late, vec!["NOT_STORED".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_token_pointer_neither_finds_a_session_nor_blocks_its_hash() {
    let url = support::server_url();
    let prefix = support::fresh_prefix();
    let store = Arc::new(support::store_on(&url, &prefix).await);
    let (token, rec) = session("alice", T0);
    insert(&*store, &rec).await;
    // The session is deleted but its pointer stays (a sweep that died
    // half-way): the pointer finds nothing …
    let answer = text_command(port_of(&url), &format!("delete {prefix}s:{}", rec.handle)).expect("delete");
    assert_eq!(answer, vec!["DELETED".to_owned()]);
    assert!(store.get_by_token(&token.hash()).await.expect("get").is_none());
    // … and a new session with that token hash takes the pointer over.
    let (_, mut again) = session("bob", T0);
    again.token_hash = TokenHash(token.hash().0);
    store
        .create(&again, &Default::default(), &[created_event(&again)])
        .await
        .expect("create over a stale pointer");
    let found = store
        .get_by_token(&token.hash())
        .await
        .expect("get")
        .expect("found");
    assert_eq!(found.handle, again.handle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ids_after_memcached_lost_everything_stay_above_the_old_ones() {
    // Its own server: `flush_all` is what a restart does to the data.
    let server = support::private_server();
    let store = support::store_on(&server.url(), "flush:").await;
    let (_, rec) = session("alice", T0);
    let all = |store: MemcachedStore| async move {
        store
            .events(&EventQuery {
                limit: 100,
                ..EventQuery::default()
            })
            .await
            .expect("events")
    };
    insert(&store, &rec).await;
    let before = all(store.clone()).await;
    let cursor = before.last().expect("the created event").id;

    assert_eq!(
        text_command(server.port, "flush_all").expect("flush_all"),
        vec!["OK".to_owned()]
    );
    let (_, again) = session("bob", T0);
    insert(&store, &again).await;
    let after = store
        .events(&EventQuery {
            after: cursor,
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .expect("events after the follower's cursor");
    assert_eq!(
        after.len(),
        1,
        "a follower at {cursor} sees the new event: {after:?}"
    );
    assert!(after[0].id > cursor);
}

/// A rotation is committed by the family's CAS; what follows (the session
/// slide, the events) must not turn it into a failure, or the client would
/// lose the successor of a token that is already consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_rotation_answers_true_even_if_the_session_slide_fails() {
    let url = support::server_url();
    let prefix = support::fresh_prefix();
    let store = support::store_on(&url, &prefix).await;
    let (_, rec) = session("alice", T0);
    insert(&store, &rec).await;
    let (first, family) = refresh_family(&rec, T0);
    store
        .create_refresh_family(&family, &first.hash(), &[])
        .await
        .expect("create family");
    // The session record becomes unreadable (the slide will fail on it).
    let answer = text_command(
        port_of(&url),
        &format!("set {prefix}s:{} 0 0 3\r\nbad", rec.handle),
    )
    .expect("set");
    assert_eq!(answer, vec!["STORED".to_owned()]);

    let next = SecretToken::generate(TokenKind::Refresh);
    let at = T0.plus_millis(1000);
    let touch = Touch {
        handle: &rec.handle,
        token_hash: &rec.token_hash,
        last_seen_at: at,
        idle_expires_at: at.plus_millis(60_000),
    };
    let rotated = store
        .rotate_refresh(
            &Rotation::new(&family.id, 0, &next.hash(), at).touching(touch),
            &[],
        )
        .await
        .expect("a committed rotation is not an error");
    assert!(rotated);
    let found = store
        .find_refresh(&next.hash())
        .await
        .expect("find")
        .expect("the successor");
    assert_eq!((found.family.generation, found.generation), (1, 1));
}
