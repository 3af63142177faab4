//! The memory store's signing keys and API keys.

use super::*;

#[async_trait]
impl SigningKeyStore for MemoryStore {
    async fn insert_signing_key(&self, key: &SigningKeyRecord, if_newest: Option<&str>) -> StoreResult<bool> {
        let mut g = self.write();
        if g.signing_keys.iter().any(|k| k.kid == key.kid) {
            return Err(StoreError::Duplicate);
        }
        let newest = g
            .signing_keys
            .iter()
            .max_by(|a, b| (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid)))
            .map(|k| k.kid.as_str());
        if newest != if_newest {
            return Ok(false);
        }
        g.signing_keys.push(key.clone());
        g.signing_keys
            .sort_by(|a, b| (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid)));
        Ok(true)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        Ok(self.read().signing_keys.clone())
    }

    async fn delete_signing_key(&self, kid: &str) -> StoreResult<bool> {
        let mut g = self.write();
        let before = g.signing_keys.len();
        g.signing_keys.retain(|k| k.kid != kid);
        Ok(g.signing_keys.len() != before)
    }

    async fn revoke_signing_key(&self, kid: &str, now: Timestamp) -> StoreResult<bool> {
        let mut g = self.write();
        match g
            .signing_keys
            .iter_mut()
            .find(|k| k.kid == kid && k.revoked_at.is_none())
        {
            Some(k) => {
                k.revoked_at = Some(now);
                k.private_sealed = Vec::new();
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[async_trait]
impl ApiKeyStore for MemoryStore {
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        let mut g = self.write();
        if g.api_keys.iter().any(|k| k.id == key.id || k.hash == key.hash) {
            return Err(StoreError::Duplicate);
        }
        g.api_keys.push(key.clone());
        Ok(())
    }

    async fn api_key_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<ApiKeyRecord>> {
        Ok(self.read().api_keys.iter().find(|k| k.hash == *hash).cloned())
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        // "Oldest first" is by creation time, not by insertion order: a key
        // imported with an earlier `created_at` sorts before newer ones.
        let mut keys = self.read().api_keys.clone();
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(keys)
    }

    async fn revoke_api_key(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        let mut g = self.write();
        match g.api_keys.iter_mut().find(|k| k.id == id) {
            Some(k) if k.revoked_at.is_none() => {
                k.revoked_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl ClientStore for MemoryStore {
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()> {
        let mut g = self.write();
        if g.clients.iter().any(|c| c.client_id == client.client_id) {
            return Err(StoreError::Duplicate);
        }
        g.clients.push(client.clone());
        Ok(())
    }

    async fn client_by_id(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        Ok(self
            .read()
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
            .cloned())
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        let mut clients = self.read().clients.clone();
        clients.sort_by(|a, b| (a.created_at, &a.client_id).cmp(&(b.created_at, &b.client_id)));
        Ok(clients)
    }

    async fn revoke_client(&self, client_id: &str, now: Timestamp) -> StoreResult<bool> {
        let mut g = self.write();
        match g.clients.iter_mut().find(|c| c.client_id == client_id) {
            Some(c) if c.revoked_at.is_none() => {
                c.revoked_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
