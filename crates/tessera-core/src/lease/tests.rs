use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::{ManualClock, MemoryStore, Timestamp};

fn two_nodes() -> (DutyLease, DutyLease, Arc<ManualClock>) {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_000)));
    let ttl = Duration::from_secs(30);
    (
        DutyLease::new(store.clone(), clock.clone(), "sweep", ttl),
        DutyLease::new(store, clock.clone(), "sweep", ttl),
        clock,
    )
}

#[tokio::test]
async fn one_holder_keeps_the_duty_while_it_renews() {
    let (a, b, clock) = two_nodes();
    assert_ne!(a.holder(), b.holder());
    assert!(a.hold().await.unwrap());
    assert!(!b.hold().await.unwrap());
    // A renews every 20 s: it keeps the lease well past one TTL.
    for _ in 0..5 {
        clock.advance_secs(20);
        assert!(a.hold().await.unwrap());
        assert!(!b.hold().await.unwrap());
    }
}

#[tokio::test]
async fn a_dead_holder_is_taken_over_after_the_ttl() {
    let (a, b, clock) = two_nodes();
    assert!(a.hold().await.unwrap());
    // A dies (stops renewing).
    clock.advance_secs(29);
    assert!(!b.hold().await.unwrap());
    clock.advance_secs(1);
    assert!(b.hold().await.unwrap());
    // A, back from a pause, learns it lost the duty.
    assert!(!a.renew().await.unwrap());
    assert!(!a.hold().await.unwrap());
}

#[tokio::test]
async fn a_release_hands_the_duty_over_at_once() {
    let (a, b, _) = two_nodes();
    assert!(a.hold().await.unwrap());
    assert!(!b.release().await.unwrap(), "only the holder releases");
    assert!(!b.hold().await.unwrap());
    assert!(a.release().await.unwrap());
    assert!(b.hold().await.unwrap());
    assert!(!a.renew().await.unwrap());
}
