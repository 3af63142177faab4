//! [`RateLimitStore`]: the counters behind the abuse limits
//! ([`ratelimit`](crate::ratelimit)), shared by every process over one
//! store, so a limit holds for a deployment and not per node.

use async_trait::async_trait;

use super::StoreResult;
use crate::time::Timestamp;

/// The totals of one counter after an addition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowTotals {
    /// Hits in the window added to, this addition included.
    pub current: u64,
    /// Hits in the window before it (0 when none were counted).
    pub previous: u64,
}

/// Fixed-window hit counters. A counter is named by a 32-byte digest the
/// caller derives (of the limit's name and its subject: an address, an API
/// key id, a client id), so stored counters reveal nothing and have one
/// size; windows are numbered (a window's start divided by its length), so
/// every process agrees on them without talking.
#[async_trait]
pub trait RateLimitStore: Send + Sync + 'static {
    /// Adds `hits` to window `window` of counter `key` and returns its
    /// total with the total of window `window - 1`, in one atomic step: of
    /// concurrent additions each sees a total that includes its own. The
    /// window's count is kept at least until `expires_at` (the caller's
    /// clock, as every expiry in the store); older windows may be dropped.
    async fn add_hits(
        &self,
        key: &[u8; 32],
        window: u64,
        hits: u64,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<WindowTotals>;

    /// Deletes at most `batch` window counts expired at `now`; returns how
    /// many (the sweeper calls it until it returns less than `batch`).
    async fn sweep_counters(&self, now: Timestamp, batch: u32) -> StoreResult<u32>;
}
