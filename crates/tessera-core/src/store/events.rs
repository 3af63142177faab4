//! [`EventStore`]: reading the event log, and its retention.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{Event, EventKind, NewEvent};
use crate::time::Timestamp;

/// A page request for the event log.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub subject: Option<String>,
    pub handle: Option<String>,
    pub kind: Option<EventKind>,
    /// Only events with `id > after`.
    pub after: u64,
    pub limit: u32,
}

/// The append-only event log. Events are appended by the writes they
/// record ([`SessionStore`](super::SessionStore),
/// [`RefreshStore`](super::RefreshStore)), in the same atomic step; this
/// trait reads them and deletes old ones.
///
/// Event ids start at 1 and strictly increase; `after` is unsigned, so a
/// store with signed ids must treat values above `i64::MAX` as "nothing
/// after". `limit` applies after the filters.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Events matching `query`, in increasing `id` order.
    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<Event>>;

    /// A cursor (an [`EventQuery::after`]) from which every event of `kind`
    /// with `at >= since` follows: one less than the smallest id among them,
    /// or, when there is none, the newest event id of any kind (0 for an
    /// empty log). Reading `events` of `kind` from it yields the events of a
    /// recent time window without walking the older ones (a few older ones
    /// may come first where the appending processes' clocks disagreed).
    ///
    /// This is how the revocation feed's snapshot finds the revocations whose
    /// access tokens may still be valid; a store should answer it for
    /// [`EventKind::Revoked`] from an index, without reading the log.
    async fn events_cursor_since(&self, kind: EventKind, since: Timestamp) -> StoreResult<u64>;

    /// Retention: deletes up to `batch` of the oldest events (in `id`
    /// order), stopping at the first whose `at` is not before `cutoff`, and
    /// returns how many; callers repeat while it returns `batch`. Only a
    /// prefix of the log is ever deleted, so a follower's cursor never skips
    /// a newer event, and ids are never reused afterwards (`id` stays a
    /// strictly increasing public cursor even when every event was deleted).
    /// Callers choose `cutoff` so that no `revoked` event whose access tokens
    /// may still be valid is deleted.
    async fn delete_events_before(&self, cutoff: Timestamp, batch: u32) -> StoreResult<u32>;

    /// Appends events that record no change of any record (a refused
    /// device-binding proof: `binding_failed`), in order, in one step.
    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()>;
}
