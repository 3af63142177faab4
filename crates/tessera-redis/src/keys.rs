//! [`SigningKeyStore`] and [`ApiKeyStore`] on Redis.

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
