//! [`SigningKeyStore`], [`ApiKeyStore`] and [`ClientStore`] on Redis.

use super::*;

#[async_trait]
impl SigningKeyStore for RedisStore {
    async fn insert_signing_key(&self, key: &SigningKeyRecord, if_newest: Option<&str>) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.key_insert).await?;
        inv.arg(key.kid.as_bytes())
            .arg(codec::encode_signing_key(key)?)
            .arg(&key.private_sealed[..])
            .arg(millis(key.activates_at))
            .arg(if if_newest.is_some() { "1" } else { "0" })
            .arg(if_newest.unwrap_or_default().as_bytes())
            .arg(key.revoked_at.map(|t| millis(t).to_string()).unwrap_or_default());
        match int(self.run(&inv).await?, "insert_signing_key")? {
            1 => Ok(true),
            0 => Ok(false),
            -1 => Err(StoreError::Duplicate),
            n => Err(corrupt("insert_signing_key", format!("unexpected answer {n}"))),
        }
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let inv = self.script(&SCRIPTS.keys_all).await?;
        pairs(self.run(&inv).await?, "signing_keys")?
            .into_iter()
            .map(|(kid, fields)| {
                codec::decode_signing_key(
                    text(kid, "signing key")?,
                    &value::field_pairs(fields, "signing key")?,
                )
            })
            .collect()
    }

    async fn delete_signing_key(&self, kid: &str) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.key_delete).await?;
        inv.arg(kid.as_bytes());
        Ok(int(self.run(&inv).await?, "delete_signing_key")? == 1)
    }

    async fn revoke_signing_key(&self, kid: &str, now: Timestamp) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.key_revoke).await?;
        inv.arg(kid.as_bytes()).arg(millis(now));
        Ok(int(self.run(&inv).await?, "revoke_signing_key")? == 1)
    }
}

#[async_trait]
impl ApiKeyStore for RedisStore {
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        let mut inv = self.script(&SCRIPTS.api_insert).await?;
        inv.arg(key.id.as_bytes())
            .arg(&key.hash.0[..])
            .arg(codec::encode_api_key(key)?)
            .arg(millis(key.created_at))
            .arg(key.revoked_at.map(|t| millis(t).to_string()).unwrap_or_default());
        match int(self.run(&inv).await?, "insert_api_key")? {
            1 => Ok(()),
            -1 => Err(StoreError::Duplicate),
            n => Err(corrupt("insert_api_key", format!("unexpected answer {n}"))),
        }
    }

    async fn api_key_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<ApiKeyRecord>> {
        let mut inv = self.script(&SCRIPTS.api_by_hash).await?;
        inv.arg(&hash.0[..]);
        let v = self.run(&inv).await?;
        if matches!(v, Value::Nil) {
            return Ok(None);
        }
        let mut it = array(v, "api_key_by_hash")?.into_iter();
        let id = text(it.next().unwrap_or(Value::Nil), "API key")?;
        let fields = value::field_pairs(it.next().unwrap_or(Value::Nil), "API key")?;
        codec::decode_api_key(id, &fields).map(Some)
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let inv = self.script(&SCRIPTS.api_all).await?;
        pairs(self.run(&inv).await?, "list_api_keys")?
            .into_iter()
            .map(|(id, fields)| {
                codec::decode_api_key(text(id, "API key")?, &value::field_pairs(fields, "API key")?)
            })
            .collect()
    }

    async fn revoke_api_key(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.api_revoke).await?;
        inv.arg(id.as_bytes()).arg(millis(now));
        Ok(int(self.run(&inv).await?, "revoke_api_key")? == 1)
    }
}

#[async_trait]
impl ClientStore for RedisStore {
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()> {
        let mut inv = self.script(&SCRIPTS.client_insert).await?;
        inv.arg(client.client_id.as_bytes())
            .arg(millis(client.created_at))
            .arg(
                client
                    .revoked_at
                    .map(|t| millis(t).to_string())
                    .unwrap_or_default(),
            )
            .arg(client.registration.as_bytes());
        match int(self.run(&inv).await?, "insert_client")? {
            1 => Ok(()),
            -1 => Err(StoreError::Duplicate),
            n => Err(corrupt("insert_client", format!("unexpected answer {n}"))),
        }
    }

    async fn client_by_id(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        let mut inv = self.script(&SCRIPTS.client_get).await?;
        inv.arg(client_id.as_bytes());
        Ok(clients(self.run(&inv).await?)?.pop())
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        let inv = self.script(&SCRIPTS.client_get).await?;
        clients(self.run(&inv).await?)
    }

    async fn revoke_client(&self, client_id: &str, now: Timestamp) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.client_revoke).await?;
        inv.arg(client_id.as_bytes()).arg(millis(now));
        Ok(int(self.run(&inv).await?, "revoke_client")? == 1)
    }
}

/// `client_get.lua`'s answer: id, [created at, revoked at or nil,
/// registration] per client.
fn clients(v: Value) -> StoreResult<Vec<ClientRecord>> {
    const WHAT: &str = "client";
    pairs(v, WHAT)?
        .into_iter()
        .map(|(id, fields)| {
            let mut f = array(fields, WHAT)?.into_iter();
            let mut next = || f.next().unwrap_or(Value::Nil);
            let created_at = Timestamp::from_unix_millis(int(next(), WHAT)?);
            let revoked_at = match next() {
                Value::Nil => None,
                v => Some(Timestamp::from_unix_millis(int(v, WHAT)?)),
            };
            Ok(ClientRecord {
                client_id: text(id, WHAT)?,
                created_at,
                revoked_at,
                registration: text(next(), WHAT)?,
            })
        })
        .collect()
}
