//! The memory store's rate-limit counters.

use super::*;
use crate::store::{RateLimitStore, WindowTotals};

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn add_hits(
        &self,
        key: &[u8; 32],
        window: u64,
        hits: u64,
        expires_at: Timestamp,
        _now: Timestamp,
    ) -> StoreResult<WindowTotals> {
        let mut g = self.write();
        let entry = g.counters.entry((*key, window)).or_insert((0, expires_at));
        entry.0 = entry.0.saturating_add(hits);
        entry.1 = entry.1.max(expires_at);
        let current = entry.0;
        let previous = match window.checked_sub(1) {
            Some(w) => g.counters.get(&(*key, w)).map_or(0, |c| c.0),
            None => 0,
        };
        Ok(WindowTotals { current, previous })
    }

    async fn sweep_counters(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        let mut g = self.write();
        let dead: Vec<([u8; 32], u64)> = g
            .counters
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(k, _)| *k)
            .take(batch as usize)
            .collect();
        for k in &dead {
            g.counters.remove(k);
        }
        Ok(u32::try_from(dead.len()).unwrap_or(u32::MAX))
    }
}
