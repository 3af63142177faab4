//! [`RateLimitStore`]: the counters behind the abuse limits. Expiry
//! follows the caller's `now` (a store may also drop an expired count on
//! its own clock, which these cases never wait for).

use std::sync::Arc;

use tessera_core::RateLimitStore;
use tessera_core::ratelimit::{Decision, Limit, RateLimiter, Rule};

use crate::support::*;

fn key(n: u8) -> [u8; 32] {
    [n; 32]
}

pub async fn store_hits_add_up_per_window_and_report_the_previous<S: RateLimitStore>(store: Arc<S>) {
    let s = &*store;
    let until = T0.plus_millis(120 * SEC);
    let t = s.add_hits(&key(1), 10, 3, until, T0).await.expect("add");
    assert_eq!((t.current, t.previous), (3, 0), "a fresh counter");
    let t = s.add_hits(&key(1), 10, 2, until, T0).await.expect("add");
    assert_eq!((t.current, t.previous), (5, 0), "hits add up");
    let t = s.add_hits(&key(1), 11, 1, until, T0).await.expect("add");
    assert_eq!(
        (t.current, t.previous),
        (1, 5),
        "the next window starts at zero and reports the one before"
    );
    let t = s.add_hits(&key(2), 11, 4, until, T0).await.expect("add");
    assert_eq!((t.current, t.previous), (4, 0), "counters are independent");
    let t = s.add_hits(&key(1), 13, 1, until, T0).await.expect("add");
    assert_eq!(
        (t.current, t.previous),
        (1, 0),
        "only the window right before counts as previous"
    );
}

pub async fn store_sweep_counters_deletes_expired_in_batches<S: RateLimitStore>(store: Arc<S>) {
    let s = &*store;
    for n in 0..5u8 {
        s.add_hits(&key(n), 1, 1, T0.plus_millis(SEC), T0)
            .await
            .expect("add");
    }
    let keep = T0.plus_millis(3600 * SEC);
    s.add_hits(&key(9), 1, 7, keep, T0).await.expect("add");
    let now = T0.plus_millis(2 * SEC);
    let mut swept = 0;
    for _ in 0..10 {
        let n = s.sweep_counters(now, 3).await.expect("sweep");
        assert!(n <= 3, "at most one batch per call");
        swept += n;
        if n < 3 {
            break;
        }
    }
    assert!(swept <= 5, "only the five expired counts go");
    let t = s.add_hits(&key(9), 1, 1, keep, now).await.expect("add");
    assert_eq!(t.current, 8, "an unexpired count survives the sweep");
    // A store that drops idle counters on its own clock (Redis's key TTL)
    // sweeps nothing; one that sweeps must have deleted all five.
    if swept > 0 {
        assert_eq!(swept, 5, "every expired count goes");
        let t = s.add_hits(&key(0), 1, 1, keep, now).await.expect("add");
        assert_eq!(t.current, 1, "an expired one is gone");
    }
}

pub async fn concurrent_hits_are_all_counted<S: RateLimitStore>(store: Arc<S>) {
    let until = T0.plus_millis(120 * SEC);
    let tasks = (0..16).map(|_| {
        let s = store.clone();
        tokio::spawn(async move { s.add_hits(&key(7), 42, 1, until, T0).await })
    });
    let mut seen: Vec<u64> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("add").current)
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=16).collect::<Vec<u64>>(),
        "each of 16 racing additions sees a distinct total that includes its own"
    );
}

/// GN-04 across processes: two limiters over one store enforce one limit.
pub async fn gn_04_two_processes_share_one_limit<S: RateLimitStore>(store: Arc<S>) {
    let clock = std::sync::Arc::new(tessera_core::ManualClock::new(T0));
    let rule = Rule {
        name: "conformance",
        tag: 1,
        limit: Limit::new(10, 60),
    };
    let a = RateLimiter::new(store.clone(), clock.clone());
    let b = RateLimiter::new(store.clone(), clock.clone());
    let mut allowed = 0;
    for _ in 0..6 {
        allowed += usize::from(a.check(&rule, b"203.0.113.7").is_allowed());
    }
    a.sync().await.expect("sync");
    // B's first hit is decided before it knows A's count; its sync learns it.
    allowed += usize::from(b.check(&rule, b"203.0.113.7").is_allowed());
    b.sync().await.expect("sync");
    for _ in 0..10 {
        allowed += usize::from(b.check(&rule, b"203.0.113.7").is_allowed());
    }
    assert_eq!(allowed, 10, "ten allowed in all, six on A and four on B");
    assert!(matches!(
        b.check(&rule, b"203.0.113.7"),
        Decision::Limited { retry_after_secs } if retry_after_secs >= 1
    ));
}
