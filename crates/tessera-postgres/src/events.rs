//! The event log: appending (for the writes of the other files), the
//! paged and cursor reads of the feed, and retention.
//!
//! Ids come from the single row of `event_counter`, incremented by the
//! appending transaction itself, not from a sequence. A sequence hands out
//! ids at insert time, and transactions commit in another order: with ids
//! 5 and 6 taken by two open transactions, 6 can commit first, a follower
//! reads it and moves its cursor to 6, and then 5 commits, behind the
//! cursor, never to be read. The counter row instead stays locked by the
//! transaction that incremented it until that one commits; the next
//! appender waits for the lock and reads the committed value, so ids are
//! handed out in commit order, and when a follower sees id `n` every event
//! below `n` is already visible to it. Ids are never reused: the counter
//! only grows, whatever retention deletes.
//!
//! The price is that transactions that append events commit one at a
//! time. Every write appends its events last, just before committing, so
//! the lock is held for one statement and the commit (and never while
//! waiting for another lock: it is always the last one taken).

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tessera_core::{
    Event, EventKind, EventQuery, EventStore, NewEvent, RevokeReason, StoreResult, Timestamp,
};
use tokio_postgres::types::ToSql;

use crate::codec::decode_event;
use crate::error::Fail;
use crate::{PostgresStore, count32, execute, query, query_one, transaction, with_client};

const APPEND: &str = "WITH c AS (UPDATE event_counter SET last_id = last_id + $1 RETURNING last_id) \
     INSERT INTO events (id, at, kind, subject, handle, reason) \
     SELECT c.last_id - $1 + e.ord, e.at, e.kind, e.subject, e.handle, e.reason \
     FROM c, unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) \
         WITH ORDINALITY AS e(at, kind, subject, handle, reason, ord)";

/// Appends `events` in order, in the caller's transaction. Call it last
/// (see the module docs).
pub(crate) async fn append<C: GenericClient>(c: &C, events: &[NewEvent]) -> Result<(), Fail> {
    if events.is_empty() {
        return Ok(());
    }
    let n = events.len() as i64;
    let at: Vec<i64> = events.iter().map(|e| e.at.unix_millis()).collect();
    let kind: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let subject: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
    let handle: Vec<&str> = events.iter().map(|e| e.handle.as_str()).collect();
    let reason: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.reason.map(RevokeReason::as_str))
        .collect();
    execute(c, APPEND, &[&n, &at, &kind, &subject, &handle, &reason]).await?;
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
        with_client!(self, |c| {
            query(c, &sql, &params)
                .await?
                .iter()
                .map(decode_event)
                .collect::<StoreResult<Vec<_>>>()?
        })
    }

    async fn events_cursor_since(&self, kind: EventKind, since: Timestamp) -> StoreResult<u64> {
        let since = since.unix_millis();
        let cursor: i64 = with_client!(self, |c| {
            let row = if kind == EventKind::Revoked {
                // The literal lets the planner use the partial index on `at`.
                query_one(c, REVOKED_CURSOR_SINCE, &[&since]).await?
            } else {
                query_one(c, CURSOR_SINCE, &[&since, &kind.as_str()]).await?
            };
            crate::codec::col::<i64>(&row, 0, "event cursor")?
        })?;
        u64::try_from(cursor).map_err(|_| crate::codec::corrupt("event cursor", cursor))
    }

    async fn delete_events_before(&self, cutoff: Timestamp, batch: u32) -> StoreResult<u32> {
        let n = with_client!(self, |c| {
            execute(c, DELETE_BEFORE, &[&cutoff.unix_millis(), &i64::from(batch)]).await?
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
