use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use proptest::prelude::*;

use super::*;
use crate::store::StoreError;
use crate::{ManualClock, MemoryStore, Timestamp};

const RULE: Rule = Rule {
    name: "test",
    tag: 1,
    limit: Limit::new(5, 60),
};

fn clock_at_window_start() -> ManualClock {
    ManualClock::new(Timestamp::from_unix_secs(1_800_000_000 / 60 * 60))
}

fn limiter(store: Arc<dyn RateLimitStore>, clock: &ManualClock) -> RateLimiter {
    RateLimiter::new(store, Arc::new(clock.clone()))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn gn_04_allows_the_limit_then_refuses_with_retry_after() {
    let clock = clock_at_window_start();
    let l = limiter(Arc::new(MemoryStore::new()), &clock);
    for _ in 0..5 {
        assert_eq!(l.check(&RULE, b"10.0.0.1"), Decision::Allowed);
    }
    let Decision::Limited { retry_after_secs } = l.check(&RULE, b"10.0.0.1") else {
        panic!("the sixth request in the window must be refused");
    };
    // The window ends in 60 s; its 5 hits then weigh ⌊5 × (60 − t)/60⌋,
    // which leaves room for one more a millisecond into the next window.
    assert_eq!(retry_after_secs, 61);
    // Another subject has its own count.
    assert_eq!(l.check(&RULE, b"10.0.0.2"), Decision::Allowed);
    // Refused requests are not counted: waiting as told is enough.
    clock.advance_secs(retry_after_secs as i64);
    assert_eq!(l.check(&RULE, b"10.0.0.1"), Decision::Allowed);
    assert!(!l.check(&RULE, b"10.0.0.1").is_allowed());
}

#[test]
fn gn_04_a_limit_of_zero_is_off() {
    let clock = clock_at_window_start();
    let l = limiter(Arc::new(MemoryStore::new()), &clock);
    let off = Rule {
        limit: Limit::new(0, 60),
        ..RULE
    };
    for _ in 0..1000 {
        assert!(l.check(&off, b"a").is_allowed());
    }
    assert_eq!(l.local_counters(), 0);
}

#[test]
fn peek_counts_nothing_and_add_counts_even_when_over() {
    let clock = clock_at_window_start();
    let l = limiter(Arc::new(MemoryStore::new()), &clock);
    for _ in 0..10 {
        assert!(l.peek(&RULE, b"x").is_allowed());
    }
    assert_eq!(l.local_counters(), 0, "a peek creates no counter");
    for _ in 0..7 {
        l.add(&RULE, b"x");
    }
    assert!(!l.peek(&RULE, b"x").is_allowed());
    // 7 in the window: only once ⌊7 × (60 − t)/60⌋ ≤ 4 (t > 17.1 s into
    // the next window) does one more fit.
    clock.advance_secs(60 + 17);
    assert!(!l.peek(&RULE, b"x").is_allowed());
    clock.advance_secs(1);
    assert!(l.peek(&RULE, b"x").is_allowed());
}

#[test]
fn gn_04_the_count_is_shared_by_every_process_over_one_store() {
    let clock = clock_at_window_start();
    let store: Arc<dyn RateLimitStore> = Arc::new(MemoryStore::new());
    let a = limiter(store.clone(), &clock);
    let b = limiter(store, &clock);
    for _ in 0..3 {
        assert!(a.check(&RULE, b"client").is_allowed());
    }
    block_on(a.sync()).unwrap();
    // B has counted nothing yet; its first hit syncs the deployment's 3.
    assert!(b.check(&RULE, b"client").is_allowed());
    block_on(b.sync()).unwrap();
    assert!(b.check(&RULE, b"client").is_allowed(), "3 + 1 + this = 5");
    assert!(!b.check(&RULE, b"client").is_allowed());
    block_on(b.sync()).unwrap();
    block_on(a.sync()).unwrap();
    // A learns of B's hits only through a sync with something to add:
    // its next hit is the overshoot bound of one sync interval.
    let _ = a.check(&RULE, b"client");
    block_on(a.sync()).unwrap();
    assert!(!a.check(&RULE, b"client").is_allowed());
}

/// A store that fails while `down` is set.
struct Flaky {
    inner: MemoryStore,
    down: AtomicBool,
}

#[async_trait]
impl RateLimitStore for Flaky {
    async fn add_hits(
        &self,
        key: &[u8; 32],
        window: u64,
        hits: u64,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<WindowTotals> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("down".into()));
        }
        self.inner.add_hits(key, window, hits, expires_at, now).await
    }

    async fn sweep_counters(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        self.inner.sweep_counters(now, batch).await
    }
}

#[test]
fn a_failed_sync_keeps_the_hits_for_the_next_one() {
    let clock = clock_at_window_start();
    let flaky = Arc::new(Flaky {
        inner: MemoryStore::new(),
        down: AtomicBool::new(true),
    });
    let a = limiter(flaky.clone(), &clock);
    for _ in 0..4 {
        assert!(a.check(&RULE, b"k").is_allowed());
    }
    assert!(block_on(a.sync()).is_err());
    // Still counted locally while the store is down.
    assert!(a.check(&RULE, b"k").is_allowed());
    assert!(!a.check(&RULE, b"k").is_allowed());
    flaky.down.store(false, Ordering::SeqCst);
    block_on(a.sync()).unwrap();
    // All five reached the store: another process sees them.
    let b = limiter(flaky, &clock);
    b.add(&RULE, b"k");
    block_on(b.sync()).unwrap();
    assert!(!b.peek(&RULE, b"k").is_allowed());
}

#[test]
fn past_the_cap_newcomers_share_one_counter_and_idle_ones_are_dropped() {
    let clock = clock_at_window_start();
    let l = limiter(Arc::new(MemoryStore::new()), &clock).with_max_entries(3);
    for s in [b"a", b"b", b"c"] {
        assert!(l.check(&RULE, s).is_allowed());
    }
    // d, e, f, … share the overflow counter: five of them in all.
    let newcomers: Vec<String> = (0..8).map(|i| format!("new{i}")).collect();
    let allowed = newcomers
        .iter()
        .filter(|s| l.check(&RULE, s.as_bytes()).is_allowed())
        .count();
    assert_eq!(allowed, 5);
    assert_eq!(l.local_counters(), 4);
    block_on(l.sync()).unwrap();
    // Two windows later nothing weighs any more: the counters go.
    clock.advance_secs(121);
    block_on(l.sync()).unwrap();
    assert_eq!(l.local_counters(), 0);
}

#[test]
fn long_subjects_are_kept_by_digest_and_stay_distinct() {
    let clock = clock_at_window_start();
    let l = limiter(Arc::new(MemoryStore::new()), &clock);
    let long_a = [b'a'; 100];
    let mut long_b = long_a;
    long_b[99] = b'b';
    for _ in 0..5 {
        assert!(l.check(&RULE, &long_a).is_allowed());
    }
    assert!(!l.check(&RULE, &long_a).is_allowed());
    assert!(l.check(&RULE, &long_b).is_allowed());
}

proptest! {
    /// Waiting the `Retry-After` it was given always lets a refused client
    /// through (when nobody else adds hits), and never much later than
    /// needed: one second less would still be refused.
    #[test]
    fn retry_after_is_enough_and_not_much_more(
        limit in 1u64..50,
        window_secs in 1u32..600,
        previous in 0u64..200,
        current in 0u64..200,
        elapsed_frac in 0u64..1000,
    ) {
        let window_ms = u64::from(window_secs) * 1000;
        let elapsed = elapsed_frac * window_ms / 1000;
        if let Decision::Limited { retry_after_secs } = limited(limit, window_ms, elapsed, previous, current) {
            prop_assert!(retry_after_secs >= 1);
            let at = |wait_ms: u64| {
                let t = elapsed + wait_ms;
                if t < window_ms {
                    limited(limit, window_ms, t, previous, current)
                } else if t < 2 * window_ms {
                    limited(limit, window_ms, t - window_ms, current, 0)
                } else {
                    limited(limit, window_ms, t % window_ms, 0, 0)
                }
            };
            prop_assert_eq!(at(retry_after_secs * 1000), Decision::Allowed);
            if retry_after_secs > 1 {
                prop_assert!(!at((retry_after_secs - 1) * 1000 - 1).is_allowed());
            }
        }
    }
}

#[test]
fn hits_counted_just_before_a_window_ends_still_reach_the_store() {
    let clock = clock_at_window_start();
    let store: Arc<dyn RateLimitStore> = Arc::new(MemoryStore::new());
    let a = limiter(store.clone(), &clock);
    clock.advance_secs(59);
    for _ in 0..5 {
        assert!(a.check(&RULE, b"late").is_allowed());
    }
    // The window rolls before A syncs: the five are owed to the old one.
    clock.advance_secs(2);
    // ⌊5 × 59/60⌋ = 4 weigh locally: room for one more, not two.
    assert!(a.check(&RULE, b"late").is_allowed());
    assert!(!a.check(&RULE, b"late").is_allowed(), "they weigh locally");
    block_on(a.sync()).unwrap();
    // Another process sees them as the previous window's count.
    let b = limiter(store, &clock);
    b.add(&RULE, b"late");
    block_on(b.sync()).unwrap();
    assert!(!b.peek(&RULE, b"late").is_allowed());
}
