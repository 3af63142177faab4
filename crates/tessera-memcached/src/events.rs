//! The event log: one key per event, ids from a counter (see
//! [`layout`](crate::layout#the-event-log)).

use async_trait::async_trait;
use memcache::exp::Ttl;
use tessera_core::{Event, EventKind, EventQuery, EventStore, NewEvent, StoreResult, Timestamp};

use crate::MemcachedStore;
use crate::codec::{decode_event, encode_event, event_at};
use crate::conn::ttl_secs;
use crate::layout::CURSOR_SKEW_MS;

/// What a reader writes at an id it found empty: that id holds no event,
/// and the writer that had it takes another.
const TOMBSTONE: &[u8] = b"\xff";

/// How long a tombstone lives: long past any writer's retry.
const TOMBSTONE_TTL_SECS: i64 = 24 * 3600;

/// Ids read per round trip.
const CHUNK: u64 = 200;

fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

impl MemcachedStore {
    /// The log's base and the count of ids handed out from it (see
    /// [`layout`](crate::layout#the-event-log)); `None` for a log never
    /// written to.
    async fn event_counter(&self) -> StoreResult<Option<(u64, u64)>> {
        let keys = [self.key().event_base(), self.key().event_seq()];
        let mut items = self.conn().get_many(&keys).await?.into_iter();
        let base = items.next().flatten().and_then(|i| parse_u64(&i.value));
        let n = items.next().flatten().and_then(|i| parse_u64(&i.value));
        Ok(base.map(|b| (b, n.unwrap_or(0))))
    }

    /// The last id handed out (0 for a log never written to).
    async fn event_top(&self) -> StoreResult<u64> {
        Ok(self
            .event_counter()
            .await?
            .map_or(0, |(b, n)| b.saturating_add(n)))
    }

    /// The first id not deleted by retention, and the CAS of the record
    /// that says so (none before the first retention run).
    async fn event_first(&self) -> StoreResult<(u64, Option<u64>)> {
        let base = self.event_counter().await?.map_or(0, |(b, _)| b);
        Ok(match self.conn().get(&self.key().event_first()).await? {
            Some(i) => (
                parse_u64(&i.value).unwrap_or(0).max(base.saturating_add(1)),
                Some(i.cas),
            ),
            None => (base.saturating_add(1), None),
        })
    }

    /// The log's base, set now if there is none: the wall clock in
    /// microseconds, so ids handed out after memcached lost everything
    /// are still above every id handed out before (a revocation-feed
    /// follower's cursor stays valid). Whichever process adds it first
    /// sets it for all.
    async fn event_base(&self) -> StoreResult<u64> {
        let key = self.key().event_base();
        loop {
            if let Some(b) = self.conn().get(&key).await?.and_then(|i| parse_u64(&i.value)) {
                return Ok(b);
            }
            // The store's own ordering, not a domain time: the wall clock
            // is what survives a memcached restart.
            let micros = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX >> 12));
            self.conn()
                .add(&key, micros.max(1).to_string().as_bytes(), Ttl::NEVER)
                .await?;
        }
    }

    /// A new event id: the base plus the count, bumped.
    async fn next_event_id(&self) -> StoreResult<u64> {
        let key = self.key().event_seq();
        loop {
            let base = self.event_base().await?;
            if let Some(n) = self.conn().incr(&key, 1).await? {
                return Ok(base.saturating_add(n));
            }
            // No count yet (a fresh log, or memcached lost it): start one.
            self.conn().add(&key, b"0", Ttl::NEVER).await?;
        }
    }

    /// Appends `events` in order, each under a fresh id.
    pub(crate) async fn append(&self, events: &[NewEvent]) -> StoreResult<()> {
        for e in events {
            let value = encode_event(e)?;
            loop {
                let id = self.next_event_id().await?;
                if self.conn().add(&self.key().event(id), &value, Ttl::NEVER).await? {
                    break;
                }
                // A reader tombstoned this id while we were between the
                // `incr` and the `add`: take the next one.
            }
        }
        Ok(())
    }

    /// The events with ids in `ids` (ascending or descending), in that
    /// order; an id still empty gets a tombstone (or, if its writer won the
    /// race, is read again).
    async fn read_ids(&self, ids: &[u64]) -> StoreResult<Vec<Event>> {
        let keys: Vec<String> = ids.iter().map(|&id| self.key().event(id)).collect();
        let items = self.conn().get_many(&keys).await?;
        let mut out = Vec::with_capacity(ids.len());
        for ((&id, key), item) in ids.iter().zip(&keys).zip(items) {
            let value = match item {
                Some(i) => i.value,
                None => {
                    if self
                        .conn()
                        .add(key, TOMBSTONE, ttl_secs(TOMBSTONE_TTL_SECS))
                        .await?
                    {
                        continue;
                    }
                    match self.conn().get(key).await? {
                        Some(i) => i.value,
                        None => continue,
                    }
                }
            };
            if value == TOMBSTONE {
                continue;
            }
            out.push(decode_event(id, &value)?);
        }
        Ok(out)
    }
}

fn matches(q: &EventQuery, e: &Event) -> bool {
    q.subject.as_ref().is_none_or(|s| *s == e.event.subject)
        && q.handle.as_ref().is_none_or(|h| *h == e.event.handle)
        && q.kind.is_none_or(|k| k == e.event.kind)
}

#[async_trait]
impl EventStore for MemcachedStore {
    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<Event>> {
        let top = self.event_top().await?;
        let (first, _) = self.event_first().await?;
        let mut next = query.after.saturating_add(1).max(first);
        let limit = query.limit as usize;
        let mut out = Vec::new();
        while next <= top && out.len() < limit {
            let end = next.saturating_add(CHUNK - 1).min(top);
            let ids: Vec<u64> = (next..=end).collect();
            for e in self.read_ids(&ids).await? {
                if matches(query, &e) && out.len() < limit {
                    out.push(e);
                }
            }
            if end >= top {
                break;
            }
            next = end + 1;
        }
        Ok(out)
    }

    async fn events_cursor_since(&self, kind: EventKind, since: Timestamp) -> StoreResult<u64> {
        let top = self.event_top().await?;
        let (first, _) = self.event_first().await?;
        let stop_before = since.unix_millis().saturating_sub(CURSOR_SKEW_MS);
        let mut smallest = None;
        let mut hi = top;
        'walk: while hi >= first && hi > 0 {
            let lo = hi.saturating_sub(CHUNK - 1).max(first);
            let ids: Vec<u64> = (lo..=hi).rev().collect();
            for e in self.read_ids(&ids).await? {
                let at = e.event.at.unix_millis();
                if e.event.kind == kind && at >= since.unix_millis() {
                    smallest = Some(e.id);
                }
                if at < stop_before {
                    break 'walk;
                }
            }
            if lo <= first {
                break;
            }
            hi = lo - 1;
        }
        Ok(match smallest {
            Some(id) => id - 1,
            None => top,
        })
    }

    async fn delete_events_before(&self, cutoff: Timestamp, batch: u32) -> StoreResult<u32> {
        let top = self.event_top().await?;
        let (first, first_cas) = self.event_first().await?;
        let mut deleted = 0u32;
        let mut id = first;
        while id <= top && deleted < batch {
            let key = self.key().event(id);
            match self.conn().get(&key).await? {
                Some(i) if i.value != TOMBSTONE => {
                    if event_at(&i.value)? >= cutoff {
                        break;
                    }
                    if self.conn().delete_cas(&key, i.cas).await? {
                        deleted += 1;
                    }
                }
                Some(_) => {
                    self.conn().delete(&key).await?;
                }
                None => {
                    // Empty: tombstone it so a late writer moves on, then
                    // it is part of the deleted prefix.
                    if !self
                        .conn()
                        .add(&key, TOMBSTONE, ttl_secs(TOMBSTONE_TTL_SECS))
                        .await?
                    {
                        continue;
                    }
                }
            }
            if id == top {
                id = top.saturating_add(1);
                break;
            }
            id += 1;
        }
        if id != first {
            let value = id.to_string();
            let k = self.key().event_first();
            match first_cas {
                // Another retention run moved it meanwhile: it saw at least
                // as much, or will redo what is left.
                Some(cas) => {
                    self.conn().cas(&k, value.as_bytes(), cas, Ttl::NEVER).await?;
                }
                None => {
                    self.conn().add(&k, value.as_bytes(), Ttl::NEVER).await?;
                }
            }
        }
        Ok(deleted)
    }

    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        self.append(events).await
    }
}
