//! [`SigningKeyStore`]: the access-token signing keys.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::SigningKeyRecord;
use crate::time::Timestamp;

/// Signing keys shared by every process over one store; private parts are
/// sealed before they get here.
#[async_trait]
pub trait SigningKeyStore: Send + Sync + 'static {
    /// Adds a signing key only if the newest stored key (by `activates_at`,
    /// then `kid`) is `if_newest` (`None`: only if there is no key at all).
    /// This is how several processes sharing a store agree on one rotation.
    /// Returns whether it was added.
    async fn insert_signing_key(&self, key: &SigningKeyRecord, if_newest: Option<&str>) -> StoreResult<bool>;

    /// Every stored signing key, oldest `activates_at` first.
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;

    /// Deletes a retired key; false if there was none.
    async fn delete_signing_key(&self, kid: &str) -> StoreResult<bool>;

    /// Emergency withdrawal: marks the key revoked at `now` and erases its
    /// sealed private part (it must never sign again, and a later copy of the
    /// store should not hold it), keeping the rest of the record so the
    /// operator can still see the key and when it was revoked. False if
    /// there is no such key or it was already revoked. Does not change the
    /// key order the [`insert_signing_key`](Self::insert_signing_key)
    /// compare-and-set uses.
    async fn revoke_signing_key(&self, kid: &str, now: Timestamp) -> StoreResult<bool>;
}
