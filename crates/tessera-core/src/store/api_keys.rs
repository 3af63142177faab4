//! [`ApiKeyStore`]: the service's backend API keys.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::ApiKeyRecord;
use crate::secret::TokenHash;
use crate::time::Timestamp;

/// Backend API keys, kept as hashes.
#[async_trait]
pub trait ApiKeyStore: Send + Sync + 'static {
    /// Stores a new API key
    /// ([`StoreError::Duplicate`](super::StoreError::Duplicate) if the id or
    /// hash exists).
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;

    async fn api_key_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<ApiKeyRecord>>;

    /// All API keys, revoked included, oldest first.
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;

    /// Marks the key revoked; false if no such key or already revoked.
    async fn revoke_api_key(&self, id: &str, now: Timestamp) -> StoreResult<bool>;
}
