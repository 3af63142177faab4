//! The memory store's single-use markers.

use super::*;
use crate::store::ReplayStore;

#[async_trait]
impl ReplayStore for MemoryStore {
    async fn use_once(&self, marker: &[u8; 32], expires_at: Timestamp, now: Timestamp) -> StoreResult<bool> {
        let mut g = self.write();
        if g.markers.get(marker).is_some_and(|until| now < *until) {
            return Ok(false);
        }
        g.markers.insert(*marker, expires_at);
        Ok(true)
    }

    async fn sweep_markers(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        let mut g = self.write();
        let dead: Vec<[u8; 32]> = g
            .markers
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(m, _)| *m)
            .take(batch as usize)
            .collect();
        for m in &dead {
            g.markers.remove(m);
        }
        Ok(u32::try_from(dead.len()).unwrap_or(u32::MAX))
    }
}
