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

/// Events read per store call by the revocation feed, and the most
/// revocations one [`RevocationPage`] holds.
pub const REVOCATION_PAGE: u32 = 1000;
const _: () = assert!(REVOCATION_PAGE <= MAX_EVENTS_PAGE);

/// A revocation resource servers must still honour: the session (`sid`),
/// when it was revoked, and until when access tokens it issued could still
/// be presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRevocation {
    pub sid: String,
    pub revoked_at: Timestamp,
    pub until: Timestamp,
}

/// One answer of the revocation feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationPage {
    /// At most [`REVOCATION_PAGE`], in event order.
    pub revocations: Vec<LiveRevocation>,
    /// The last event id looked at: the cursor to continue from.
    pub next: u64,
    /// The log was read to its end (otherwise: ask again at once).
    pub complete: bool,
}

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

    /// Where the revocation feed's snapshot starts: the cursor before the
    /// first revocation whose window (`window_secs` after it, the access
    /// token TTL plus leeway) is still open at `now`. Found from an index,
    /// so neither older events nor the rest of the log are read.
    pub async fn revocation_snapshot_start(&self, now: Timestamp, window_secs: i64) -> StoreResult<u64> {
        self.cursor_since(EventKind::Revoked, now.plus_secs(-window_secs))
            .await
    }

    /// The revocations after event `after` whose window is still open at
    /// `now`. Stops after the first store page that held any, or after
    /// `max_pages` store pages, so one answer is bounded whatever the log
    /// holds; entries whose window has closed are skipped once (the cursor
    /// moves past them), not rescanned.
    pub async fn live_revocations(
        &self,
        after: u64,
        now: Timestamp,
        window_secs: i64,
        max_pages: usize,
    ) -> Result<RevocationPage> {
        let mut next = after;
        let mut revocations = Vec::new();
        let mut pages = 0usize;
        loop {
            let page = self
                .page(EventQuery {
                    kind: Some(EventKind::Revoked),
                    after: next,
                    limit: REVOCATION_PAGE,
                    ..EventQuery::default()
                })
                .await?;
            let full = page.len() >= REVOCATION_PAGE as usize;
            for e in page {
                next = next.max(e.id);
                let until = e.event.at.plus_secs(window_secs);
                if until > now {
                    revocations.push(LiveRevocation {
                        sid: e.event.handle,
                        revoked_at: e.event.at,
                        until,
                    });
                }
            }
            pages += 1;
            if !full {
                return Ok(RevocationPage {
                    revocations,
                    next,
                    complete: true,
                });
            }
            if pages >= max_pages || !revocations.is_empty() {
                return Ok(RevocationPage {
                    revocations,
                    next,
                    complete: false,
                });
            }
        }
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
mod tests;
