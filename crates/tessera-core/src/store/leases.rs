//! [`LeaseStore`]: named leases with an expiry, the store's part of doing
//! a cluster-wide duty once (see [`DutyLease`](crate::lease::DutyLease)).

use std::time::Duration;

use async_trait::async_trait;

use super::StoreResult;
use crate::time::Timestamp;

/// Named leases: at most one holder each at any instant, until its expiry.
///
/// Every process sharing the store runs the same duties (signing-key
/// rotation, the sweep, event retention, the bootstrap API key); a lease
/// lets one of them do each while the others skip it. A holder that dies
/// without releasing stops holding when its lease expires, and the next
/// process to ask takes over.
///
/// A lease is held while `now < expires_at`, `now` being the caller's
/// clock (as every expiry in the store is); a store may also drop an
/// expired lease on its own clock (Redis's key TTL). Each method is one
/// atomic step.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes lease `name` for `holder` until `now + ttl` if nobody holds it
    /// at `now`, or renews it if `holder` already does. Returns whether
    /// `holder` holds it now.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<bool>;

    /// Moves the expiry of `holder`'s lease to `now + ttl`, only if
    /// `holder` still holds it at `now`; false if it expired or is
    /// another's (the duty may have run elsewhere meanwhile).
    async fn renew_lease(&self, name: &str, holder: &str, ttl: Duration, now: Timestamp)
    -> StoreResult<bool>;

    /// Ends `holder`'s lease at once so another process may take it;
    /// false if `holder` did not hold it.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool>;
}

/// `ttl` in whole milliseconds, at least 1 (a zero lease would never be
/// held).
pub fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}
