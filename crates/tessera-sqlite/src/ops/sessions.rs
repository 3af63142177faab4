//! Sessions: creating (with replacement and the per-subject limit),
//! updating, touching, revoking and sweeping them, and reading them back.

use rusqlite::{Connection, OptionalExtension, ToSql, params};
use tessera_core::{
    CreateOutcome, EventKind, NewEvent, RevokeReason, SessionRecord, StoreError, StoreResult, Timestamp,
};

use crate::codec::{SessionRow, decode_session, session_columns};
use crate::error::SqlResultExt;

use super::events::{insert_event, insert_events};

// ---------------------------------------------------------------- writes

/// Revokes one session (bumping its version, as every revocation does) and
/// logs it; false if it is missing, already revoked, or not at
/// `expected_version` when one is given.
fn revoke_one(
    c: &Connection,
    handle: &str,
    expected_version: Option<i64>,
    reason: RevokeReason,
    now: Timestamp,
) -> StoreResult<bool> {
    let subject: Option<String> = c
        .prepare_cached(
            "UPDATE sessions SET version = version + 1, revoked_at = ?2, revoke_reason = ?3 \
             WHERE handle = ?1 AND revoked_at IS NULL AND (?4 IS NULL OR version = ?4) \
             RETURNING subject",
        )
        .store()?
        .query_row(
            params![handle, now.unix_millis(), reason.as_str(), expected_version],
            |r| r.get(0),
        )
        .optional()
        .store()?;
    match subject {
        Some(subject) => {
            insert_event(c, now, EventKind::Revoked, &subject, handle, Some(reason))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

pub(crate) struct Create {
    pub row: SessionRow,
    pub replace: Option<(String, u64)>,
    pub max_per_subject: Option<u32>,
    pub now: Timestamp,
    pub events: Vec<NewEvent>,
}

pub(crate) fn create(c: &Connection, job: &Create) -> StoreResult<CreateOutcome> {
    let row = &job.row;
    if let Some((handle, version)) = &job.replace {
        // A version beyond i64 cannot be stored, so it cannot match.
        let replaced = match i64::try_from(*version) {
            Ok(v) => revoke_one(c, handle, Some(v), RevokeReason::Replaced, job.now)?,
            Err(_) => false,
        };
        if !replaced {
            // A duplicate is reported even when `replace` also misses, as the
            // reference store does: it is the more serious of the two.
            let dup: bool = c
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM sessions WHERE handle = ?1) \
                         OR EXISTS (SELECT 1 FROM sessions WHERE token_hash = ?2)",
                )
                .store()?
                .query_row(params![row.handle, row.token_hash], |r| r.get(0))
                .store()?;
            return if dup {
                Err(StoreError::Duplicate)
            } else {
                Ok(CreateOutcome::Conflict)
            };
        }
    }
    // A duplicate handle or hash fails here, and the caller's savepoint
    // rollback also undoes the revocation of the replaced session.
    c.prepare_cached(concat!(
        "INSERT INTO sessions (",
        session_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    ))
    .store()?
    .execute(&row.params()[..])
    .store()?;
    insert_events(c, &job.events)?;

    let mut evicted = Vec::new();
    if let Some(max) = job.max_per_subject {
        // The new session counts toward the limit (if it is itself active)
        // but is never evicted: skipping the newest `max - 1` others (or
        // `max`, if it does not count) leaves the ones to revoke.
        let now = job.now.unix_millis();
        let new_is_active =
            row.revoked_at.is_none() && row.idle_expires_at.min(row.absolute_expires_at) > now;
        let keep = i64::from(max) - i64::from(new_is_active);
        let mut stmt = c
            .prepare_cached(
                "SELECT handle FROM sessions \
                 WHERE subject = ?1 AND revoked_at IS NULL AND expires_at > ?2 AND handle <> ?4 \
                 ORDER BY created_at DESC, handle DESC LIMIT -1 OFFSET ?3",
            )
            .store()?;
        let victims = stmt
            .query_map(params![row.subject, now, keep.max(0), row.handle], |r| {
                r.get::<_, String>(0)
            })
            .store()?
            .collect::<rusqlite::Result<Vec<String>>>()
            .store()?;
        drop(stmt);
        // Oldest first, as the contract orders evictions.
        for handle in victims.into_iter().rev() {
            if revoke_one(c, &handle, None, RevokeReason::SessionLimit, job.now)? {
                evicted.push(handle);
            }
        }
    }
    Ok(CreateOutcome::Created { evicted })
}

pub(crate) fn update(
    c: &Connection,
    row: &SessionRow,
    expected: u64,
    events: &[NewEvent],
) -> StoreResult<bool> {
    let Ok(expected) = i64::try_from(expected) else {
        return Ok(false);
    };
    let mut params: Vec<&dyn ToSql> = row.params().to_vec();
    params.push(&expected);
    // max(): a touch that landed between the caller's read and this write
    // is kept, not rolled back.
    let n = c
        .prepare_cached(
            "UPDATE sessions SET token_hash = ?2, subject = ?3, version = ?4, created_at = ?5, \
                 last_seen_at = max(last_seen_at, ?6), idle_timeout_ms = ?7, \
                 idle_expires_at = max(idle_expires_at, ?8), absolute_expires_at = ?9, \
                 auth_level = ?10, auth_methods = ?11, auth_time = ?12, device_user_agent = ?13, \
                 device_ip = ?14, device_label = ?15, binding = ?16, data = ?17, revoked_at = ?18, \
                 revoke_reason = ?19 \
             WHERE handle = ?1 AND version = ?20",
        )
        .store()?
        .execute(&params[..])
        .store()?;
    if n == 0 {
        return Ok(false);
    }
    insert_events(c, events)?;
    Ok(true)
}

pub(crate) fn touch(
    c: &Connection,
    handle: &str,
    token_hash: &[u8; 32],
    last_seen_at: Timestamp,
    idle_expires_at: Timestamp,
) -> StoreResult<bool> {
    let n = c
        .prepare_cached(
            "UPDATE sessions SET last_seen_at = max(last_seen_at, ?3), \
                 idle_expires_at = max(idle_expires_at, ?4) \
             WHERE handle = ?1 AND token_hash = ?2 AND revoked_at IS NULL",
        )
        .store()?
        .execute(params![
            handle,
            token_hash,
            last_seen_at.unix_millis(),
            idle_expires_at.unix_millis()
        ])
        .store()?;
    Ok(n > 0)
}

pub(crate) fn revoke_subject(
    c: &Connection,
    subject: &str,
    except: Option<&str>,
    reason: RevokeReason,
    now: Timestamp,
) -> StoreResult<Vec<String>> {
    // `handle IS NOT NULL` (no exception) is true for every row.
    let mut handles = c
        .prepare_cached(
            "UPDATE sessions SET version = version + 1, revoked_at = ?2, revoke_reason = ?3 \
             WHERE subject = ?1 AND revoked_at IS NULL AND expires_at > ?2 AND handle IS NOT ?4 \
             RETURNING handle",
        )
        .store()?
        .query_map(
            params![subject, now.unix_millis(), reason.as_str(), except],
            |r| r.get::<_, String>(0),
        )
        .store()?
        .collect::<rusqlite::Result<Vec<String>>>()
        .store()?;
    // RETURNING order is unspecified; sort so the event log is reproducible.
    handles.sort_unstable();
    for h in &handles {
        insert_event(c, now, EventKind::Revoked, subject, h, Some(reason))?;
    }
    Ok(handles)
}

pub(crate) fn revoke_all_active(
    c: &Connection,
    reason: RevokeReason,
    now: Timestamp,
    batch: u32,
) -> StoreResult<u32> {
    let mut revoked = c
        .prepare_cached(
            "UPDATE sessions SET version = version + 1, revoked_at = ?1, revoke_reason = ?2 \
             WHERE handle IN (SELECT handle FROM sessions WHERE revoked_at IS NULL AND expires_at > ?1 \
                              ORDER BY handle LIMIT ?3) \
             RETURNING subject, handle",
        )
        .store()?
        .query_map(
            params![now.unix_millis(), reason.as_str(), i64::from(batch)],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )
        .store()?
        .collect::<rusqlite::Result<Vec<(String, String)>>>()
        .store()?;
    // RETURNING order is unspecified; sort so the event log is reproducible.
    revoked.sort_unstable_by(|a, b| a.1.cmp(&b.1));
    for (subject, handle) in &revoked {
        insert_event(c, now, EventKind::Revoked, subject, handle, Some(reason))?;
    }
    Ok(revoked.len() as u32)
}

pub(crate) fn sweep(c: &Connection, now: Timestamp, batch: u32) -> StoreResult<u32> {
    // Both statements pick the same rows: the same total order, in the same
    // transaction, and the first one does not touch `sessions`. Deleting a
    // session cascades to its refresh families (foreign key) in the same
    // statement, and each deleted family queues its token hashes for
    // `collect_refresh_tokens` (trigger, schema version 3).
    let now = now.unix_millis();
    let batch = i64::from(batch);
    c.prepare_cached(
        "INSERT INTO events (at, kind, subject, handle, reason) \
         SELECT ?1, ?3, subject, handle, NULL FROM \
             (SELECT subject, handle, revoked_at FROM sessions WHERE expires_at <= ?1 \
              ORDER BY expires_at, rowid LIMIT ?2) \
         WHERE revoked_at IS NULL",
    )
    .store()?
    .execute(params![now, batch, EventKind::Expired.as_str()])
    .store()?;
    // The sweep's `now` is when these sessions ended: it is no earlier than
    // their last event (the `expired` one above), which retention relies on
    // to forget the row (schema version 7). The delete trigger's own row,
    // dated by the expiry, is then ignored.
    c.prepare_cached(
        "INSERT OR REPLACE INTO ended_sessions (handle, subject, ended_at) \
         SELECT handle, subject, ?1 FROM sessions WHERE expires_at <= ?1 \
         ORDER BY expires_at, rowid LIMIT ?2",
    )
    .store()?
    .execute(params![now, batch])
    .store()?;
    let n = c
        .prepare_cached(
            "DELETE FROM sessions WHERE rowid IN \
             (SELECT rowid FROM sessions WHERE expires_at <= ?1 ORDER BY expires_at, rowid LIMIT ?2)",
        )
        .store()?
        .execute(params![now, batch])
        .store()?;
    u32::try_from(n).map_err(|_| StoreError::Unavailable(format!("sweep deleted {n} rows, more than asked")))
}

// ----------------------------------------------------------------- reads

fn one_session(c: &Connection, sql: &str, key: &dyn ToSql) -> StoreResult<Option<SessionRecord>> {
    let mut stmt = c.prepare_cached(sql).store()?;
    let mut rows = stmt.query([key]).store()?;
    match rows.next().store()? {
        Some(row) => decode_session(row, 0).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn get(c: &Connection, handle: &str) -> StoreResult<Option<SessionRecord>> {
    one_session(
        c,
        concat!("SELECT ", session_columns!(), " FROM sessions WHERE handle = ?1"),
        &handle,
    )
}

pub(crate) fn get_by_token(c: &Connection, hash: &[u8; 32]) -> StoreResult<Option<SessionRecord>> {
    one_session(
        c,
        concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE token_hash = ?1"
        ),
        hash,
    )
}

pub(crate) fn list_by_subject(c: &Connection, subject: &str) -> StoreResult<Vec<SessionRecord>> {
    let mut stmt = c
        .prepare_cached(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE subject = ?1"
        ))
        .store()?;
    let mut rows = stmt.query([subject]).store()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().store()? {
        out.push(decode_session(row, 0)?);
    }
    Ok(out)
}

pub(crate) fn count_active(c: &Connection, now: Timestamp) -> StoreResult<u64> {
    let n: i64 = c
        .prepare_cached("SELECT count(*) FROM sessions WHERE expires_at > ?1 AND revoked_at IS NULL")
        .store()?
        .query_row([now.unix_millis()], |r| r.get(0))
        .store()?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative session count {n}")))
}
