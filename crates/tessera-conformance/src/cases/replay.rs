//! [`ReplayStore`]: single-use markers. Expiry follows the caller's `now`
//! (a store may also drop an expired marker on its own clock, which these
//! cases never wait for).

use std::sync::Arc;

use tessera_core::ReplayStore;

use crate::support::*;

fn marker(n: u8) -> [u8; 32] {
    [n; 32]
}

pub async fn store_marker_is_used_once_until_it_expires<S: ReplayStore>(store: Arc<S>) {
    let s = &*store;
    let until = T0.plus_millis(60 * SEC);
    assert!(s.use_once(&marker(1), until, T0).await.expect("use"), "first use");
    assert!(
        !s.use_once(&marker(1), until, T0).await.expect("use"),
        "the same marker again is a replay"
    );
    assert!(
        !s.use_once(&marker(1), until, until.plus_millis(-1))
            .await
            .expect("use"),
        "still a replay just before its expiry"
    );
    assert!(
        s.use_once(&marker(2), until, T0).await.expect("use"),
        "markers are independent"
    );
    let later = until.plus_millis(60 * SEC);
    assert!(
        s.use_once(&marker(1), later, until).await.expect("use"),
        "expired at its expiry: recorded afresh"
    );
    assert!(
        !s.use_once(&marker(1), later, until.plus_millis(SEC))
            .await
            .expect("use"),
        "and held until the new expiry"
    );
}

pub async fn store_sweep_markers_deletes_expired_in_batches<S: ReplayStore>(store: Arc<S>) {
    let s = &*store;
    for n in 0..5u8 {
        assert!(
            s.use_once(&marker(n), T0.plus_millis(SEC), T0)
                .await
                .expect("use")
        );
    }
    let keep = T0.plus_millis(3600 * SEC);
    assert!(s.use_once(&marker(9), keep, T0).await.expect("use"));
    let now = T0.plus_millis(2 * SEC);
    // A store whose own clock drops expired markers (a key TTL) may find
    // fewer to delete; batches are never exceeded, and the loop ends.
    let mut swept = 0;
    for _ in 0..10 {
        let n = s.sweep_markers(now, 3).await.expect("sweep");
        assert!(n <= 3, "at most one batch per call");
        swept += n;
        if n < 3 {
            break;
        }
    }
    assert!(swept <= 5, "only the five expired markers go");
    assert!(
        !s.use_once(&marker(9), keep, now).await.expect("use"),
        "an unexpired marker survives the sweep"
    );
    assert!(
        s.use_once(&marker(0), keep, now).await.expect("use"),
        "an expired one is gone"
    );
}

pub async fn concurrent_marker_one_use<S: ReplayStore>(store: Arc<S>) {
    let until = T0.plus_millis(60 * SEC);
    let tasks = (0..16).map(|_| {
        let s = store.clone();
        tokio::spawn(async move { s.use_once(&marker(7), until, T0).await })
    });
    let first = futures::future::join_all(tasks)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().expect("task").as_ref().expect("use"))
        .count();
    assert_eq!(
        first, 1,
        "exactly one of 16 racing uses of one marker is the first"
    );
}
