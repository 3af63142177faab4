//! Refresh families and their tokens: creating, rotating (the
//! compare-and-swap), revoking and collecting them, and the lookups by token
//! hash and by session.

use rusqlite::{Connection, OptionalExtension, params};
use tessera_core::{NewEvent, RefreshFamily, RevokeReason, StoreError, StoreResult, Timestamp};

use crate::codec::{
    FamilyRow, LookupWithSession, decode_family, decode_lookup, decode_lookup_with_session, family_columns,
    session_columns,
};
use crate::error::SqlResultExt;

use super::events::insert_events;
use super::sessions::touch;

// ---------------------------------------------------------------- writes

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
    /// The binding (JSON) to give the family if it has none.
    pub bind: Option<String>,
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
                 current_hash = ?6, binding = COALESCE(binding, ?7) \
             WHERE id = ?1 AND generation = ?2 AND revoked_at IS NULL",
        )
        .store()?
        .execute(params![
            job.family_id,
            expected,
            next,
            job.now.unix_millis(),
            job.successor_sealed,
            job.successor,
            job.bind
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

// ----------------------------------------------------------------- reads

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
pub(super) const FIND_REFRESH_WITH_SESSION: &str = concat!(
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
