//! The audit log: appending events (for the writes of the other files),
//! retention, and the paged and cursor reads of the feed.

use rusqlite::{Connection, ToSql, params};
use tessera_core::{
    Event, EventKind, EventQuery, NewEvent, RevokeReason, StoreError, StoreResult, Timestamp,
};

use crate::codec::decode_event;
use crate::error::SqlResultExt;

// ---------------------------------------------------------------- writes

pub(super) fn insert_event(
    c: &Connection,
    at: Timestamp,
    kind: EventKind,
    subject: &str,
    handle: &str,
    reason: Option<RevokeReason>,
) -> StoreResult<()> {
    c.prepare_cached("INSERT INTO events (at, kind, subject, handle, reason) VALUES (?1, ?2, ?3, ?4, ?5)")
        .store()?
        .execute(params![
            at.unix_millis(),
            kind.as_str(),
            subject,
            handle,
            reason.map(RevokeReason::as_str)
        ])
        .store()?;
    Ok(())
}

/// `EventStore::append_events`: events recording no other write.
pub(crate) fn append_events(c: &Connection, events: &[NewEvent]) -> StoreResult<()> {
    insert_events(c, events)
}

pub(super) fn insert_events(c: &Connection, events: &[NewEvent]) -> StoreResult<()> {
    for e in events {
        insert_event(c, e.at, e.kind, &e.subject, &e.handle, e.reason)?;
    }
    Ok(())
}

pub(super) const OLDEST_EVENTS: &str = "SELECT id, at FROM events ORDER BY id LIMIT ?1";

/// Retention: the oldest events up to the first that is not before
/// `cutoff`, at most `batch` of them. Reads at most `batch` rows (in rowid
/// order, from the table's first page), so a log with nothing to delete
/// costs one short read, never a scan.
pub(crate) fn delete_events_before(c: &Connection, cutoff: Timestamp, batch: u32) -> StoreResult<u32> {
    // Sessions that ended before the cutoff have no events left to find by
    // handle (schema version 7), so their subjects are no longer needed.
    c.prepare_cached(
        "DELETE FROM ended_sessions WHERE handle IN \
         (SELECT handle FROM ended_sessions WHERE ended_at < ?1 ORDER BY ended_at LIMIT ?2)",
    )
    .store()?
    .execute(params![cutoff.unix_millis(), i64::from(batch)])
    .store()?;
    let mut last = None;
    {
        let mut stmt = c.prepare_cached(OLDEST_EVENTS).store()?;
        let mut rows = stmt.query([i64::from(batch)]).store()?;
        while let Some(row) = rows.next().store()? {
            let at: i64 = row.get(1).store()?;
            if at >= cutoff.unix_millis() {
                break;
            }
            last = Some(row.get::<_, i64>(0).store()?);
        }
    }
    let Some(last) = last else { return Ok(0) };
    let n = c
        .prepare_cached("DELETE FROM events WHERE id <= ?1")
        .store()?
        .execute([last])
        .store()?;
    Ok(u32::try_from(n).unwrap_or(batch))
}

// ----------------------------------------------------------------- reads

pub(crate) fn events(c: &Connection, q: &EventQuery) -> StoreResult<Vec<Event>> {
    let after = i64::try_from(q.after).unwrap_or(i64::MAX);
    let limit = i64::from(q.limit);
    let kind = q.kind.map(EventKind::as_str);
    let (sql, params) = events_statement(q, &after, &limit, kind.as_ref());
    let mut stmt = c.prepare_cached(&sql).store()?;
    let mut rows = stmt.query(&params[..]).store()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().store()? {
        out.push(decode_event(row)?);
    }
    Ok(out)
}

/// The statement of [`events`] and its parameters. One statement text per
/// combination of filters (a handful, each cached), rather than `(?2 IS NULL
/// OR subject = ?2)`, which would keep SQLite from using the subject index.
pub(super) fn events_statement<'a>(
    q: &'a EventQuery,
    after: &'a i64,
    limit: &'a i64,
    kind: Option<&'a &'static str>,
) -> (String, Vec<&'a dyn ToSql>) {
    let mut sql = String::from("SELECT id, at, kind, subject, handle, reason FROM events WHERE id > ?1");
    let mut params: Vec<&dyn ToSql> = vec![after, limit];
    if let Some(s) = &q.subject {
        params.push(s);
        sql.push_str(&format!(" AND subject = ?{}", params.len()));
    }
    if let Some(h) = &q.handle {
        params.push(h);
        let i = params.len();
        // Events have no handle index (schema version 3): walk the subject
        // index with the handle's subject, live or ended. A handle that
        // never had a session has no subject, and so no events.
        if q.subject.is_none() {
            sql.push_str(&format!(
                " AND subject = (SELECT subject FROM sessions WHERE handle = ?{i} \
                 UNION ALL SELECT subject FROM ended_sessions WHERE handle = ?{i} LIMIT 1)"
            ));
        }
        sql.push_str(&format!(" AND handle = ?{i}"));
    }
    match kind {
        // The literal, not a parameter: it is what lets SQLite use the
        // partial index `events_revoked_id` (schema version 5).
        Some(k) if *k == EventKind::Revoked.as_str() => sql.push_str(" AND kind = 'revoked'"),
        Some(k) => {
            params.push(k);
            sql.push_str(&format!(" AND kind = ?{}", params.len()));
        }
        None => {}
    }
    sql.push_str(" ORDER BY id LIMIT ?2");
    (sql, params)
}

/// The snapshot's start for `revoked` events (see the trait): the first id
/// comes from the partial index on `at`, a walk over the window's entries
/// only. `INDEXED BY`, because without statistics SQLite prefers to walk
/// `events_revoked_id` from the oldest revocation for the `min(id)`.
pub(super) const REVOKED_CURSOR_SINCE: &str = "SELECT coalesce(\
    (SELECT min(id) - 1 FROM events INDEXED BY events_revoked_at WHERE kind = 'revoked' AND at >= ?1), \
    (SELECT max(id) FROM events), 0)";

/// The same for other kinds, which have no such index: a scan of the log.
const CURSOR_SINCE: &str = "SELECT coalesce(\
    (SELECT min(id) - 1 FROM events WHERE kind = ?2 AND at >= ?1), \
    (SELECT max(id) FROM events), 0)";

pub(crate) fn events_cursor_since(c: &Connection, kind: EventKind, since: Timestamp) -> StoreResult<u64> {
    let since = since.unix_millis();
    let cursor: i64 = if kind == EventKind::Revoked {
        c.prepare_cached(REVOKED_CURSOR_SINCE)
            .store()?
            .query_row([since], |r| r.get(0))
            .store()?
    } else {
        c.prepare_cached(CURSOR_SINCE)
            .store()?
            .query_row(params![since, kind.as_str()], |r| r.get(0))
            .store()?
    };
    u64::try_from(cursor).map_err(|_| StoreError::Corrupt(format!("negative event id {cursor}")))
}
