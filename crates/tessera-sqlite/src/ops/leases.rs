//! Leases (`tessera_core::LeaseStore`): one row per duty name. Each runs
//! on the writer, inside its transaction, so a check and its write are
//! one step.

use rusqlite::{Connection, params};
use tessera_core::{StoreResult, Timestamp};

use crate::error::SqlResultExt;

pub(crate) fn acquire_lease(
    c: &Connection,
    name: &str,
    holder: &str,
    ttl_ms: i64,
    now: Timestamp,
) -> StoreResult<bool> {
    let now = now.unix_millis();
    let n = c
        .prepare_cached(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3 + ?4)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at <= ?3",
        )
        .store()?
        .execute(params![name, holder, now, ttl_ms])
        .store()?;
    Ok(n > 0)
}

pub(crate) fn renew_lease(
    c: &Connection,
    name: &str,
    holder: &str,
    ttl_ms: i64,
    now: Timestamp,
) -> StoreResult<bool> {
    let now = now.unix_millis();
    let n = c
        .prepare_cached(
            "UPDATE leases SET expires_at = ?3 + ?4 WHERE name = ?1 AND holder = ?2 AND expires_at > ?3",
        )
        .store()?
        .execute(params![name, holder, now, ttl_ms])
        .store()?;
    Ok(n > 0)
}

pub(crate) fn release_lease(c: &Connection, name: &str, holder: &str) -> StoreResult<bool> {
    let n = c
        .prepare_cached("DELETE FROM leases WHERE name = ?1 AND holder = ?2")
        .store()?
        .execute(params![name, holder])
        .store()?;
    Ok(n > 0)
}
