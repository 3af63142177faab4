//! Sessions: creating (with replacement and the per-subject limit),
//! updating, touching, revoking and sweeping them, and reading them back.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tessera_core::{
    CreateOptions, CreateOutcome, EventKind, NewEvent, RevokeReason, SessionRecord, SessionStore, StoreError,
    StoreResult, Timestamp, TokenHash,
};
use tokio_postgres::types::ToSql;

use crate::codec::{SessionRow, col, decode_session, session_columns};
use crate::error::Fail;
use crate::events::{append, revoked};
use crate::{PostgresStore, count32, execute, query, query_opt, transaction, with_client};

const INSERT: &str = concat!(
    "INSERT INTO sessions (",
    session_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
);

/// Revokes one session at `$4` (bumping its version, as every revocation
/// does) if it is still at that version and not revoked.
const REVOKE_AT_VERSION: &str = "UPDATE sessions SET version = version + 1, revoked_at = $2, revoke_reason = $3 \
     WHERE handle = $1 AND revoked_at IS NULL AND version = $4 RETURNING subject";

const TOUCH: &str = "UPDATE sessions SET last_seen_at = GREATEST(last_seen_at, $3), \
         idle_expires_at = GREATEST(idle_expires_at, $4) \
     WHERE handle = $1 AND token_hash = $2 AND revoked_at IS NULL";

/// `touch`, in the caller's transaction or on its own.
pub(crate) async fn touch<C: GenericClient>(
    c: &C,
    handle: &str,
    token_hash: &[u8],
    last_seen_at: Timestamp,
    idle_expires_at: Timestamp,
) -> Result<bool, Fail> {
    let n = execute(
        c,
        TOUCH,
        &[
            &handle,
            &token_hash,
            &last_seen_at.unix_millis(),
            &idle_expires_at.unix_millis(),
        ],
    )
    .await?;
    Ok(n > 0)
}

fn records(rows: &[tokio_postgres::Row]) -> StoreResult<Vec<Arc<SessionRecord>>> {
    rows.iter().map(|r| decode_session(r, 0).map(Arc::new)).collect()
}

/// [`SessionStore::create`] inside the caller's transaction (alone, or
/// with the refresh family of a login that hands out tokens). A duplicate
/// is [`StoreError::Duplicate`], and the caller's rollback undoes the
/// replacement's revocation with it.
pub(crate) async fn create_in<C: GenericClient + Sync>(
    tx: &C,
    row: &SessionRow,
    opts: &CreateOptions,
    events: &[NewEvent],
) -> Result<CreateOutcome, Fail> {
    let now = opts.now;
    if opts.max_per_subject.is_some() {
        // Creates of one subject take turns, so each counts the
        // sessions the one before it committed: concurrent logins
        // cannot both see room under the limit. A hash collision
        // between subjects only makes them take turns too.
        execute(
            tx,
            "SELECT pg_advisory_xact_lock(hashtextextended('tessera-subject:' || $1, 0))",
            &[&row.subject],
        )
        .await?;
    }
    let mut log: Vec<NewEvent> = Vec::with_capacity(events.len() + 1);
    if let Some((handle, version)) = &opts.replace {
        // A version beyond i64 cannot be stored, so it cannot match.
        let hit = match i64::try_from(*version) {
            Ok(v) => {
                query_opt(
                    tx,
                    REVOKE_AT_VERSION,
                    &[handle, &now.unix_millis(), &RevokeReason::Replaced.as_str(), &v],
                )
                .await?
            }
            Err(_) => None,
        };
        match hit {
            Some(r) => {
                let subject: String = col(&r, 0, "subject")?;
                log.push(revoked(&subject, handle, RevokeReason::Replaced, now));
            }
            None => {
                // A duplicate is reported even when `replace` also
                // misses: it is the more serious of the two.
                let dup = query_opt(
                    tx,
                    "SELECT 1 FROM sessions WHERE handle = $1 OR token_hash = $2 LIMIT 1",
                    &[&row.handle, &row.token_hash],
                )
                .await?;
                return match dup {
                    Some(_) => Err(Fail::Store(StoreError::Duplicate)),
                    None => Ok(CreateOutcome::Conflict),
                };
            }
        }
    }
    // A duplicate handle or hash fails here and the rollback takes
    // the replacement's revocation with it.
    execute(tx, INSERT, &row.params()).await?;
    log.extend_from_slice(events);

    let mut evicted = Vec::new();
    if let Some(max) = opts.max_per_subject {
        // The new session counts toward the limit (if it is itself
        // active) but is never evicted: skipping the newest
        // `max - 1` others (or `max`, if it does not count) leaves
        // the ones to revoke.
        let at = now.unix_millis();
        let new_is_active = row.revoked_at.is_none() && row.idle_expires_at.min(row.absolute_expires_at) > at;
        let keep = (i64::from(max) - i64::from(new_is_active)).max(0);
        let victims = query(
            tx,
            "SELECT handle FROM sessions \
                 WHERE subject = $1 AND revoked_at IS NULL AND expires_at > $2 AND handle <> $4 \
                 ORDER BY created_at DESC, handle DESC OFFSET $3",
            &[&row.subject, &at, &keep, &row.handle],
        )
        .await?;
        // Oldest first, as the contract orders evictions.
        let victims: Vec<String> = victims
            .iter()
            .rev()
            .map(|r| col(r, 0, "handle"))
            .collect::<StoreResult<_>>()?;
        if !victims.is_empty() {
            let done = query(
                tx,
                "UPDATE sessions SET version = version + 1, revoked_at = $2, revoke_reason = $3 \
                     WHERE handle = ANY($1) AND revoked_at IS NULL RETURNING handle",
                &[&victims, &at, &RevokeReason::SessionLimit.as_str()],
            )
            .await?;
            let done: Vec<String> = done
                .iter()
                .map(|r| col(r, 0, "handle"))
                .collect::<StoreResult<_>>()?;
            for h in victims.into_iter().filter(|h| done.contains(h)) {
                log.push(revoked(&row.subject, &h, RevokeReason::SessionLimit, now));
                evicted.push(h);
            }
        }
    }
    append(tx, &log).await?;
    Ok(CreateOutcome::Created { evicted })
}

/// [`SessionStore::update`] inside the caller's transaction: whether it
/// swapped (if not, it wrote nothing).
pub(crate) async fn update_in<C: GenericClient + Sync>(
    tx: &C,
    row: &SessionRow,
    expected_version: u64,
    events: &[NewEvent],
) -> Result<bool, Fail> {
    // A version beyond i64 cannot be stored, so it cannot match.
    let Ok(expected) = i64::try_from(expected_version) else {
        return Ok(false);
    };
    let mut params: Vec<&(dyn ToSql + Sync)> = row.params().to_vec();
    params.push(&expected);
    // GREATEST: a touch that landed between the caller's read and this
    // write is kept, not rolled back.
    let n = execute(
        tx,
        "UPDATE sessions SET token_hash = $2, subject = $3, version = $4, created_at = $5, \
             last_seen_at = GREATEST(last_seen_at, $6), idle_timeout_ms = $7, \
             idle_expires_at = GREATEST(idle_expires_at, $8), absolute_expires_at = $9, \
             auth_level = $10, auth_methods = $11, auth_time = $12, device_user_agent = $13, \
             device_ip = $14, device_label = $15, binding = $16, data = $17, revoked_at = $18, \
             revoke_reason = $19 \
         WHERE handle = $1 AND version = $20",
        &params,
    )
    .await?;
    if n == 0 {
        return Ok(false);
    }
    append(tx, events).await?;
    Ok(true)
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
    ) -> StoreResult<CreateOutcome> {
        let row = SessionRow::encode(session)?;
        transaction!(self, |tx| { create_in(&tx, &row, opts, events).await? })
    }

    async fn get(&self, handle: &str) -> StoreResult<Option<Arc<SessionRecord>>> {
        with_client!(self, |c| {
            let row = query_opt(
                c,
                concat!("SELECT ", session_columns!(), " FROM sessions WHERE handle = $1"),
                &[&handle],
            )
            .await?;
            row.map(|r| decode_session(&r, 0).map(Arc::new)).transpose()?
        })
    }

    async fn get_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Arc<SessionRecord>>> {
        with_client!(self, |c| {
            let row = query_opt(
                c,
                concat!(
                    "SELECT ",
                    session_columns!(),
                    " FROM sessions WHERE token_hash = $1"
                ),
                &[&hash.as_bytes().as_slice()],
            )
            .await?;
            row.map(|r| decode_session(&r, 0).map(Arc::new)).transpose()?
        })
    }

    async fn touch(
        &self,
        handle: &str,
        token_hash: &TokenHash,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> StoreResult<bool> {
        with_client!(self, |c| {
            touch(c, handle, token_hash.as_bytes(), last_seen_at, idle_expires_at).await?
        })
    }

    async fn update(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let row = SessionRow::encode(session)?;
        transaction!(self, |tx| {
            update_in(&tx, &row, expected_version, events).await?
        })
    }

    async fn list_by_subject(&self, subject: &str) -> StoreResult<Vec<Arc<SessionRecord>>> {
        with_client!(self, |c| {
            let rows = query(
                c,
                concat!("SELECT ", session_columns!(), " FROM sessions WHERE subject = $1"),
                &[&subject],
            )
            .await?;
            records(&rows)?
        })
    }

    async fn revoke_subject(
        &self,
        subject: &str,
        except: Option<&str>,
        reason: RevokeReason,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        transaction!(self, |tx| {
            let rows = query(
                &tx,
                "UPDATE sessions SET version = version + 1, revoked_at = $2, revoke_reason = $3 \
                 WHERE subject = $1 AND revoked_at IS NULL AND expires_at > $2 \
                     AND handle IS DISTINCT FROM $4 \
                 RETURNING handle",
                &[&subject, &now.unix_millis(), &reason.as_str(), &except],
            )
            .await?;
            let mut handles: Vec<String> = rows
                .iter()
                .map(|r| col(r, 0, "handle"))
                .collect::<StoreResult<_>>()?;
            // RETURNING order is unspecified; sort so the log is reproducible.
            handles.sort_unstable();
            let log: Vec<NewEvent> = handles.iter().map(|h| revoked(subject, h, reason, now)).collect();
            append(&tx, &log).await?;
            handles
        })
    }

    async fn revoke_all_active(&self, reason: RevokeReason, now: Timestamp, batch: u32) -> StoreResult<u32> {
        transaction!(self, |tx| {
            let rows = query(
                &tx,
                "UPDATE sessions SET version = version + 1, revoked_at = $1, revoke_reason = $2 \
                 WHERE handle IN (SELECT handle FROM sessions WHERE revoked_at IS NULL AND expires_at > $1 \
                                  ORDER BY handle LIMIT $3) \
                     AND revoked_at IS NULL AND expires_at > $1 \
                 RETURNING subject, handle",
                &[&now.unix_millis(), &reason.as_str(), &i64::from(batch)],
            )
            .await?;
            let mut done: Vec<(String, String)> = rows
                .iter()
                .map(|r| Ok((col(r, 0, "subject")?, col(r, 1, "handle")?)))
                .collect::<StoreResult<_>>()?;
            done.sort_unstable_by(|a, b| a.1.cmp(&b.1));
            let log: Vec<NewEvent> = done.iter().map(|(s, h)| revoked(s, h, reason, now)).collect();
            append(&tx, &log).await?;
            count32(done.len() as u64)
        })
    }

    async fn sweep(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        transaction!(self, |tx| {
            // Deleting a session cascades to its refresh families and their
            // token hashes in the same statement.
            let rows = query(
                &tx,
                "DELETE FROM sessions WHERE handle IN \
                     (SELECT handle FROM sessions WHERE expires_at <= $1 \
                      ORDER BY expires_at, handle LIMIT $2) \
                     AND expires_at <= $1 \
                 RETURNING subject, handle, revoked_at IS NULL",
                &[&now.unix_millis(), &i64::from(batch)],
            )
            .await?;
            let mut expired = Vec::new();
            for r in &rows {
                if col::<bool>(r, 2, "revoked")? {
                    expired.push(NewEvent {
                        at: now,
                        kind: EventKind::Expired,
                        subject: col(r, 0, "subject")?,
                        handle: col(r, 1, "handle")?,
                        reason: None,
                    });
                }
            }
            expired.sort_unstable_by(|a, b| a.handle.cmp(&b.handle));
            append(&tx, &expired).await?;
            count32(rows.len() as u64)
        })
    }

    async fn count_active(&self, now: Timestamp) -> StoreResult<u64> {
        let n: i64 = with_client!(self, |c| {
            let row = crate::query_one(
                c,
                "SELECT count(*) FROM sessions WHERE expires_at > $1 AND revoked_at IS NULL",
                &[&now.unix_millis()],
            )
            .await?;
            col::<i64>(&row, 0, "count")?
        })?;
        u64::try_from(n).map_err(|_| crate::codec::corrupt("session count", n))
    }
}
