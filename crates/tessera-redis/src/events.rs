//! [`EventStore`] on Redis: the event stream, its revocation index and
//! retention.

use super::*;

#[async_trait]
impl EventStore for RedisStore {
    async fn events(&self, q: &EventQuery) -> StoreResult<Vec<Event>> {
        let limit = usize::try_from(q.limit).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let filtered = q.subject.is_some() || q.handle.is_some() || q.kind.is_some();
        let mut after = q.after;
        loop {
            let chunk = if filtered {
                EVENT_CHUNK
            } else {
                (limit - out.len()).min(EVENT_CHUNK)
            };
            let page = self.read_events(after, chunk).await?;
            let n = page.len();
            for e in page {
                after = e.id;
                let keep = q.subject.as_deref().is_none_or(|s| e.event.subject == s)
                    && q.handle.as_deref().is_none_or(|h| e.event.handle == h)
                    && q.kind.is_none_or(|k| e.event.kind == k);
                if keep {
                    out.push(e);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
            if n < chunk {
                return Ok(out);
            }
        }
    }

    async fn events_cursor_since(&self, kind: EventKind, since: Timestamp) -> StoreResult<u64> {
        if kind == EventKind::Revoked {
            let mut inv = self.script(&SCRIPTS.events_cursor).await?;
            inv.arg(millis(since));
            let n = int(self.run(&inv).await?, "events_cursor_since")?;
            return u64::try_from(n).map_err(|e| corrupt("events_cursor_since", e));
        }
        // No index for the other kinds: a walk of the log, as in SQLite.
        let mut first: Option<u64> = None;
        let mut after = 0;
        loop {
            let page = self.read_events(after, EVENT_CHUNK).await?;
            let n = page.len();
            for e in page {
                after = e.id;
                if e.event.kind == kind && e.event.at >= since && first.is_none_or(|f| e.id < f) {
                    first = Some(e.id);
                }
            }
            if n < EVENT_CHUNK {
                break;
            }
        }
        match first {
            Some(id) => Ok(id.saturating_sub(1)),
            None => self.newest_event_id().await,
        }
    }

    async fn delete_events_before(&self, cutoff: Timestamp, batch: u32) -> StoreResult<u32> {
        if batch == 0 {
            return Ok(0);
        }
        let mut inv = self.script(&SCRIPTS.events_delete).await?;
        inv.arg(millis(cutoff)).arg(batch);
        let n = int(self.run(&inv).await?, "delete_events_before")?;
        u32::try_from(n).map_err(|e| corrupt("delete_events_before", e))
    }

    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut inv = self.script(&SCRIPTS.events_append).await?;
        Self::push_events(&mut inv, events)?;
        int(self.run(&inv).await?, "append_events").map(|_| ())
    }
}

impl RedisStore {
    /// Up to `count` stream entries after `after`, decoded.
    async fn read_events(&self, after: u64, count: usize) -> StoreResult<Vec<Event>> {
        let v = self
            .cmd(
                redis::cmd("XRANGE")
                    .arg(self.key(layout::EVENTS, b""))
                    .arg(format!("(0-{after}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        array(v, "events")?
            .into_iter()
            .map(|entry| {
                let mut it = array(entry, "event")?.into_iter();
                let id = text(it.next().unwrap_or(Value::Nil), "event id")?;
                let fields = value::field_pairs(it.next().unwrap_or(Value::Nil), "event")?;
                codec::decode_event(&id, &fields)
            })
            .collect()
    }

    async fn newest_event_id(&self) -> StoreResult<u64> {
        let v = self
            .cmd(
                redis::cmd("XREVRANGE")
                    .arg(self.key(layout::EVENTS, b""))
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        match array(v, "events")?.into_iter().next() {
            None => Ok(0),
            Some(entry) => {
                let mut it = array(entry, "event")?.into_iter();
                let id = text(it.next().unwrap_or(Value::Nil), "event id")?;
                id.strip_prefix("0-")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| corrupt("event id", id))
            }
        }
    }
}
