//! [`EventStore`]: reading the log (order, filters, paging), the cursor
//! of a recent window, retention, and events appended on their own
//! (`append_events`). Most events are appended by session writes, so these
//! cases need both capabilities.

use std::sync::Arc;

use tessera_core::{
    CreateOptions, CreateOutcome, Event, EventKind, EventQuery, EventStore, NewEvent, Revocation,
    RevokeReason, SessionStore, Timestamp,
};

use crate::support::*;

async fn query(
    s: &dyn EventStore,
    subject: Option<&str>,
    handle: Option<&str>,
    kind: Option<EventKind>,
    after: u64,
    limit: u32,
) -> Vec<Event> {
    let q = EventQuery {
        subject: subject.map(str::to_owned),
        handle: handle.map(str::to_owned),
        kind,
        after,
        limit,
    };
    s.events(&q).await.expect("events")
}

pub async fn store_events_order_filters_paging<S: SessionStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let t = |ms: i64| T0.plus_millis(ms);
    let (_, a1) = session("alice", t(0));
    let (_, b1) = session("bob", t(1));
    let (_, a2) = session("alice", t(2));
    let mut expected: Vec<NewEvent> = Vec::new();

    insert(s, &a1).await;
    expected.push(created_event(&a1));
    insert(s, &b1).await;
    expected.push(created_event(&b1));
    let a2_events = [
        created_event(&a2),
        NewEvent::new(EventKind::BindingFailed, &a2, t(3)),
    ];
    let out = s
        .create(&a2, &CreateOptions::default(), &a2_events)
        .await
        .expect("create");
    assert_eq!(out, CreateOutcome::Created { evicted: vec![] });
    expected.extend(a2_events);

    let mut a1n = a1.clone();
    a1n.version = 1;
    let ev = NewEvent::new(EventKind::Elevated, &a1n, t(4));
    update_ok(s, &a1n, std::slice::from_ref(&ev)).await;
    expected.push(ev);

    let mut b1n = b1.clone();
    b1n.version = 1;
    let evs = [
        NewEvent::new(EventKind::Refreshed, &b1n, t(5)),
        NewEvent {
            reason: Some(RevokeReason::RefreshTokenReuse),
            ..NewEvent::new(EventKind::RefreshTokenReuse, &b1n, t(6))
        },
    ];
    update_ok(s, &b1n, &evs).await;
    expected.extend(evs);

    let mut a2n = a2.clone();
    a2n.version = 1;
    a2n.revoked = Some(Revocation {
        at: t(7),
        reason: RevokeReason::Logout,
    });
    let ev = NewEvent::revoked(&a2n, RevokeReason::Logout, t(7));
    update_ok(s, &a2n, std::slice::from_ref(&ev)).await;
    expected.push(ev);

    let all = query(s, None, None, None, 0, 1000).await;
    assert_eq!(
        all.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        expected,
        "events come back in write order with every field intact"
    );
    assert_ids_increasing(&all);

    // Each filter, and combinations, against the same filter applied here.
    type Filter<'a> = (Option<&'a str>, Option<&'a str>, Option<EventKind>);
    let filters: Vec<Filter<'_>> = vec![
        (Some("alice"), None, None),
        (Some("bob"), None, None),
        (None, Some(&a1.handle), None),
        (None, Some(&a2.handle), None),
        (None, None, Some(EventKind::Created)),
        (None, None, Some(EventKind::Revoked)),
        (Some("alice"), None, Some(EventKind::Created)),
        (None, Some(&b1.handle), Some(EventKind::Refreshed)),
        (Some("bob"), Some(&a1.handle), None),
        (Some("nobody"), None, None),
        (None, None, Some(EventKind::Expired)),
    ];
    for (subject, handle, kind) in filters {
        let want: Vec<Event> = all
            .iter()
            .filter(|e| subject.is_none_or(|x| e.event.subject == x))
            .filter(|e| handle.is_none_or(|x| e.event.handle == x))
            .filter(|e| kind.is_none_or(|k| e.event.kind == k))
            .cloned()
            .collect();
        let got = query(s, subject, handle, kind, 0, 1000).await;
        assert_eq!(
            got, want,
            "filter subject={subject:?} handle={handle:?} kind={kind:?}"
        );

        // Paging with the cursor: the limit applies after filtering, each
        // page is full until the last, and the pages add up to the whole.
        for limit in [1u32, 2, 3] {
            let mut paged = Vec::new();
            let mut after = 0;
            loop {
                let page = query(s, subject, handle, kind, after, limit).await;
                let remaining = want.len() - paged.len();
                assert_eq!(
                    page.len(),
                    remaining.min(limit as usize),
                    "page size with limit {limit} after {after} (filter {subject:?} {handle:?} {kind:?})"
                );
                let Some(last) = page.last() else { break };
                after = last.id;
                paged.extend(page);
            }
            assert_eq!(paged, want, "paging with limit {limit}");
        }
    }

    assert_eq!(
        query(s, None, None, None, all[2].id, 1000).await,
        all[3..].to_vec(),
        "after is exclusive"
    );
    let last_id = all.last().map_or(0, |e| e.id);
    assert!(
        query(s, None, None, None, last_id, 1000).await.is_empty(),
        "after the last id"
    );
    // u64::MAX is a valid cursor: a store that casts it to a signed -1 would
    // return everything.
    assert!(
        query(s, None, None, None, u64::MAX, 1000).await.is_empty(),
        "after = u64::MAX"
    );
    assert!(
        query(s, None, None, None, (i64::MAX as u64) + 1, 1000)
            .await
            .is_empty(),
        "after > i64::MAX"
    );
    assert_eq!(
        query(s, None, None, None, 0, u32::MAX).await,
        all,
        "limit = u32::MAX"
    );
}

/// Appends one event of `kind` at `at` for a new session of `subject`
/// (created with no events of its own).
async fn append_event<S: SessionStore + EventStore>(
    s: &S,
    subject: &str,
    kind: EventKind,
    at: Timestamp,
) -> Event {
    let (_, rec) = session(subject, at);
    let ev = match kind {
        EventKind::Revoked => NewEvent::revoked(&rec, RevokeReason::Logout, at),
        other => NewEvent::new(other, &rec, at),
    };
    let out = s
        .create(&rec, &CreateOptions::default(), std::slice::from_ref(&ev))
        .await
        .expect("create");
    assert_eq!(out, CreateOutcome::Created { evicted: vec![] });
    let last = all_events(s).await.pop().expect("the event just appended");
    assert_eq!(last.event, ev);
    last
}

pub async fn store_events_cursor_since<S: SessionStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let t = |min: i64| T0.plus_millis(min * MIN);
    assert_eq!(
        s.events_cursor_since(EventKind::Revoked, T0)
            .await
            .expect("events_cursor_since"),
        0,
        "an empty log"
    );
    // Old revocations, other kinds in between, then a window of recent
    // ones, one of them appended with a clock a minute behind.
    let old1 = append_event(s, "alice", EventKind::Revoked, t(0)).await;
    append_event(s, "bob", EventKind::Created, t(1)).await;
    let old2 = append_event(s, "bob", EventKind::Revoked, t(2)).await;
    let first_recent = append_event(s, "carol", EventKind::Revoked, t(10)).await;
    append_event(s, "dave", EventKind::Refreshed, t(11)).await;
    let skewed = append_event(s, "erin", EventKind::Revoked, t(9)).await;
    let last_recent = append_event(s, "frank", EventKind::Revoked, t(12)).await;
    let newest = append_event(s, "gina", EventKind::Created, t(13)).await;

    let cursor = |kind, since| async move {
        s.events_cursor_since(kind, since)
            .await
            .expect("events_cursor_since")
    };
    let revoked_after = |after: u64| async move {
        query(s, None, None, Some(EventKind::Revoked), after, 1000)
            .await
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    // Since t(10): the first revocation at or after it is `first_recent`;
    // reading from the cursor yields the whole window (and the skewed one,
    // which is older than the window but newer in the log).
    let c = cursor(EventKind::Revoked, t(10)).await;
    assert_eq!(c, first_recent.id - 1, "one less than the first id in the window");
    assert_eq!(
        revoked_after(c).await,
        vec![first_recent.id, skewed.id, last_recent.id]
    );
    // A window that starts with the skewed event: it has the smallest `at`
    // but not the smallest id.
    let c = cursor(EventKind::Revoked, t(9)).await;
    assert_eq!(c, first_recent.id - 1);
    // Everything: from before the first event.
    assert_eq!(cursor(EventKind::Revoked, T0).await, old1.id - 1);
    assert_eq!(cursor(EventKind::Revoked, t(1)).await, old2.id - 1);
    // Exactly at `at` counts as "since".
    assert_eq!(cursor(EventKind::Revoked, t(12)).await, last_recent.id - 1);
    // Nothing since: the newest id of any kind, so nothing is re-read.
    assert_eq!(cursor(EventKind::Revoked, t(13)).await, newest.id);
    assert!(revoked_after(newest.id).await.is_empty());
    // Other kinds answer the same way.
    assert_eq!(cursor(EventKind::Created, t(5)).await, newest.id - 1);
    assert_eq!(cursor(EventKind::Refreshed, t(12)).await, newest.id);
    assert_eq!(cursor(EventKind::Expired, T0).await, newest.id);
}

pub async fn store_delete_events_before_in_batches<S: SessionStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let t = |min: i64| T0.plus_millis(min * MIN);
    assert_eq!(
        s.delete_events_before(t(100), 10)
            .await
            .expect("delete_events_before"),
        0,
        "an empty log"
    );
    let mut all = Vec::new();
    for i in 0..7 {
        let kind = if i % 2 == 0 {
            EventKind::Revoked
        } else {
            EventKind::Created
        };
        all.push(append_event(s, &format!("user-{i}"), kind, t(i)).await);
    }
    // A late writer's event with an older time than the one before it.
    all.push(append_event(s, "late", EventKind::Revoked, t(3)).await);
    let delete = |cutoff: Timestamp, batch: u32| async move {
        s.delete_events_before(cutoff, batch)
            .await
            .expect("delete_events_before")
    };
    let ids = |events: Vec<Event>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();

    assert_eq!(delete(t(0), 10).await, 0, "nothing is before the first event");
    assert_eq!(delete(t(5), 0).await, 0, "a batch of 0 deletes nothing");
    // Batches of 2, oldest first.
    assert_eq!(delete(t(5), 2).await, 2);
    assert_eq!(ids(all_events(s).await), ids(all[2..].to_vec()));
    assert_eq!(delete(t(5), 2).await, 2);
    // The cutoff is exclusive: t(4) stays, and so does everything after it,
    // including the late event that is itself older than the cutoff (only a
    // prefix of the log is deleted).
    assert_eq!(delete(t(5), 2).await, 1);
    assert_eq!(delete(t(5), 2).await, 0);
    assert_eq!(ids(all_events(s).await), ids(all[5..].to_vec()));
    // The feed's reads still work on what is left.
    let revoked: Vec<u64> = query(s, None, None, Some(EventKind::Revoked), 0, 100)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(revoked, vec![all[6].id, all[7].id]);
    assert_eq!(
        s.events_cursor_since(EventKind::Revoked, t(3))
            .await
            .expect("events_cursor_since"),
        all[6].id - 1
    );

    // Everything: ids are never reused afterwards.
    assert_eq!(delete(t(100), 1000).await, 3);
    assert!(all_events(s).await.is_empty());
    let next = append_event(s, "after", EventKind::Revoked, t(50)).await;
    assert!(
        next.id > all.last().map_or(0, |e| e.id),
        "id {} reused after every event was deleted",
        next.id
    );
}

pub async fn store_append_events_records_no_write_in_order<S: SessionStore + EventStore>(store: Arc<S>) {
    let s = &*store;
    let (_, a) = session("alice", T0);
    insert(s, &a).await;
    let skip = all_events(s).await.len();
    let failed = |ms: i64| NewEvent::new(EventKind::BindingFailed, &a, T0.plus_millis(ms));
    s.append_events(&[]).await.expect("append nothing");
    s.append_events(&[failed(1), failed(2)]).await.expect("append");
    s.append_events(&[failed(3)]).await.expect("append");
    let got = all_events(s).await;
    let new: Vec<&Event> = got[skip..].iter().collect();
    assert_eq!(
        new.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        vec![failed(1), failed(2), failed(3)],
        "appended in order, nothing else"
    );
    assert!(new.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    assert_eq!(
        query(s, None, Some(&a.handle), Some(EventKind::BindingFailed), 0, 10)
            .await
            .len(),
        3,
        "found by handle and kind"
    );
}
