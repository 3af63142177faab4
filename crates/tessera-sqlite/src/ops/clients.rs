//! OAuth clients registered at run time: the registration is kept as the
//! core wrote it (JSON text), so a new client setting needs no migration.

use rusqlite::{Connection, OptionalExtension, Row, params};
use tessera_core::{ClientRecord, StoreResult, Timestamp};

use crate::error::SqlResultExt;

pub(crate) fn insert_client(c: &Connection, client: &ClientRecord) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO clients (client_id, created_at, revoked_at, registration) VALUES (?1, ?2, ?3, ?4)",
    )
    .store()?
    .execute(params![
        client.client_id,
        client.created_at.unix_millis(),
        client.revoked_at.map(Timestamp::unix_millis),
        client.registration,
    ])
    .store()?;
    Ok(())
}

pub(crate) fn revoke_client(c: &Connection, client_id: &str, now: Timestamp) -> StoreResult<bool> {
    let n = c
        .prepare_cached("UPDATE clients SET revoked_at = ?2 WHERE client_id = ?1 AND revoked_at IS NULL")
        .store()?
        .execute(params![client_id, now.unix_millis()])
        .store()?;
    Ok(n > 0)
}

fn decode(row: &Row<'_>) -> rusqlite::Result<ClientRecord> {
    Ok(ClientRecord {
        client_id: row.get(0)?,
        created_at: Timestamp::from_unix_millis(row.get(1)?),
        revoked_at: row.get::<_, Option<i64>>(2)?.map(Timestamp::from_unix_millis),
        registration: row.get(3)?,
    })
}

pub(crate) fn client_by_id(c: &Connection, client_id: &str) -> StoreResult<Option<ClientRecord>> {
    c.prepare_cached(
        "SELECT client_id, created_at, revoked_at, registration FROM clients WHERE client_id = ?1",
    )
    .store()?
    .query_row([client_id], decode)
    .optional()
    .store()
}

pub(crate) fn list_clients(c: &Connection) -> StoreResult<Vec<ClientRecord>> {
    c.prepare_cached(
        "SELECT client_id, created_at, revoked_at, registration FROM clients ORDER BY created_at, client_id",
    )
    .store()?
    .query_map([], decode)
    .store()?
    .collect::<rusqlite::Result<Vec<_>>>()
    .store()
}
