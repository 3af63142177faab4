//! The SQL of every store operation, as plain functions on a connection.
//!
//! Write functions run on the writer thread inside the caller's own
//! savepoint (see `writer`), so each may issue several statements and still
//! be one atomic step: any error undoes all of them. Read functions are
//! single statements, so each sees one consistent snapshot.

use rusqlite::{Connection, OptionalExtension, ToSql, params};
use tessera_core::{
    ApiKeyRecord, ApiKeyScope, CreateOutcome, Event, EventKind, EventQuery, NewEvent, RefreshFamily,
    RevokeReason, SessionRecord, SigningKeyRecord, StoreError, StoreResult, Timestamp,
};

use crate::codec::{
    FamilyRow, LookupWithSession, SessionRow, decode_api_key, decode_event, decode_family, decode_lookup,
    decode_lookup_with_session, decode_session, decode_signing_key, family_columns, session_columns,
};
use crate::error::SqlResultExt;

// ---------------------------------------------------------------- writes

fn insert_event(
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

fn insert_events(c: &Connection, events: &[NewEvent]) -> StoreResult<()> {
    for e in events {
        insert_event(c, e.at, e.kind, &e.subject, &e.handle, e.reason)?;
    }
    Ok(())
}

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

/// Deletes the token hashes of deleted refresh families, walking each
/// queued chain from its newest hash back through `previous`, for at most
/// `budget` steps (one hash each); returns the steps taken, so fewer than
/// `budget` means the queue is empty. A chain cut short keeps its place in
/// the queue, and the next call resumes where this one stopped.
pub(crate) fn collect_refresh_tokens(c: &Connection, budget: u32) -> StoreResult<u32> {
    let mut steps = 0u32;
    let mut next_head = c
        .prepare_cached("SELECT head FROM refresh_tokens_gc LIMIT 1")
        .store()?;
    let mut unlink = c
        .prepare_cached("DELETE FROM refresh_tokens WHERE hash = ?1 RETURNING previous")
        .store()?;
    while steps < budget {
        let Some(head) = next_head
            .query_row([], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .store()?
        else {
            break;
        };
        let mut at = Some(head.clone());
        while steps < budget
            && let Some(hash) = at.take()
        {
            // No row: the chain ends (or was never stored, as for a family
            // migrated without its newest hash).
            at = unlink
                .query_row([&hash], |r| r.get::<_, Option<Vec<u8>>>(0))
                .optional()
                .store()?
                .flatten();
            steps += 1;
        }
        match at {
            None => c
                .prepare_cached("DELETE FROM refresh_tokens_gc WHERE head = ?1")
                .store()?
                .execute([&head])
                .store()?,
            Some(rest) => c
                .prepare_cached("UPDATE OR REPLACE refresh_tokens_gc SET head = ?2 WHERE head = ?1")
                .store()?
                .execute([&head, &rest])
                .store()?,
        };
    }
    Ok(steps)
}

pub(crate) fn insert_api_key(c: &Connection, key: &ApiKeyRecord) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO api_keys (id, name, hash, created_at, revoked_at, scopes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .store()?
    .execute(params![
        key.id,
        key.name,
        key.hash.as_bytes(),
        key.created_at.unix_millis(),
        key.revoked_at.map(Timestamp::unix_millis),
        ApiKeyScope::join(&key.scopes)
    ])
    .store()?;
    Ok(())
}

pub(crate) fn revoke_api_key(c: &Connection, id: &str, now: Timestamp) -> StoreResult<bool> {
    let n = c
        .prepare_cached("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")
        .store()?
        .execute(params![id, now.unix_millis()])
        .store()?;
    Ok(n > 0)
}

pub(crate) fn create_refresh_family(
    c: &Connection,
    row: &FamilyRow,
    first: &[u8; 32],
    events: &[NewEvent],
) -> StoreResult<()> {
    let mut params = row.params().to_vec();
    params.push(first);
    c.prepare_cached(concat!(
        "INSERT INTO refresh_families (",
        family_columns!(),
        ", current_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))
    .store()?
    .execute(&params[..])
    .map_err(|e| no_session(e, &row.handle))?;
    // A duplicate hash fails here; the savepoint rollback takes the family
    // row with it.
    c.prepare_cached(
        "INSERT INTO refresh_tokens (hash, family_id, generation, previous) VALUES (?1, ?2, ?3, NULL)",
    )
    .store()?
    .execute(params![first, row.id, row.generation])
    .store()?;
    insert_events(c, events)
}

/// A family whose session does not exist (any more: the sweeper may have
/// just deleted it) violates the foreign key; say so instead of passing on
/// SQLite's bare "FOREIGN KEY constraint failed".
fn no_session(e: rusqlite::Error, handle: &str) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            StoreError::Unavailable(format!(
                "refresh family for session {handle}, which is not stored"
            ))
        }
        _ => crate::error::map(e),
    }
}

pub(crate) struct Rotate {
    pub family_id: String,
    pub expected_generation: u64,
    pub successor: [u8; 32],
    pub successor_sealed: Option<Vec<u8>>,
    pub now: Timestamp,
    /// The session's slide: (handle, token hash, last seen, idle expiry).
    pub touch: Option<(String, [u8; 32], Timestamp, Timestamp)>,
    pub events: Vec<NewEvent>,
}

pub(crate) fn rotate_refresh(c: &Connection, job: &Rotate) -> StoreResult<bool> {
    // A generation beyond i64 cannot be stored, so it cannot match.
    let Ok(expected) = i64::try_from(job.expected_generation) else {
        return Ok(false);
    };
    let Some(next) = expected.checked_add(1) else {
        return Err(StoreError::Unavailable(format!(
            "refresh generation {expected} cannot be incremented"
        )));
    };
    // The compare-and-swap: only one rotation from a generation matches. The
    // successor's hash goes in first, linked to the hash it replaces (the
    // family's current one), from the same family row the swap then
    // updates. A duplicate successor fails here, before anything is written.
    let n = c
        .prepare_cached(
            "INSERT INTO refresh_tokens (hash, family_id, generation, previous) \
             SELECT ?1, id, ?3, current_hash FROM refresh_families \
             WHERE id = ?2 AND generation = ?4 AND revoked_at IS NULL",
        )
        .store()?
        .execute(params![job.successor, job.family_id, next, expected])
        .store()?;
    if n == 0 {
        return Ok(false);
    }
    let n = c
        .prepare_cached(
            "UPDATE refresh_families SET generation = ?3, rotated_at = ?4, current_sealed = ?5, \
                 current_hash = ?6 \
             WHERE id = ?1 AND generation = ?2 AND revoked_at IS NULL",
        )
        .store()?
        .execute(params![
            job.family_id,
            expected,
            next,
            job.now.unix_millis(),
            job.successor_sealed,
            job.successor
        ])
        .store()?;
    if n != 1 {
        // Cannot happen inside one transaction; failing the job rolls the
        // insert above back rather than leave a token outside its family.
        return Err(StoreError::Unavailable(format!(
            "refresh family {} changed during its rotation",
            job.family_id
        )));
    }
    if let Some((handle, token_hash, last_seen_at, idle_expires_at)) = &job.touch {
        touch(c, handle, token_hash, *last_seen_at, *idle_expires_at)?;
    }
    insert_events(c, &job.events)?;
    Ok(true)
}

/// Families that still hold a sealed successor, oldest rotation first: the
/// `refresh_families_sealed` partial index answers it without a scan.
pub(crate) const SEALED_BEFORE: &str = "SELECT id FROM refresh_families \
     WHERE current_sealed IS NOT NULL AND rotated_at < ?1 ORDER BY rotated_at LIMIT ?2";

pub(crate) fn clear_sealed_successors(
    c: &Connection,
    rotated_before: Timestamp,
    batch: u32,
) -> StoreResult<u32> {
    let n = c
        .prepare_cached(&format!(
            "UPDATE refresh_families SET current_sealed = NULL WHERE id IN ({SEALED_BEFORE})"
        ))
        .store()?
        .execute(params![rotated_before.unix_millis(), i64::from(batch)])
        .store()?;
    u32::try_from(n)
        .map_err(|_| StoreError::Unavailable(format!("cleared {n} sealed successors, more than asked")))
}

pub(crate) fn revoke_refresh_family(
    c: &Connection,
    family_id: &str,
    reason: RevokeReason,
    now: Timestamp,
    events: &[NewEvent],
) -> StoreResult<bool> {
    let n = c
        .prepare_cached(
            "UPDATE refresh_families SET revoked_at = ?2, revoke_reason = ?3, current_sealed = NULL \
             WHERE id = ?1 AND revoked_at IS NULL",
        )
        .store()?
        .execute(params![family_id, now.unix_millis(), reason.as_str()])
        .store()?;
    if n == 0 {
        return Ok(false);
    }
    insert_events(c, events)?;
    Ok(true)
}

pub(crate) fn insert_signing_key(
    c: &Connection,
    key: &SigningKeyRecord,
    if_newest: Option<&str>,
) -> StoreResult<bool> {
    // A duplicate kid is reported even when the newest does not match, as
    // the reference store does.
    let exists: bool = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM signing_keys WHERE kid = ?1)")
        .store()?
        .query_row([&key.kid], |r| r.get(0))
        .store()?;
    if exists {
        return Err(StoreError::Duplicate);
    }
    // The writer is the only connection that writes, and this runs inside
    // its transaction: nothing can insert between this check and the insert.
    let newest: Option<String> = c
        .prepare_cached("SELECT kid FROM signing_keys ORDER BY activates_at DESC, kid DESC LIMIT 1")
        .store()?
        .query_row([], |r| r.get(0))
        .optional()
        .store()?;
    if newest.as_deref() != if_newest {
        return Ok(false);
    }
    c.prepare_cached(
        "INSERT INTO signing_keys (kid, alg, created_at, activates_at, private_sealed, public_jwk, revoked_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .store()?
    .execute(params![
        key.kid,
        key.alg.as_str(),
        key.created_at.unix_millis(),
        key.activates_at.unix_millis(),
        key.private_sealed,
        key.public_jwk,
        key.revoked_at.map(Timestamp::unix_millis)
    ])
    .store()?;
    Ok(true)
}

pub(crate) fn delete_signing_key(c: &Connection, kid: &str) -> StoreResult<bool> {
    let n = c
        .prepare_cached("DELETE FROM signing_keys WHERE kid = ?1")
        .store()?
        .execute([kid])
        .store()?;
    Ok(n > 0)
}

pub(crate) fn revoke_signing_key(c: &Connection, kid: &str, now: Timestamp) -> StoreResult<bool> {
    let n = c
        .prepare_cached(
            "UPDATE signing_keys SET revoked_at = ?2, private_sealed = x'' \
             WHERE kid = ?1 AND revoked_at IS NULL",
        )
        .store()?
        .execute(params![kid, now.unix_millis()])
        .store()?;
    Ok(n > 0)
}

const OLDEST_EVENTS: &str = "SELECT id, at FROM events ORDER BY id LIMIT ?1";

/// Retention: the oldest events up to the first that is not before
/// `cutoff`, at most `batch` of them. Reads at most `batch` rows (in rowid
/// order, from the table's first page), so a log with nothing to delete
/// costs one short read, never a scan.
pub(crate) fn delete_events_before(c: &Connection, cutoff: Timestamp, batch: u32) -> StoreResult<u32> {
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
fn events_statement<'a>(
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
const REVOKED_CURSOR_SINCE: &str = "SELECT coalesce(\
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

pub(crate) fn count_active(c: &Connection, now: Timestamp) -> StoreResult<u64> {
    let n: i64 = c
        .prepare_cached("SELECT count(*) FROM sessions WHERE expires_at > ?1 AND revoked_at IS NULL")
        .store()?
        .query_row([now.unix_millis()], |r| r.get(0))
        .store()?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative session count {n}")))
}

pub(crate) fn ping(c: &Connection) -> StoreResult<()> {
    // Reads the schema page, so a missing or unreadable file shows up here
    // rather than on the first real request.
    c.prepare_cached("SELECT count(*) FROM sqlite_schema")
        .store()?
        .query_row([], |r| r.get::<_, i64>(0))
        .store()?;
    Ok(())
}

pub(crate) fn api_key_by_hash(c: &Connection, hash: &[u8; 32]) -> StoreResult<Option<ApiKeyRecord>> {
    let mut stmt = c
        .prepare_cached("SELECT id, name, hash, created_at, revoked_at, scopes FROM api_keys WHERE hash = ?1")
        .store()?;
    let mut rows = stmt.query([hash]).store()?;
    match rows.next().store()? {
        Some(row) => decode_api_key(row).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn list_api_keys(c: &Connection) -> StoreResult<Vec<ApiKeyRecord>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT id, name, hash, created_at, revoked_at, scopes FROM api_keys ORDER BY created_at, id",
        )
        .store()?;
    let mut rows = stmt.query([]).store()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().store()? {
        out.push(decode_api_key(row)?);
    }
    Ok(out)
}

pub(crate) fn find_refresh(c: &Connection, hash: &[u8; 32]) -> StoreResult<Option<(u64, RefreshFamily)>> {
    // One statement: the token and its family come from the same snapshot.
    let mut stmt = c
        .prepare_cached(concat!(
            "SELECT t.generation, ",
            family_columns!("f."),
            " FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.hash = ?1"
        ))
        .store()?;
    let mut rows = stmt.query([hash]).store()?;
    match rows.next().store()? {
        Some(row) => decode_lookup(row).map(Some),
        None => Ok(None),
    }
}

/// [`find_refresh`] and, outer-joined, the family's session (as `get` reads
/// it): three primary-key searches in one statement.
const FIND_REFRESH_WITH_SESSION: &str = concat!(
    "SELECT t.generation, ",
    family_columns!("f."),
    ", ",
    session_columns!("s."),
    " FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
     LEFT JOIN sessions s ON s.handle = f.handle WHERE t.hash = ?1"
);

/// [`find_refresh`] and the family's session (`get`) in one statement, so
/// one read transaction: the same snapshot, and half the cost of two reads.
/// The session is read straight from the table, never from the session
/// cache of `readers` (keyed by token hash).
pub(crate) fn find_refresh_with_session(
    c: &Connection,
    hash: &[u8; 32],
) -> StoreResult<Option<LookupWithSession>> {
    let mut stmt = c.prepare_cached(FIND_REFRESH_WITH_SESSION).store()?;
    let mut rows = stmt.query([hash]).store()?;
    match rows.next().store()? {
        Some(row) => decode_lookup_with_session(row).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn refresh_families_of(c: &Connection, handle: &str) -> StoreResult<Vec<RefreshFamily>> {
    let mut stmt = c
        .prepare_cached(concat!(
            "SELECT ",
            family_columns!(),
            " FROM refresh_families WHERE handle = ?1 ORDER BY created_at, id"
        ))
        .store()?;
    let mut rows = stmt.query([handle]).store()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().store()? {
        out.push(decode_family(row, 0)?);
    }
    Ok(out)
}

pub(crate) fn signing_keys(c: &Connection) -> StoreResult<Vec<SigningKeyRecord>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT kid, alg, created_at, activates_at, private_sealed, public_jwk, revoked_at FROM signing_keys \
             ORDER BY activates_at, kid",
        )
        .store()?;
    let mut rows = stmt.query([]).store()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().store()? {
        out.push(decode_signing_key(row)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::Map;
    use tessera_core::{AuthInfo, DeviceInfo, TokenHash};

    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&c).unwrap();
        c
    }

    fn session(now: Timestamp) -> SessionRecord {
        SessionRecord {
            handle: "ses_0000000000000000000001".into(),
            token_hash: TokenHash([7; 32]),
            subject: "alice".into(),
            version: 3,
            created_at: now,
            last_seen_at: now.plus_secs(1),
            idle_timeout_ms: 60_000,
            idle_expires_at: now.plus_secs(61),
            absolute_expires_at: now.plus_secs(3600),
            auth: AuthInfo {
                level: 2,
                methods: vec!["pwd".into(), "otp".into()],
                time: now,
            },
            device: DeviceInfo {
                user_agent: Some("ua".into()),
                ip: None,
                label: "Unknown device".into(),
            },
            data: Map::new(),
            binding: None,
            revoked: None,
        }
    }

    fn family(s: &SessionRecord) -> RefreshFamily {
        RefreshFamily {
            id: "rtf_1".into(),
            handle: s.handle.clone(),
            session_token_hash: s.token_hash,
            client_id: "app".into(),
            scope: vec!["read".into()],
            audience: vec!["tessera".into()],
            generation: 0,
            // Columns the session also has, set apart from its values, so a
            // join that read the wrong table's column would show.
            created_at: s.created_at.plus_secs(5),
            rotated_at: s.created_at.plus_secs(5),
            current_sealed: None,
            binding: None,
            revoked: Some(tessera_core::Revocation {
                at: s.created_at.plus_secs(6),
                reason: RevokeReason::Revoked,
            }),
        }
    }

    /// The joined read decodes the family and the session from their own
    /// columns, and a family whose session row is missing (impossible
    /// through the store, whose foreign key cascades) gives `None`.
    #[test]
    fn find_refresh_with_session_decodes_both_and_a_missing_session() {
        let c = db();
        let now = Timestamp::from_unix_secs(1_000_000);
        let s = session(now);
        let f = family(&s);
        let job = Create {
            row: SessionRow::encode(&s).unwrap(),
            replace: None,
            max_per_subject: None,
            now,
            events: Vec::new(),
        };
        create(&c, &job).unwrap();
        create_refresh_family(&c, &FamilyRow::encode(&f).unwrap(), &[1; 32], &[]).unwrap();

        assert_eq!(
            find_refresh_with_session(&c, &[1; 32]).unwrap(),
            Some((0, f.clone(), Some(s.clone())))
        );
        assert_eq!(find_refresh_with_session(&c, &[2; 32]).unwrap(), None);

        c.pragma_update(None, "foreign_keys", "OFF").unwrap();
        c.execute("DELETE FROM sessions WHERE handle = ?1", [&s.handle])
            .unwrap();
        assert_eq!(find_refresh(&c, &[1; 32]).unwrap(), Some((0, f.clone())));
        assert_eq!(
            find_refresh_with_session(&c, &[1; 32]).unwrap(),
            Some((0, f, None))
        );
    }

    fn plan(c: &Connection, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(params, |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The revocation feed reads through the partial indexes of schema
    /// version 4: the follow-up from `events_revoked_id` (not the whole
    /// table from the cursor), the snapshot's start from `events_revoked_at`
    /// (not the oldest revocations first), and retention reads the table's
    /// first rows and deletes a rowid range.
    #[test]
    fn feed_and_retention_queries_use_their_indexes() {
        let c = db();
        // What `events` runs for the feed's follow-up (kind = revoked only).
        let q = EventQuery {
            kind: Some(EventKind::Revoked),
            limit: 10,
            ..EventQuery::default()
        };
        let (follow, _) = events_statement(&q, &0, &10, Some(&"revoked"));
        let p = plan(&c, &follow, [0i64, 10]);
        assert_eq!(
            p,
            vec!["SEARCH events USING INDEX events_revoked_id (id>?)".to_owned()],
            "{p:?}"
        );
        events(&c, &q).unwrap();
        let p = plan(&c, REVOKED_CURSOR_SINCE, [0i64]);
        assert!(
            p.iter()
                .any(|l| l.contains("USING INDEX events_revoked_at (at>?)")
                    || l.contains("USING COVERING INDEX events_revoked_at (at>?)")),
            "{p:?}"
        );
        assert!(
            !p.iter()
                .any(|l| l.contains("events_revoked_id") || l.starts_with("SCAN events")),
            "{p:?}"
        );
        assert_eq!(plan(&c, OLDEST_EVENTS, [10i64]), vec!["SCAN events".to_owned()]);
        assert_eq!(
            plan(&c, "DELETE FROM events WHERE id <= ?1", [10i64]),
            vec!["SEARCH events USING INTEGER PRIMARY KEY (rowid<?)".to_owned()]
        );
    }

    /// A version-3 database gains the feed's indexes over its existing
    /// revocations, and its signing keys read as not revoked.
    #[test]
    fn a_version_3_database_gains_the_feed_indexes_and_key_revocation() {
        let c = Connection::open_in_memory().unwrap();
        for m in &crate::schema::MIGRATIONS[..3] {
            c.execute_batch(m).unwrap();
        }
        c.pragma_update(None, "user_version", 3).unwrap();
        c.execute_batch(
            "INSERT INTO events (at, kind, subject, handle, reason) VALUES \
                 (1000, 'revoked', 'a', 'ses_a', 'logout'), (2000, 'created', 'b', 'ses_b', NULL), \
                 (3000, 'revoked', 'b', 'ses_b', 'logout'); \
             INSERT INTO signing_keys (kid, alg, created_at, activates_at, private_sealed, public_jwk) \
                 VALUES ('k1', 'EdDSA', 1, 1, x'01', '{}');",
        )
        .unwrap();
        crate::schema::migrate(&c).unwrap();
        assert_eq!(
            events_cursor_since(&c, EventKind::Revoked, Timestamp::from_unix_millis(1500)).unwrap(),
            2
        );
        let keys = signing_keys(&c).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].revoked_at, None);
        assert!(revoke_signing_key(&c, "k1", Timestamp::from_unix_millis(9)).unwrap());
        let keys = signing_keys(&c).unwrap();
        assert_eq!(keys[0].revoked_at, Some(Timestamp::from_unix_millis(9)));
        assert!(keys[0].private_sealed.is_empty());
    }

    /// Three primary-key searches, no scan.
    #[test]
    fn find_refresh_with_session_searches_by_keys_only() {
        let c = db();
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {FIND_REFRESH_WITH_SESSION}"))
            .unwrap()
            .query_map([[0u8; 32]], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(plan.len(), 3, "{plan:?}");
        assert!(plan.iter().all(|p| p.starts_with("SEARCH ")), "{plan:?}");
    }
}
