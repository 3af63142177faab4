//! Single-use markers (`tessera_core::ReplayStore`). Each runs on the
//! writer, inside its transaction, so the check and the write are one step.

use rusqlite::{Connection, params};
use tessera_core::store::WindowTotals;
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

/// `RateLimitStore::add_hits`: the upsert and the read of the previous
/// window in the writer's one transaction.
pub(crate) fn add_hits(
    c: &Connection,
    key: &[u8; 32],
    window: u64,
    hits: u64,
    expires_at: Timestamp,
) -> StoreResult<WindowTotals> {
    // SQLite integers are signed; no window index or count comes near 2^63.
    let w = i64::try_from(window).unwrap_or(i64::MAX);
    let hits = i64::try_from(hits).unwrap_or(i64::MAX);
    let current: i64 = c
        .prepare_cached(
            "INSERT INTO rate_counters (key, window, hits, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key, window) DO UPDATE
               SET hits = rate_counters.hits + excluded.hits,
                   expires_at = max(rate_counters.expires_at, excluded.expires_at)
             RETURNING hits",
        )
        .store()?
        .query_row(params![key.as_slice(), w, hits, expires_at.unix_millis()], |r| {
            r.get(0)
        })
        .store()?;
    let previous: i64 = c
        .prepare_cached("SELECT coalesce(max(hits), 0) FROM rate_counters WHERE key = ?1 AND window = ?2")
        .store()?
        .query_row(params![key.as_slice(), w.saturating_sub(1)], |r| r.get(0))
        .store()?;
    Ok(WindowTotals {
        current: u64::try_from(current).unwrap_or(0),
        previous: u64::try_from(previous).unwrap_or(0),
    })
}

pub(crate) fn sweep_counters(c: &Connection, now: Timestamp, batch: u32) -> StoreResult<u32> {
    let n = c
        .prepare_cached(
            "DELETE FROM rate_counters WHERE (key, window) IN
               (SELECT key, window FROM rate_counters WHERE expires_at <= ?1 LIMIT ?2)",
        )
        .store()?
        .execute(params![now.unix_millis(), batch])
        .store()?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}
