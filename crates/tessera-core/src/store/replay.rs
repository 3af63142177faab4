//! [`ReplayStore`]: single-use markers shared by every process over one
//! store — a DPoP proof's `jti`, and later DBSC challenges and client
//! assertions — so a value accepted by one node is refused by all of them.

use async_trait::async_trait;

use super::StoreResult;
use crate::time::Timestamp;

/// Single-use markers with an expiry. A marker is a 32-byte digest the
/// caller derives (a hash of what makes a use unique, e.g. the key
/// thumbprint and `jti` of a proof), so stored markers reveal nothing and
/// have one size whatever the client sent.
///
/// A marker counts as recorded while `now < expires_at`, `now` being the
/// caller's clock (as every expiry in the store is); a store may also drop
/// an expired marker on its own clock (Redis's key TTL). Each method is one
/// atomic step.
#[async_trait]
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `marker` until `expires_at` unless it is recorded already
    /// (and unexpired at `now`). Returns true for the first use, false for
    /// a replay; of concurrent calls with one marker exactly one gets true.
    async fn use_once(&self, marker: &[u8; 32], expires_at: Timestamp, now: Timestamp) -> StoreResult<bool>;

    /// Deletes at most `batch` markers expired at `now`; returns how many
    /// (the sweeper calls it until it returns less than `batch`).
    async fn sweep_markers(&self, now: Timestamp, batch: u32) -> StoreResult<u32>;
}
