//! The event log as the faces see it: the audit log's pages, the cursor the
//! revocation feed starts from, and retention.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::{Event, EventKind};
use crate::sessions::{tokio_yield, validate_subject};
use crate::store::{EventQuery, EventStore, StoreResult};
use crate::time::Timestamp;

/// Largest page of [`EventLog::page`].
pub const MAX_EVENTS_PAGE: u32 = 1000;

/// Reads of the event log and its retention. The events themselves are
/// appended by the session and refresh writes they record, so this needs
/// only the [`EventStore`] capability.
#[derive(Clone)]
pub struct EventLog {
    store: Arc<dyn EventStore>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").finish_non_exhaustive()
    }
}

impl EventLog {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store }
    }

    /// A page of the audit log, in increasing id order; `limit` must be
    /// 1..=[`MAX_EVENTS_PAGE`].
    pub async fn page(&self, q: EventQuery) -> Result<Vec<Event>> {
        if let Some(s) = &q.subject {
            validate_subject(s)?;
        }
        if q.limit == 0 || q.limit > MAX_EVENTS_PAGE {
            return Err(Error::invalid(
                "limit",
                format!("must be between 1 and {MAX_EVENTS_PAGE}"),
            ));
        }
        Ok(self.store.events(&q).await?)
    }

    /// The cursor from which every event of `kind` at or after `since`
    /// follows (see [`EventStore::events_cursor_since`]).
    pub async fn cursor_since(&self, kind: EventKind, since: Timestamp) -> StoreResult<u64> {
        self.store.events_cursor_since(kind, since).await
    }

    /// Retention: deletes the events before `cutoff` in batches of `batch`
    /// (each its own store call, so requests interleave); returns how many
    /// went. The caller picks a `cutoff` that keeps every revocation whose
    /// access tokens may still be valid.
    pub async fn delete_before(&self, cutoff: Timestamp, batch: u32) -> StoreResult<u64> {
        let mut total = 0u64;
        loop {
            let n = self.store.delete_events_before(cutoff, batch).await?;
            total += u64::from(n);
            if n < batch {
                return Ok(total);
            }
            tokio_yield().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::policy::SessionPolicy;
    use crate::sessions::{CreateSession, Sessions};
    use crate::time::ManualClock;

    #[tokio::test]
    async fn events_page_limits_are_checked() {
        let store = Arc::new(MemoryStore::new());
        let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
        let s = Sessions::new(store.clone(), Arc::new(clock), SessionPolicy::default());
        let log = EventLog::new(store);
        s.create(CreateSession {
            subject: "u".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        for limit in [0, MAX_EVENTS_PAGE + 1] {
            let q = EventQuery {
                limit,
                ..Default::default()
            };
            assert!(matches!(log.page(q).await, Err(Error::Validation { .. })));
        }
        let q = EventQuery {
            limit: 10,
            ..Default::default()
        };
        let evs = log.page(q).await.unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].event.kind, EventKind::Created);
    }
}
