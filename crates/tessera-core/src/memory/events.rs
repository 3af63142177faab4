//! The memory store's event log.

use super::*;

#[async_trait]
impl EventStore for MemoryStore {
    async fn events(&self, q: &EventQuery) -> StoreResult<Vec<Event>> {
        let g = self.read();
        let start = g.events.partition_point(|e| e.id <= q.after);
        Ok(g.events[start..]
            .iter()
            .filter(|e| q.subject.as_deref().is_none_or(|s| e.event.subject == s))
            .filter(|e| q.handle.as_deref().is_none_or(|h| e.event.handle == h))
            .filter(|e| q.kind.is_none_or(|k| e.event.kind == k))
            .take(q.limit as usize)
            .cloned()
            .collect())
    }

    async fn events_cursor_since(&self, kind: EventKind, since: Timestamp) -> StoreResult<u64> {
        let g = self.read();
        let first = g
            .events
            .iter()
            .filter(|e| e.event.kind == kind && e.event.at >= since)
            .map(|e| e.id)
            .min();
        Ok(match first {
            Some(id) => id - 1,
            None => g.events.last().map_or(0, |e| e.id),
        })
    }

    async fn delete_events_before(&self, cutoff: Timestamp, batch: u32) -> StoreResult<u32> {
        let mut g = self.write();
        let n = g
            .events
            .iter()
            .take(batch as usize)
            .take_while(|e| e.event.at < cutoff)
            .count();
        g.events.drain(..n);
        Ok(n as u32)
    }

    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        let mut g = self.write();
        for e in events {
            g.push_event(e.clone());
        }
        Ok(())
    }
}
