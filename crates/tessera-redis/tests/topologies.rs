//! The store over a Redis Cluster and through Sentinel, beyond the shared
//! suite (`conformance_cluster.rs` runs that): where the keys go, and a
//! master that Sentinel names.
#![forbid(unsafe_code)]

use tessera_redis::testing as support;

use std::time::{Duration, Instant};

use tessera_conformance::support::{T0, created_event, session};
use tessera_core::{CreateOptions, RevokeReason, SessionStore, StoreHealth};
use tessera_redis::RedisStore;

async fn create(
    store: &RedisStore,
    subject: &str,
) -> (tessera_core::SecretToken, tessera_core::SessionRecord) {
    let (tok, rec) = session(subject, T0);
    let opts = CreateOptions {
        now: T0,
        ..CreateOptions::default()
    };
    store
        .create(&rec, &opts, &[created_event(&rec)])
        .await
        .expect("create");
    (tok, rec)
}

/// Every key of a deployment is in the slot of its prefix's hash tag, on
/// one master; another prefix may be on another master.
#[tokio::test]
async fn on_a_cluster_every_key_of_a_prefix_is_in_one_slot() {
    let cluster = support::cluster();
    let store = RedisStore::connect(&format!("{}?prefix=slot-{}", cluster.url(), std::process::id()))
        .await
        .expect("connect");
    let (tok, rec) = create(&store, "alice").await;
    assert_eq!(
        store
            .get_by_token(&tok.hash())
            .await
            .expect("read")
            .map(|s| s.handle.clone()),
        Some(rec.handle.clone())
    );
    let mut keys = Vec::new();
    let mut slots = std::collections::BTreeSet::new();
    for (node, port) in cluster.node_urls().into_iter().zip(&cluster.ports) {
        let mut c = redis::Client::open(node)
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connection");
        let pattern = format!("\\{{slot-{}\\}}*", std::process::id());
        let found: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut c)
            .await
            .expect("KEYS");
        if !found.is_empty() {
            slots.insert(*port);
        }
        keys.extend(found);
    }
    assert!(keys.len() >= 4, "{} keys", keys.len());
    assert_eq!(slots.len(), 1, "the keys are on more than one master");
    store.ping().await.expect("ping reaches every master");
}

/// Through Sentinel: the store finds the master by name; create, verify
/// and revoke work as on one server.
#[tokio::test]
async fn through_sentinel_the_store_finds_the_master() {
    let sentinel = support::start_sentinel();
    let store = RedisStore::connect(&format!("{}?prefix=sentinel", sentinel.url()))
        .await
        .expect("connect through the Sentinel");
    store.ping().await.expect("ping");
    let (tok, rec) = create(&store, "bob").await;
    let got = store.get_by_token(&tok.hash()).await.expect("read");
    assert_eq!(got.map(|s| s.handle.clone()), Some(rec.handle.clone()));
    let revoked = store
        .revoke_subject("bob", None, RevokeReason::RevokeAll, T0.plus_millis(1))
        .await
        .expect("revoke");
    assert_eq!(revoked, vec![rec.handle.clone()]);
    let got = store.get_by_token(&tok.hash()).await.expect("read");
    assert!(got.is_some_and(|s| s.revoked.is_some()));
}

/// When the master dies, the Sentinel promotes its replica and the store
/// follows it without a restart: requests fail (unavailable) meanwhile,
/// never succeed against a stale master.
#[tokio::test]
async fn through_sentinel_the_store_follows_a_failover() {
    let mut sentinel = support::start_sentinel();
    let replica_port = sentinel.add_replica().port;
    let store = RedisStore::connect(&format!("{}?prefix=failover", sentinel.url()))
        .await
        .expect("connect through the Sentinel");
    let (tok, _) = create(&store, "carol").await;
    // Wait until the replica has the session (replication is asynchronous).
    let mut replica = redis::Client::open(format!("redis://127.0.0.1:{replica_port}/"))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("replica connection");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: u64 = redis::cmd("DBSIZE")
            .query_async(&mut replica)
            .await
            .expect("DBSIZE");
        if n >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the replica did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(sentinel.master.take().expect("master").stop());
    let started = Instant::now();
    loop {
        if sentinel.master_port() == Some(replica_port) && store.get_by_token(&tok.hash()).await.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no failover within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = store
        .get_by_token(&tok.hash())
        .await
        .expect("read on the new master");
    assert!(
        got.is_some(),
        "the session replicated before the failover is there"
    );
    // Writes go to the new master.
    create(&store, "dave").await;
    eprintln!("failover followed after {:?}", started.elapsed());
    // The cache dropped everything with its subscription on the old
    // master, and subscribed again on the new one.
    assert!(
        store.wait_cache_live(Duration::from_secs(10)).await,
        "subscribed again"
    );
    let stats = store.cache_stats().expect("cache on");
    assert!(stats.losses >= 1, "{stats:?}");
}

/// Two processes' stores on one prefix: B caches a session, A revokes it,
/// B refuses it within 100 ms (the invalidation reached B's subscription).
async fn the_cache_is_invalidated_across_stores(a: &RedisStore, b: &RedisStore) {
    let within = Duration::from_secs(5);
    assert!(
        a.wait_cache_live(within).await && b.wait_cache_live(within).await,
        "subscribed"
    );
    let (tok, _) = create(a, "erin").await;
    for _ in 0..3 {
        assert!(b.get_by_token(&tok.hash()).await.expect("read").is_some());
    }
    let hits = b.cache_stats().expect("cache on").hits;
    assert!(hits >= 2, "B serves the session from memory: {hits} hits");
    a.revoke_subject("erin", None, RevokeReason::RevokeAll, T0.plus_millis(1))
        .await
        .expect("revoke through A");
    let start = Instant::now();
    loop {
        let s = b
            .get_by_token(&tok.hash())
            .await
            .expect("read")
            .expect("kept, revoked");
        if s.revoked.is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "B still serves the session it cached"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    eprintln!(
        "B refused the revoked session {:?} after A revoked it",
        start.elapsed()
    );
}

#[tokio::test]
async fn on_a_cluster_the_session_cache_is_invalidated_across_processes() {
    let url = format!("{}?prefix=cache-{}", support::cluster().url(), std::process::id());
    let a = RedisStore::connect(&url).await.expect("A");
    let b = RedisStore::connect(&url).await.expect("B");
    the_cache_is_invalidated_across_stores(&a, &b).await;
}

#[tokio::test]
async fn through_sentinel_the_session_cache_is_invalidated_across_processes() {
    let sentinel = support::start_sentinel();
    let url = format!("{}?prefix=cache", sentinel.url());
    let a = RedisStore::connect(&url).await.expect("A");
    let b = RedisStore::connect(&url).await.expect("B");
    the_cache_is_invalidated_across_stores(&a, &b).await;
}
