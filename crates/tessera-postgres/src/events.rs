//! The event log: appending (for the writes of the other files), the
//! paged and cursor reads of the feed, and retention.
//!
//! Ids come from a sequence, handed out when a writer appends, and
//! transactions commit in another order: with ids 5 and 6 taken by two open
//! transactions, 6 can commit first, a follower reads it and moves its
//! cursor to 6, and 5 then commits behind the cursor, never to be read. So
//! the log has a lock (a transaction-level advisory lock per schema):
//! writers take it *shared* just before they take their ids and keep it
//! until they commit, and readers of the log take it *exclusive* before
//! they read. A reader therefore waits until every writer that holds ids
//! has committed (or rolled back), and writers that come after it take
//! ids greater than every id it can see: when a follower sees id `n`, no
//! id below `n` can still appear. Writers share the lock, so their commits
//! still share WAL flushes (group commit); only a read of the log makes
//! appends pause, for the time of that one read.
//!
//! Ids are never reused (a sequence never goes back), though an id may be
//! skipped (a transaction that took it and then failed). Every write takes
//! the lock last, just before its commit, and readers take nothing else,
//! so the lock is never part of a deadlock.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tessera_core::{
    Event, EventKind, EventQuery, EventStore, NewEvent, RevokeReason, StoreResult, Timestamp,
};
use tokio_postgres::types::ToSql;

use crate::codec::decode_event;
use crate::error::Fail;
use crate::{PostgresStore, count32, execute, query, query_one, transaction};

/// The log's lock, for the store's schema.
const LOG_LOCK_SHARED: &str =
    "SELECT pg_advisory_xact_lock_shared(hashtextextended('tessera-events:' || current_schema(), 0))";
const LOG_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('tessera-events:' || current_schema(), 0))";

/// `$1` new ids. The lock statement comes first, so no id is taken
/// before it is held.
const TAKE_IDS: &str = "SELECT nextval('event_ids') FROM generate_series(1, $1::bigint)";

const INSERT_ONE: &str = "INSERT INTO events (id, at, kind, subject, handle, reason) \
     VALUES (nextval('event_ids'), $1, $2, $3, $4, $5)";

const INSERT: &str = "INSERT INTO events (id, at, kind, subject, handle, reason) \
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])";

/// Appends `events` in order, in the caller's transaction. Call it last
/// (see the module docs).
pub(crate) async fn append<C: GenericClient>(c: &C, events: &[NewEvent]) -> Result<(), Fail> {
    match events {
        [] => return Ok(()),
        [e] => {
            // The usual case, one event: the lock and the insert go out
            // together (one round trip); the server runs them in order, so
            // the id is taken with the lock held, and a failed lock aborts
            // the transaction, failing the insert with it.
            let (at, kind, reason) = (
                e.at.unix_millis(),
                e.kind.as_str(),
                e.reason.map(RevokeReason::as_str),
            );
            // Both prepared first, so each query below is sent when first
            // polled, in the order given: no prepare round trip of one can
            // let the other overtake it.
            let lock = c.prepare_cached(LOG_LOCK_SHARED).await?;
            let insert = c.prepare_cached(INSERT_ONE).await?;
            let params: [&(dyn ToSql + Sync); 5] = [&at, &kind, &e.subject, &e.handle, &reason];
            futures::try_join!(c.execute(&lock, &[]), c.execute(&insert, &params))?;
            return Ok(());
        }
        _ => {}
    }
    execute(c, LOG_LOCK_SHARED, &[]).await?;
    let mut ids: Vec<i64> = query(c, TAKE_IDS, &[&(events.len() as i64)])
        .await?
        .iter()
        .map(|r| crate::codec::col::<i64>(r, 0, "event id"))
        .collect::<StoreResult<_>>()?;
    // Each `nextval` is greater than the one before; in order, they number
    // the events in the order given.
    ids.sort_unstable();
    let at: Vec<i64> = events.iter().map(|e| e.at.unix_millis()).collect();
    let kind: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let subject: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
    let handle: Vec<&str> = events.iter().map(|e| e.handle.as_str()).collect();
    let reason: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.reason.map(RevokeReason::as_str))
        .collect();
    execute(c, INSERT, &[&ids, &at, &kind, &subject, &handle, &reason]).await?;
    Ok(())
}

/// A `revoked` event for a session this store revoked itself.
pub(crate) fn revoked(subject: &str, handle: &str, reason: RevokeReason, now: Timestamp) -> NewEvent {
    NewEvent {
        at: now,
        kind: EventKind::Revoked,
        subject: subject.to_owned(),
        handle: handle.to_owned(),
        reason: Some(reason),
    }
}

const REVOKED_CURSOR_SINCE: &str = "SELECT coalesce(\
    (SELECT min(id) - 1 FROM events WHERE kind = 'revoked' AND at >= $1), \
    (SELECT max(id) FROM events), 0)";

const CURSOR_SINCE: &str = "SELECT coalesce(\
    (SELECT min(id) - 1 FROM events WHERE kind = $2 AND at >= $1), \
    (SELECT max(id) FROM events), 0)";

/// Retention in one statement: the oldest `$2` events, up to the first
/// that is not before the cutoff.
const DELETE_BEFORE: &str = "WITH oldest AS (SELECT id, at FROM events ORDER BY id LIMIT $2), \
     keep AS (SELECT min(id) AS id FROM oldest WHERE at >= $1) \
     DELETE FROM events WHERE id IN (SELECT id FROM oldest \
         WHERE id < coalesce((SELECT id FROM keep), 9223372036854775807))";

#[async_trait]
impl EventStore for PostgresStore {
    async fn events(&self, q: &EventQuery) -> StoreResult<Vec<Event>> {
        let after = i64::try_from(q.after).unwrap_or(i64::MAX);
        let limit = i64::from(q.limit);
        let kind = q.kind.map(EventKind::as_str);
        // One statement text per combination of filters (a handful, each
        // prepared once per connection).
        let mut sql = String::from("SELECT id, at, kind, subject, handle, reason FROM events WHERE id > $1");
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&after, &limit];
        if let Some(s) = &q.subject {
            params.push(s);
            sql.push_str(&format!(" AND subject = ${}", params.len()));
        }
        if let Some(h) = &q.handle {
            params.push(h);
            sql.push_str(&format!(" AND handle = ${}", params.len()));
        }
        if let Some(k) = &kind {
            params.push(k);
            sql.push_str(&format!(" AND kind = ${}", params.len()));
        }
        sql.push_str(" ORDER BY id LIMIT $2");
        transaction!(self, |tx| {
            execute(&tx, LOG_LOCK, &[]).await?;
            query(&tx, &sql, &params)
                .await?
                .iter()
                .map(decode_event)
                .collect::<StoreResult<Vec<_>>>()?
        })
    }

    async fn events_cursor_since(&self, kind: EventKind, since: Timestamp) -> StoreResult<u64> {
        let since = since.unix_millis();
        let cursor: i64 = transaction!(self, |tx| {
            execute(&tx, LOG_LOCK, &[]).await?;
            let row = if kind == EventKind::Revoked {
                // The literal lets the planner use the partial index on `at`.
                query_one(&tx, REVOKED_CURSOR_SINCE, &[&since]).await?
            } else {
                query_one(&tx, CURSOR_SINCE, &[&since, &kind.as_str()]).await?
            };
            crate::codec::col::<i64>(&row, 0, "event cursor")?
        })?;
        u64::try_from(cursor).map_err(|_| crate::codec::corrupt("event cursor", cursor))
    }

    async fn delete_events_before(&self, cutoff: Timestamp, batch: u32) -> StoreResult<u32> {
        // Under the log's lock too, so what is deleted is a prefix of
        // everything committed, never ahead of an id still to appear.
        let n = transaction!(self, |tx| {
            execute(&tx, LOG_LOCK, &[]).await?;
            execute(&tx, DELETE_BEFORE, &[&cutoff.unix_millis(), &i64::from(batch)]).await?
        })?;
        Ok(count32(n))
    }

    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        transaction!(self, |tx| { append(&tx, events).await? })
    }
}
