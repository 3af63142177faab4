//! The SQL of every store operation, as plain functions on a connection.
//!
//! Write functions run on the writer thread inside the caller's own
//! savepoint (see `writer`), so each may issue several statements and still
//! be one atomic step: any error undoes all of them. Read functions are
//! single statements, so each sees one consistent snapshot.
//!
//! Each child holds the operations on one kind of record, writes first:
//! `sessions`, `refresh` (families and their tokens), `events` (the audit
//! log), `keys` (API and signing keys) and `leases`.

use rusqlite::Connection;
use tessera_core::StoreResult;

use crate::error::SqlResultExt;

mod clients;
mod events;
mod keys;
mod leases;
mod refresh;
mod replay;
mod sessions;

pub(crate) use clients::{client_by_id, insert_client, list_clients, revoke_client};
pub(crate) use events::{append_events, delete_events_before, events, events_cursor_since};
pub(crate) use keys::{
    api_key_by_hash, delete_signing_key, insert_api_key, insert_signing_key, list_api_keys, revoke_api_key,
    revoke_signing_key, signing_keys,
};
pub(crate) use leases::{acquire_lease, release_lease, renew_lease};
#[cfg(test)]
pub(crate) use refresh::SEALED_BEFORE;
pub(crate) use refresh::{
    Rotate, clear_sealed_successors, collect_refresh_tokens, create_refresh_family, find_refresh,
    find_refresh_with_session, refresh_families_of, revoke_refresh_family, rotate_refresh,
};
pub(crate) use replay::{add_hits, sweep_counters, sweep_markers, use_once};
pub(crate) use sessions::{
    Create, count_active, create, get, get_by_token, list_by_subject, revoke_all_active, revoke_subject,
    sweep, touch, update,
};

pub(crate) fn ping(c: &Connection) -> StoreResult<()> {
    // Reads the schema page, so a missing or unreadable file shows up here
    // rather than on the first real request.
    c.prepare_cached("SELECT count(*) FROM sqlite_schema")
        .store()?
        .query_row([], |r| r.get::<_, i64>(0))
        .store()?;
    Ok(())
}

#[cfg(test)]
mod tests;
