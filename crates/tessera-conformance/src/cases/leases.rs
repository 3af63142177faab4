//! [`LeaseStore`]: who does a cluster-wide duty now. Expiry follows the
//! caller's `now` (a store may also drop an expired lease on its own
//! clock, which these cases never wait for).

use std::sync::Arc;
use std::time::Duration;

use tessera_core::LeaseStore;

use crate::support::*;

const TTL: Duration = Duration::from_secs(30);

pub async fn store_lease_is_exclusive_until_it_expires<S: LeaseStore>(store: Arc<S>) {
    let s = &*store;
    assert!(
        s.acquire_lease("sweep", "a", TTL, T0).await.expect("acquire"),
        "a free lease is taken"
    );
    assert!(
        !s.acquire_lease("sweep", "b", TTL, T0).await.expect("acquire"),
        "held by a"
    );
    // A renewal by acquiring again moves the expiry.
    let t1 = T0.plus_millis(20 * SEC);
    assert!(
        s.acquire_lease("sweep", "a", TTL, t1).await.expect("acquire"),
        "the holder renews"
    );
    let until = t1.plus_millis(30 * SEC);
    assert!(
        !s.acquire_lease("sweep", "b", TTL, until.plus_millis(-1))
            .await
            .expect("acquire"),
        "held until the renewed expiry, not the first one"
    );
    assert!(
        s.acquire_lease("sweep", "b", TTL, until).await.expect("acquire"),
        "expired at its expiry: anyone takes it"
    );
    assert!(
        !s.acquire_lease("sweep", "a", TTL, until).await.expect("acquire"),
        "the old holder does not get it back"
    );
}

pub async fn store_lease_renew_only_by_its_live_holder<S: LeaseStore>(store: Arc<S>) {
    let s = &*store;
    assert!(
        !s.renew_lease("keys", "a", TTL, T0).await.expect("renew"),
        "nothing to renew"
    );
    assert!(s.acquire_lease("keys", "a", TTL, T0).await.expect("acquire"));
    assert!(
        !s.renew_lease("keys", "b", TTL, T0).await.expect("renew"),
        "not b's"
    );
    let t1 = T0.plus_millis(29 * SEC);
    assert!(
        s.renew_lease("keys", "a", TTL, t1).await.expect("renew"),
        "a's, still live"
    );
    assert!(
        !s.acquire_lease("keys", "b", TTL, T0.plus_millis(40 * SEC))
            .await
            .expect("acquire"),
        "renewed to t1 + 30 s"
    );
    let dead = t1.plus_millis(30 * SEC);
    assert!(
        !s.renew_lease("keys", "a", TTL, dead).await.expect("renew"),
        "an expired lease is not renewed: another may have done the duty meanwhile"
    );
}

pub async fn store_lease_release_only_by_its_holder<S: LeaseStore>(store: Arc<S>) {
    let s = &*store;
    assert!(
        !s.release_lease("retention", "a").await.expect("release"),
        "nothing held"
    );
    assert!(s.acquire_lease("retention", "a", TTL, T0).await.expect("acquire"));
    assert!(
        !s.release_lease("retention", "b").await.expect("release"),
        "not b's"
    );
    assert!(!s.acquire_lease("retention", "b", TTL, T0).await.expect("acquire"));
    assert!(s.release_lease("retention", "a").await.expect("release"));
    assert!(
        s.acquire_lease("retention", "b", TTL, T0).await.expect("acquire"),
        "released: free at once, before its expiry"
    );
    assert!(!s.renew_lease("retention", "a", TTL, T0).await.expect("renew"));
}

pub async fn store_leases_are_independent_by_name<S: LeaseStore>(store: Arc<S>) {
    let s = &*store;
    assert!(s.acquire_lease("sweep", "a", TTL, T0).await.expect("acquire"));
    assert!(
        s.acquire_lease("keys", "b", TTL, T0).await.expect("acquire"),
        "another name"
    );
    assert!(s.release_lease("keys", "b").await.expect("release"));
    assert!(
        !s.acquire_lease("sweep", "b", TTL, T0).await.expect("acquire"),
        "sweep still a's"
    );
}

pub async fn concurrent_lease_one_holder<S: LeaseStore>(store: Arc<S>) {
    let tasks = (0..16).map(|i| {
        let s = store.clone();
        tokio::spawn(async move { s.acquire_lease("rotate", &format!("node-{i}"), TTL, T0).await })
    });
    let won = futures::future::join_all(tasks)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().expect("task").as_ref().expect("acquire"))
        .count();
    assert_eq!(won, 1, "exactly one of 16 racing processes holds the lease");
}
