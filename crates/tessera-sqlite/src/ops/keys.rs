//! API keys and signing keys: inserting, revoking (and deleting) them, and
//! reading them back.

use rusqlite::{Connection, OptionalExtension, params};
use tessera_core::{ApiKeyRecord, ApiKeyScope, SigningKeyRecord, StoreError, StoreResult, Timestamp};

use crate::codec::{decode_api_key, decode_signing_key};
use crate::error::SqlResultExt;

// ---------------------------------------------------------------- writes

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

// ----------------------------------------------------------------- reads

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
