//! [`ClientStore`]: OAuth clients registered at run time.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::ClientRecord;
use crate::time::Timestamp;

/// OAuth clients registered at run time (`tessera clients create`), beside
/// the configuration's `[[clients]]`. Stores keep each record's
/// `registration` byte for byte and never interpret it, so a new client
/// setting needs no store change.
#[async_trait]
pub trait ClientStore: Send + Sync + 'static {
    /// Stores a new client
    /// ([`StoreError::Duplicate`](super::StoreError::Duplicate) if the id
    /// exists; nothing is written then).
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()>;
    /// The client with this id, revoked or not.
    async fn client_by_id(&self, client_id: &str) -> StoreResult<Option<ClientRecord>>;
    /// Every stored client, revoked included, oldest first (`created_at`,
    /// then `client_id`).
    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>>;
    /// Marks the client revoked at `now`; false if unknown or already
    /// revoked.
    async fn revoke_client(&self, client_id: &str, now: Timestamp) -> StoreResult<bool>;
}
