use std::sync::Arc;

use super::*;
use crate::error::Error;
use crate::memory::MemoryStore;
use crate::model::RevokeReason;
use crate::sessions::{CreateSession, Sessions};
use crate::time::ManualClock;
use crate::{Clock, SessionPolicy};

const T0: Timestamp = Timestamp::from_unix_secs(1_800_000_000);
const WINDOW: i64 = 360;

async fn revoked_sessions(n: usize, sessions: &Sessions) -> Vec<String> {
    let mut handles = Vec::new();
    for i in 0..n {
        let issued = sessions
            .create(CreateSession {
                subject: format!("u{i}"),
                ..Default::default()
            })
            .await
            .unwrap();
        let handle = issued.session.handle.clone();
        assert!(sessions.revoke(&handle, RevokeReason::Logout).await.unwrap());
        handles.push(handle);
    }
    handles
}

fn setup() -> (Sessions, EventLog, ManualClock) {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(T0);
    let sessions = Sessions::new(store.clone(), Arc::new(clock.clone()), SessionPolicy::default());
    (sessions, EventLog::new(store), clock)
}

/// SPEC §4.4: the feed lists each revocation whose access tokens may still be
/// presented (until = revoked_at + window), in event order, and drops it
/// once that has passed.
#[tokio::test]
async fn feed_lists_the_revocations_whose_window_is_open() {
    let (sessions, log, clock) = setup();
    let early = revoked_sessions(2, &sessions).await;
    clock.advance_secs(300);
    let late = revoked_sessions(1, &sessions).await;

    let page = log.live_revocations(0, clock.now(), WINDOW, 16).await.unwrap();
    assert!(page.complete);
    let sids: Vec<_> = page.revocations.iter().map(|r| r.sid.clone()).collect();
    assert_eq!(sids, [early.clone(), late.clone()].concat());
    assert_eq!(page.revocations[0].revoked_at, T0);
    assert_eq!(page.revocations[0].until, T0.plus_secs(WINDOW));

    // Past the early ones' window only the late one is left, and the
    // snapshot starts after the early ones without reading them.
    clock.advance_secs(61);
    let now = clock.now();
    let page = log.live_revocations(0, now, WINDOW, 16).await.unwrap();
    assert_eq!(
        page.revocations.iter().map(|r| &r.sid).collect::<Vec<_>>(),
        [&late[0]]
    );
    let start = log.revocation_snapshot_start(now, WINDOW).await.unwrap();
    let snap = log.live_revocations(start, now, WINDOW, 16).await.unwrap();
    assert_eq!(snap, page);

    // A follower at the end of the log gets nothing, with the cursor kept.
    let tail = log.live_revocations(page.next, now, WINDOW, 16).await.unwrap();
    assert!(tail.revocations.is_empty() && tail.complete);
    assert_eq!(tail.next, page.next);
}

/// One answer is bounded: a long run of closed revocations is skipped a
/// page at a time (`complete: false`, the cursor past them), never read
/// whole in one request.
#[tokio::test]
async fn feed_skips_a_long_run_of_closed_revocations_in_bounded_steps() {
    let (sessions, log, clock) = setup();
    let n = REVOCATION_PAGE as usize * 2 + 5;
    revoked_sessions(n, &sessions).await;
    clock.advance_secs(WINDOW + 1);
    let first = log.live_revocations(0, clock.now(), WINDOW, 1).await.unwrap();
    assert!(first.revocations.is_empty());
    assert!(!first.complete, "one store page read, more to come");
    let rest = log
        .live_revocations(first.next, clock.now(), WINDOW, 16)
        .await
        .unwrap();
    assert!(rest.revocations.is_empty());
    assert!(rest.complete);
    assert!(rest.next > first.next);
}

#[tokio::test]
async fn events_page_limits_are_checked() {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
    let s = Sessions::new(store.clone(), Arc::new(clock), SessionPolicy::default());
    let log = EventLog::new(store);
    s.create(CreateSession {
        subject: "u".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    for limit in [0, MAX_EVENTS_PAGE + 1] {
        let q = EventQuery {
            limit,
            ..Default::default()
        };
        assert!(matches!(log.page(q).await, Err(Error::Validation { .. })));
    }
    let q = EventQuery {
        limit: 10,
        ..Default::default()
    };
    let evs = log.page(q).await.unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].event.kind, EventKind::Created);
}
