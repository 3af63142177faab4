//! The cache's rules without Redis: what may be stored and served, and when.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_conformance::support::{T0, session};
use tessera_core::SessionRecord;

use super::{CacheOptions, Core, Lookup, NAME_LEN, Ticket};

fn core() -> Core {
    Core::new(&CacheOptions::default())
}

fn record() -> Arc<SessionRecord> {
    Arc::new(session("alice", T0).1)
}

fn ticket(c: &Core, r: &SessionRecord) -> Ticket {
    match c.lookup(&r.token_hash, Instant::now()) {
        Lookup::Miss(Some(t)) => t,
        Lookup::Miss(None) => panic!("no ticket: not live"),
        Lookup::Hit(_) => panic!("unexpected hit"),
    }
}

fn hit(c: &Core, r: &SessionRecord) -> bool {
    matches!(c.lookup(&r.token_hash, Instant::now()), Lookup::Hit(_))
}

#[tokio::test]
async fn a_read_is_served_from_memory_while_live() {
    let c = core();
    c.went_live();
    let r = record();
    let t = ticket(&c, &r);
    c.insert(t, Arc::clone(&r), Instant::now());
    match c.lookup(&r.token_hash, Instant::now()) {
        Lookup::Hit(got) => assert!(Arc::ptr_eq(&got, &r)),
        Lookup::Miss(_) => panic!("miss"),
    }
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.live), (1, 1, true));
}

#[tokio::test]
async fn nothing_is_cached_before_the_subscription_is_confirmed() {
    let c = core();
    let r = record();
    assert!(matches!(
        c.lookup(&r.token_hash, Instant::now()),
        Lookup::Miss(None)
    ));
    c.went_live();
    assert!(!hit(&c, &r));
}

#[tokio::test]
async fn a_loss_drops_every_entry_at_once_and_a_new_subscription_starts_empty() {
    let c = core();
    c.went_live();
    let rs: Vec<_> = (0..100).map(|_| record()).collect();
    for r in &rs {
        let t = ticket(&c, r);
        c.insert(t, Arc::clone(r), Instant::now());
    }
    // Slots are direct-mapped: a later record may have taken an earlier
    // one's slot (about one run in twenty with 100 records), so count the
    // ones held rather than expect all of them.
    let held = rs.iter().filter(|r| hit(&c, r)).count();
    assert!(held >= 90, "only {held} of 100 records held");
    c.lost();
    assert!(
        rs.iter()
            .all(|r| matches!(c.lookup(&r.token_hash, Instant::now()), Lookup::Miss(None)))
    );
    c.went_live();
    assert!(
        rs.iter().all(|r| !hit(&c, r)),
        "entries of the old subscription are gone"
    );
    assert_eq!(c.stats().losses, 1);
}

#[tokio::test]
async fn a_read_that_started_before_a_loss_is_not_stored_after_it() {
    let c = core();
    c.went_live();
    let r = record();
    let t = ticket(&c, &r);
    // The subscription drops and comes back while the read is in flight:
    // invalidations published in between were never received.
    c.lost();
    c.went_live();
    c.insert(t, Arc::clone(&r), Instant::now());
    assert!(!hit(&c, &r));
}

#[tokio::test]
async fn a_read_that_raced_an_invalidation_is_not_stored() {
    let c = core();
    c.went_live();
    let r = record();
    let t = ticket(&c, &r);
    // The session changed (and its invalidation arrived) while the read
    // was in flight: its answer may be the old record.
    c.invalidate(&r.token_hash.0[..NAME_LEN]);
    c.insert(t, Arc::clone(&r), Instant::now());
    assert!(!hit(&c, &r));
    // The next read is stored.
    let t = ticket(&c, &r);
    c.insert(t, Arc::clone(&r), Instant::now());
    assert!(hit(&c, &r));
}

#[tokio::test]
async fn an_invalidation_evicts_only_the_session_it_names() {
    let c = core();
    c.went_live();
    let (a, b) = (record(), record());
    for r in [&a, &b] {
        let t = ticket(&c, r);
        c.insert(t, Arc::clone(r), Instant::now());
    }
    c.apply(&a.token_hash.0[..NAME_LEN]);
    assert!(!hit(&c, &a));
    assert!(hit(&c, &b));
    // Several names in one message.
    let mut both = a.token_hash.0[..NAME_LEN].to_vec();
    both.extend_from_slice(&b.token_hash.0[..NAME_LEN]);
    c.apply(&both);
    assert!(!hit(&c, &b));
}

#[tokio::test]
async fn a_message_it_cannot_read_drops_everything() {
    let c = core();
    c.went_live();
    let r = record();
    let t = ticket(&c, &r);
    c.insert(t, Arc::clone(&r), Instant::now());
    let t2 = ticket(&c, &record());
    c.apply(b"seventeen bytes!!");
    assert!(!hit(&c, &r));
    assert!(c.stats().live, "still subscribed: only the entries go");
    // A read in flight across the flush is void too.
    let r2 = record();
    c.insert(t2, Arc::clone(&r2), Instant::now());
    assert!(!hit(&c, &r2));
}

#[test]
fn an_entry_is_served_for_at_most_the_ttl() {
    let c = Core::new(&CacheOptions {
        ttl: Duration::from_millis(500),
        ..CacheOptions::default()
    });
    c.went_live();
    let r = record();
    let t = ticket(&c, &r);
    let read_at = Instant::now();
    c.insert(t, Arc::clone(&r), read_at);
    let at = |ms| c.lookup(&r.token_hash, read_at + Duration::from_millis(ms));
    assert!(matches!(at(499), Lookup::Hit(_)));
    assert!(matches!(at(500), Lookup::Miss(Some(_))));
}

#[tokio::test]
async fn the_size_is_bounded_and_a_collision_just_replaces() {
    let c = Core::new(&CacheOptions {
        max_entries: 32,
        ..CacheOptions::default()
    });
    c.went_live();
    let rs: Vec<_> = (0..1000).map(|_| record()).collect();
    for r in &rs {
        let t = ticket(&c, r);
        c.insert(t, Arc::clone(r), Instant::now());
    }
    let held = rs.iter().filter(|r| hit(&c, r)).count();
    assert!((1..=32).contains(&held), "{held} held");
    let slots: usize = c.shards.iter().map(|s| s.lock().unwrap().slots.len()).sum();
    assert!(slots <= 32, "{slots} slots");
}

#[test]
fn cache_options_parse_and_refuse_nonsense() {
    let mut o = CacheOptions::default();
    o.set("cache", "off").unwrap();
    assert!(!o.enabled);
    o.set("cache", "on").unwrap();
    assert!(o.enabled);
    o.set("cache_ttl_ms", "250").unwrap();
    assert_eq!(o.ttl, Duration::from_millis(250));
    o.set("cache_size", "10").unwrap();
    assert_eq!(o.max_entries, 10);
    for (k, v) in [
        ("cache", "yes"),
        ("cache_ttl_ms", "0"),
        ("cache_ttl_ms", "60001"),
        ("cache_ttl_ms", "-1"),
        ("cache_size", "0"),
        ("cache_size", "many"),
    ] {
        assert!(o.set(k, v).is_err(), "{k}={v}");
    }
}

#[tokio::test]
async fn a_write_that_ends_without_its_answer_drops_everything() {
    let c = core();
    c.went_live();
    let (r, other) = (record(), record());
    for x in [&r, &other] {
        let t = ticket(&c, x);
        c.insert(t, Arc::clone(x), Instant::now());
    }
    let late = record();
    let in_flight = ticket(&c, &late);
    // Answered: its own invalidations say what changed; nothing else goes.
    super::Pending(Some(&c)).answered();
    assert!(hit(&c, &r) && hit(&c, &other));
    // Failed, timed out or dropped mid-way: it may have changed anything.
    drop(super::Pending(Some(&c)));
    assert!(!hit(&c, &r) && !hit(&c, &other));
    assert!(c.stats().live, "still live: later reads are cached again");
    c.insert(in_flight, Arc::clone(&late), Instant::now());
    assert!(!hit(&c, &late), "a read from before the drop is not stored");
    let t = ticket(&c, &r);
    c.insert(t, Arc::clone(&r), Instant::now());
    assert!(hit(&c, &r));
}
