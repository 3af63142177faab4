//! Single-use markers (`tessera_core::ReplayStore`). Each runs on the
//! writer, inside its transaction, so the check and the write are one step.

use rusqlite::{Connection, params};
use tessera_core::{StoreResult, Timestamp};

use crate::error::SqlResultExt;

pub(crate) fn use_once(
    c: &Connection,
    marker: &[u8; 32],
    expires_at: Timestamp,
    now: Timestamp,
) -> StoreResult<bool> {
    // An expired row is taken over in place; an unexpired one leaves the
    // upsert's WHERE false, so nothing changes and the use is a replay.
    let n = c
        .prepare_cached(
            "INSERT INTO used_markers (marker, expires_at) VALUES (?1, ?2)
             ON CONFLICT (marker) DO UPDATE SET expires_at = excluded.expires_at
             WHERE used_markers.expires_at <= ?3",
        )
        .store()?
        .execute(params![
            marker.as_slice(),
            expires_at.unix_millis(),
            now.unix_millis()
        ])
        .store()?;
    Ok(n > 0)
}

pub(crate) fn sweep_markers(c: &Connection, now: Timestamp, batch: u32) -> StoreResult<u32> {
    let n = c
        .prepare_cached(
            "DELETE FROM used_markers WHERE marker IN
               (SELECT marker FROM used_markers WHERE expires_at <= ?1 LIMIT ?2)",
        )
        .store()?
        .execute(params![now.unix_millis(), batch])
        .store()?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}
