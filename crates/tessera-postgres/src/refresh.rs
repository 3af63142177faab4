//! Refresh families and their tokens: creating, rotating (the
//! compare-and-swap), revoking, and the lookups by token hash and session.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tessera_core::{
    CreateOptions, CreateOutcome, NewEvent, RefreshFamily, RefreshLookup, RefreshStore, RevokeReason,
    Rotation, SessionRecord, StoreError, StoreResult, Timestamp, TokenHash,
};
use tokio_postgres::error::SqlState;

use crate::codec::{
    FAMILY_COLUMNS, FamilyRow, SessionRow, col, decode_family, decode_session, family_columns,
    session_columns, to_i64,
};
use crate::error::Fail;
use crate::events::append;
use crate::sessions::{create_in, touch, update_in};
use crate::{PostgresStore, count32, execute, query, query_opt, transaction, with_client};

fn lookup(row: &tokio_postgres::Row) -> StoreResult<RefreshLookup> {
    let generation: i64 = col(row, 0, "generation")?;
    Ok(RefreshLookup {
        generation: u64::try_from(generation).map_err(|_| crate::codec::corrupt("generation", generation))?,
        family: Arc::new(decode_family(row, 1)?),
    })
}

/// Stores a family and its first token inside the caller's transaction.
async fn insert_family<C: GenericClient + Sync>(tx: &C, row: &FamilyRow, first: &[u8]) -> Result<(), Fail> {
    let inserted = execute(
        tx,
        concat!(
            "INSERT INTO refresh_families (",
            family_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ),
        &row.params(),
    )
    .await;
    if let Err(Fail::Pg(e)) = &inserted
        && e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
    {
        // The session is gone (the sweeper may just have deleted it).
        return Err(Fail::Store(StoreError::Unavailable(format!(
            "refresh family for session {}, which is not stored",
            row.handle
        ))));
    }
    inserted?;
    execute(
        tx,
        "INSERT INTO refresh_tokens (hash, family_id, generation) VALUES ($1, $2, $3)",
        &[&first, &row.id, &row.generation],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl RefreshStore for PostgresStore {
    async fn create_refresh_family(
        &self,
        family: &RefreshFamily,
        first: &TokenHash,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        let row = FamilyRow::encode(family)?;
        let first = first.as_bytes().as_slice();
        transaction!(self, |tx| {
            insert_family(&tx, &row, first).await?;
            append(&tx, events).await?;
        })
    }

    async fn create_with_refresh_family(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> StoreResult<CreateOutcome> {
        let session = SessionRow::encode(session)?;
        let row = FamilyRow::encode(family)?;
        let first = first.as_bytes().as_slice();
        transaction!(self, |tx| {
            let out = create_in(&tx, &session, opts, events).await?;
            if matches!(out, CreateOutcome::Created { .. }) {
                // A duplicate fails here and the rollback takes the
                // session with it.
                insert_family(&tx, &row, first).await?;
            }
            out
        })
    }

    async fn update_with_refresh_family(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> StoreResult<bool> {
        let session = SessionRow::encode(session)?;
        let row = FamilyRow::encode(family)?;
        let first = first.as_bytes().as_slice();
        transaction!(self, |tx| {
            let swapped = update_in(&tx, &session, expected_version, events).await?;
            if swapped {
                insert_family(&tx, &row, first).await?;
            }
            swapped
        })
    }

    async fn find_refresh(&self, hash: &TokenHash) -> StoreResult<Option<RefreshLookup>> {
        let hash = hash.as_bytes().as_slice();
        with_client!(self, |c| {
            // One statement: the token and its family from one snapshot.
            let row = query_opt(
                c,
                concat!(
                    "SELECT t.generation, ",
                    family_columns!("f."),
                    " FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.hash = $1"
                ),
                &[&hash],
            )
            .await?;
            row.as_ref().map(lookup).transpose()?
        })
    }

    async fn find_refresh_with_session(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshLookup, Option<Arc<SessionRecord>>)>> {
        let hash = hash.as_bytes().as_slice();
        with_client!(self, |c| {
            // The token, its family and (outer-joined) the family's session:
            // one statement, one snapshot, one round trip.
            let row = query_opt(
                c,
                concat!(
                    "SELECT t.generation, ",
                    family_columns!("f."),
                    ", ",
                    session_columns!("s."),
                    " FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
                     LEFT JOIN sessions s ON s.handle = f.handle WHERE t.hash = $1"
                ),
                &[&hash],
            )
            .await?;
            match row {
                None => None,
                Some(r) => {
                    let found = lookup(&r)?;
                    // `handle` is NOT NULL in `sessions`: NULL means the join
                    // found no row.
                    let at = 1 + FAMILY_COLUMNS;
                    let session = match col::<Option<&str>>(&r, at, "session handle")? {
                        None => None,
                        Some(_) => Some(Arc::new(decode_session(&r, at)?)),
                    };
                    Some((found, session))
                }
            }
        })
    }

    async fn rotate_refresh(&self, rotation: &Rotation<'_>, events: &[NewEvent]) -> StoreResult<bool> {
        // A generation beyond i64 cannot be stored, so it cannot match.
        let Ok(expected) = i64::try_from(rotation.expected_generation) else {
            return Ok(false);
        };
        let next = to_i64(
            "refresh generation",
            rotation.expected_generation.saturating_add(1),
        )?;
        let bind = rotation
            .bind
            .map(|b| {
                serde_json::to_string(b)
                    .map_err(|e| StoreError::Unavailable(format!("cannot encode binding: {e}")))
            })
            .transpose()?;
        let successor = rotation.successor.as_bytes().as_slice();
        transaction!(self, |tx| {
            // The compare-and-swap: of concurrent rotations from one
            // generation, the first takes the row lock and the others,
            // waiting for it, re-check the condition on the committed row
            // and match nothing.
            let n = execute(
                &tx,
                "UPDATE refresh_families SET generation = $3, rotated_at = $4, current_sealed = $5, \
                     binding = COALESCE(binding, $6) \
                 WHERE id = $1 AND generation = $2 AND revoked_at IS NULL",
                &[
                    &rotation.family_id,
                    &expected,
                    &next,
                    &rotation.now.unix_millis(),
                    &rotation.successor_sealed,
                    &bind,
                ],
            )
            .await?;
            if n == 0 {
                return Ok(false);
            }
            // A duplicate successor fails here; the rollback undoes the swap.
            execute(
                &tx,
                "INSERT INTO refresh_tokens (hash, family_id, generation) VALUES ($1, $2, $3)",
                &[&successor, &rotation.family_id, &next],
            )
            .await?;
            if let Some(t) = &rotation.touch {
                touch(
                    &tx,
                    t.handle,
                    t.token_hash.as_bytes(),
                    t.last_seen_at,
                    t.idle_expires_at,
                )
                .await?;
            }
            append(&tx, events).await?;
            true
        })
    }

    async fn clear_sealed_successors(&self, rotated_before: Timestamp, batch: u32) -> StoreResult<u32> {
        let n = with_client!(self, |c| {
            execute(
                c,
                "UPDATE refresh_families SET current_sealed = NULL WHERE id IN \
                     (SELECT id FROM refresh_families WHERE current_sealed IS NOT NULL AND rotated_at < $1 \
                      ORDER BY rotated_at LIMIT $2) \
                 AND current_sealed IS NOT NULL",
                &[&rotated_before.unix_millis(), &i64::from(batch)],
            )
            .await?
        })?;
        Ok(count32(n))
    }

    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        reason: RevokeReason,
        now: Timestamp,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        transaction!(self, |tx| {
            let n = execute(
                &tx,
                "UPDATE refresh_families SET revoked_at = $2, revoke_reason = $3, current_sealed = NULL \
                 WHERE id = $1 AND revoked_at IS NULL",
                &[&family_id, &now.unix_millis(), &reason.as_str()],
            )
            .await?;
            if n == 0 {
                return Ok(false);
            }
            append(&tx, events).await?;
            true
        })
    }

    async fn refresh_families_of(&self, handle: &str) -> StoreResult<Vec<Arc<RefreshFamily>>> {
        with_client!(self, |c| {
            query(
                c,
                concat!(
                    "SELECT ",
                    family_columns!(),
                    " FROM refresh_families WHERE handle = $1 ORDER BY created_at, id"
                ),
                &[&handle],
            )
            .await?
            .iter()
            .map(|r| decode_family(r, 0).map(Arc::new))
            .collect::<StoreResult<Vec<_>>>()?
        })
    }
}
