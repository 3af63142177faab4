//! API keys, signing keys and OAuth clients registered at run time.

use async_trait::async_trait;
use tessera_core::{
    ApiKeyRecord, ApiKeyScope, ApiKeyStore, ClientRecord, ClientStore, SigningKeyRecord, SigningKeyStore,
    StoreError, StoreResult, Timestamp, TokenHash,
};

use crate::codec::{API_KEY_COLUMNS, SIGNING_KEY_COLUMNS, col, decode_api_key, decode_signing_key};
use crate::error::Fail;
use crate::{PostgresStore, execute, query, query_opt, transaction, with_client};

#[async_trait]
impl ApiKeyStore for PostgresStore {
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        let scopes = ApiKeyScope::join(&key.scopes);
        with_client!(self, |c| {
            execute(
                c,
                "INSERT INTO api_keys (id, name, hash, created_at, revoked_at, scopes) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &key.id,
                    &key.name,
                    &key.hash.as_bytes().as_slice(),
                    &key.created_at.unix_millis(),
                    &key.revoked_at.map(Timestamp::unix_millis),
                    &scopes,
                ],
            )
            .await?;
        })
    }

    async fn api_key_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<ApiKeyRecord>> {
        with_client!(self, |c| {
            let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE hash = $1");
            query_opt(c, &sql, &[&hash.as_bytes().as_slice()])
                .await?
                .as_ref()
                .map(decode_api_key)
                .transpose()?
        })
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        with_client!(self, |c| {
            let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id");
            query(c, &sql, &[])
                .await?
                .iter()
                .map(decode_api_key)
                .collect::<StoreResult<Vec<_>>>()?
        })
    }

    async fn revoke_api_key(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        with_client!(self, |c| {
            execute(
                c,
                "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &now.unix_millis()],
            )
            .await?
                > 0
        })
    }
}

#[async_trait]
impl SigningKeyStore for PostgresStore {
    async fn insert_signing_key(&self, key: &SigningKeyRecord, if_newest: Option<&str>) -> StoreResult<bool> {
        transaction!(self, |tx| {
            // Inserts take turns (readers do not wait), so nothing can be
            // inserted between the check of the newest key and this insert.
            tx.batch_execute("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
                .await?;
            // A duplicate kid is reported even when the newest does not
            // match, as the reference store does.
            if query_opt(&tx, "SELECT 1 FROM signing_keys WHERE kid = $1", &[&key.kid])
                .await?
                .is_some()
            {
                return Err(Fail::Store(StoreError::Duplicate));
            }
            let newest = query_opt(
                &tx,
                "SELECT kid FROM signing_keys ORDER BY activates_at DESC, kid DESC LIMIT 1",
                &[],
            )
            .await?;
            let newest: Option<String> = newest.map(|r| col(&r, 0, "kid")).transpose()?;
            if newest.as_deref() != if_newest {
                return Ok(false);
            }
            execute(
                &tx,
                "INSERT INTO signing_keys (kid, alg, created_at, activates_at, private_sealed, public_jwk, \
                     revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &key.kid,
                    &key.alg.as_str(),
                    &key.created_at.unix_millis(),
                    &key.activates_at.unix_millis(),
                    &key.private_sealed,
                    &key.public_jwk,
                    &key.revoked_at.map(Timestamp::unix_millis),
                ],
            )
            .await?;
            true
        })
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        with_client!(self, |c| {
            let sql = format!("SELECT {SIGNING_KEY_COLUMNS} FROM signing_keys ORDER BY activates_at, kid");
            query(c, &sql, &[])
                .await?
                .iter()
                .map(decode_signing_key)
                .collect::<StoreResult<Vec<_>>>()?
        })
    }

    async fn delete_signing_key(&self, kid: &str) -> StoreResult<bool> {
        with_client!(self, |c| {
            execute(c, "DELETE FROM signing_keys WHERE kid = $1", &[&kid]).await? > 0
        })
    }

    async fn revoke_signing_key(&self, kid: &str, now: Timestamp) -> StoreResult<bool> {
        with_client!(self, |c| {
            execute(
                c,
                "UPDATE signing_keys SET revoked_at = $2, private_sealed = '\\x'::bytea \
                 WHERE kid = $1 AND revoked_at IS NULL",
                &[&kid, &now.unix_millis()],
            )
            .await?
                > 0
        })
    }
}

const CLIENT_COLUMNS: &str = "client_id, created_at, revoked_at, registration";

fn decode_client(row: &tokio_postgres::Row) -> StoreResult<ClientRecord> {
    let revoked_at: Option<i64> = col(row, 2, "client revoked_at")?;
    Ok(ClientRecord {
        client_id: col(row, 0, "client_id")?,
        created_at: Timestamp::from_unix_millis(col(row, 1, "client created_at")?),
        revoked_at: revoked_at.map(Timestamp::from_unix_millis),
        registration: col(row, 3, "registration")?,
    })
}

#[async_trait]
impl ClientStore for PostgresStore {
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()> {
        with_client!(self, |c| {
            execute(
                c,
                "INSERT INTO clients (client_id, created_at, revoked_at, registration) VALUES ($1, $2, $3, $4)",
                &[
                    &client.client_id,
                    &client.created_at.unix_millis(),
                    &client.revoked_at.map(Timestamp::unix_millis),
                    &client.registration,
                ],
            )
            .await?;
        })
    }

    async fn client_by_id(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        with_client!(self, |c| {
            let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1");
            query_opt(c, &sql, &[&client_id])
                .await?
                .as_ref()
                .map(decode_client)
                .transpose()?
        })
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        with_client!(self, |c| {
            let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY created_at, client_id");
            query(c, &sql, &[])
                .await?
                .iter()
                .map(decode_client)
                .collect::<StoreResult<Vec<_>>>()?
        })
    }

    async fn revoke_client(&self, client_id: &str, now: Timestamp) -> StoreResult<bool> {
        with_client!(self, |c| {
            execute(
                c,
                "UPDATE clients SET revoked_at = $2 WHERE client_id = $1 AND revoked_at IS NULL",
                &[&client_id, &now.unix_millis()],
            )
            .await?
                > 0
        })
    }
}
