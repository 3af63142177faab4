//! Sessions: records, token pointers, the subject and global indexes (see
//! [`layout`](crate::layout) for the order of the steps and why each
//! interrupted state is harmless).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use memcache::exp::Ttl;
use tessera_core::{
    CreateOptions, CreateOutcome, EventKind, NewEvent, Revocation, RevokeReason, SessionRecord, SessionStore,
    StoreError, StoreResult, Timestamp, TokenHash,
};

use crate::MemcachedStore;
use crate::codec::{Index, Pointer, decode, decode_session, encode, encode_session};
use crate::conn::{Item, ttl_secs};
use crate::layout::{EXPIRY_SLACK_SECS, SHARDS, shard_groups, shard_of};

/// A session's time to live in memcached: until its own expiry (counted
/// from its last activity, which is about now) plus the sweeper's slack.
pub(crate) fn session_ttl(s: &SessionRecord) -> Ttl {
    let until = s.absolute_expires_at.max(s.idle_expires_at);
    let left = until
        .unix_millis()
        .saturating_sub(s.last_seen_at.unix_millis())
        .max(0);
    ttl_secs((left / 1000).saturating_add(1 + EXPIRY_SLACK_SECS))
}

impl MemcachedStore {
    /// The session with this handle and its CAS token.
    pub(crate) async fn load_session(&self, handle: &str) -> StoreResult<Option<(SessionRecord, u64)>> {
        match self.conn().get(&self.key().session(handle)).await? {
            Some(Item { value, cas }) => Ok(Some((decode_session(handle, &value)?, cas))),
            None => Ok(None),
        }
    }

    /// Sessions by handle, in order; `None` for one that is gone.
    pub(crate) async fn load_sessions(
        &self,
        handles: &[String],
    ) -> StoreResult<Vec<Option<(SessionRecord, u64)>>> {
        let keys: Vec<String> = handles.iter().map(|h| self.key().session(h)).collect();
        let items = self.conn().get_many(&keys).await?;
        handles
            .iter()
            .zip(items)
            .map(|(h, i)| i.map(|i| Ok((decode_session(h, &i.value)?, i.cas))).transpose())
            .collect()
    }

    /// Revokes the session by CAS on its own record (version + 1), if it is
    /// not revoked yet and, with `active_at`, still active then. The
    /// record as revoked, or `None` if nothing changed. No event.
    pub(crate) async fn revoke_record(
        &self,
        handle: &str,
        reason: RevokeReason,
        now: Timestamp,
        active_at: Option<Timestamp>,
    ) -> StoreResult<Option<SessionRecord>> {
        let key = self.key().session(handle);
        loop {
            let Some((cur, cas)) = self.load_session(handle).await? else {
                return Ok(None);
            };
            if cur.revoked.is_some() || active_at.is_some_and(|t| !cur.is_active(t)) {
                return Ok(None);
            }
            let mut next = cur;
            next.version = bump(next.version)?;
            next.revoked = Some(Revocation { at: now, reason });
            if self
                .conn()
                .cas(&key, &encode_session(&next)?, cas, session_ttl(&next))
                .await?
            {
                return Ok(Some(next));
            }
        }
    }

    /// Revokes session `handle` as replaced, only if it is at `version` and
    /// not revoked; the record as revoked, or `None` (a conflict).
    async fn replace_session(
        &self,
        handle: &str,
        version: u64,
        now: Timestamp,
    ) -> StoreResult<Option<SessionRecord>> {
        let key = self.key().session(handle);
        loop {
            let Some((cur, cas)) = self.load_session(handle).await? else {
                return Ok(None);
            };
            if cur.version != version || cur.revoked.is_some() {
                return Ok(None);
            }
            let mut next = cur;
            next.version = bump(next.version)?;
            next.revoked = Some(Revocation {
                at: now,
                reason: RevokeReason::Replaced,
            });
            if self
                .conn()
                .cas(&key, &encode_session(&next)?, cas, session_ttl(&next))
                .await?
            {
                return Ok(Some(next));
            }
        }
    }

    /// Changes the index record at `key` by `f` (which answers whether it
    /// changed anything), retrying on concurrent changes.
    pub(crate) async fn update_index(&self, key: &str, f: impl FnMut(&mut Index) -> bool) -> StoreResult<()> {
        self.update_index_ttl(key, Ttl::NEVER, f).await
    }

    /// [`update_index`](Self::update_index) for an index record that
    /// expires (`ttl`, set again at every change).
    pub(crate) async fn update_index_ttl(
        &self,
        key: &str,
        ttl: Ttl,
        mut f: impl FnMut(&mut Index) -> bool,
    ) -> StoreResult<()> {
        loop {
            match self.conn().get(key).await? {
                None => {
                    let mut idx = Index::default();
                    if !f(&mut idx) {
                        return Ok(());
                    }
                    if self.conn().add(key, &encode("index", &idx)?, ttl).await? {
                        return Ok(());
                    }
                }
                Some(item) => {
                    let mut idx: Index = decode("index", &item.value)?;
                    if !f(&mut idx) {
                        return Ok(());
                    }
                    let done = if idx.entries.is_empty() && idx.evicted.is_empty() {
                        self.conn().delete_cas(key, item.cas).await?
                    } else {
                        self.conn()
                            .cas(key, &encode("index", &idx)?, item.cas, ttl)
                            .await?
                    };
                    if done {
                        return Ok(());
                    }
                }
            }
        }
    }

    pub(crate) async fn read_index(&self, key: &str) -> StoreResult<Index> {
        match self.conn().get(key).await? {
            Some(i) => decode("index", &i.value),
            None => Ok(Index::default()),
        }
    }

    /// Points session token `hash` at `handle` unless it points at a live
    /// session already (one that still has this token hash); whether it
    /// does now.
    async fn claim_session_token(&self, hash: &TokenHash, handle: &str, ttl: Ttl) -> StoreResult<bool> {
        let key = self.key().session_token(&hash.0);
        let value = encode(
            "token pointer",
            &Pointer {
                target: handle.to_owned(),
                generation: 0,
            },
        )?;
        loop {
            if self.conn().add(&key, &value, ttl).await? {
                return Ok(true);
            }
            let Some(item) = self.conn().get(&key).await? else {
                continue;
            };
            let p: Pointer = decode("token pointer", &item.value)?;
            if p.target == handle {
                return Ok(true);
            }
            if let Some((s, _)) = self.load_session(&p.target).await?
                && s.token_hash == *hash
            {
                return Ok(false);
            }
            // Stale (its session moved on or is gone): take it over.
            if self.conn().cas(&key, &value, item.cas, ttl).await? {
                return Ok(true);
            }
        }
    }

    /// Deletes the session token pointer `hash` if it points at `handle`.
    async fn drop_session_token(&self, hash: &TokenHash, handle: &str) -> StoreResult<()> {
        let key = self.key().session_token(&hash.0);
        if let Some(item) = self.conn().get(&key).await? {
            let p: Pointer = decode("token pointer", &item.value)?;
            if p.target == handle {
                self.conn().delete_cas(&key, item.cas).await?;
            }
        }
        Ok(())
    }

    /// The handles of global index shards `shards`, per shard.
    async fn shard_handles(&self, shards: &[u32]) -> StoreResult<Vec<Vec<String>>> {
        let keys: Vec<String> = shards.iter().map(|&n| self.key().shard(n)).collect();
        self.conn()
            .get_many(&keys)
            .await?
            .into_iter()
            .map(|item| match item {
                Some(i) => Ok(decode::<Index>("index", &i.value)?.entries),
                None => Ok(Vec::new()),
            })
            .collect()
    }

    /// The stored sessions named by `handles`; handles whose record is gone
    /// are removed from their global index shard on the way.
    async fn sessions_of(&self, handles: &[String]) -> StoreResult<Vec<(SessionRecord, u64)>> {
        let mut out = Vec::with_capacity(handles.len());
        let mut gone = Vec::new();
        for (h, s) in handles.iter().zip(self.load_sessions(handles).await?) {
            match s {
                Some(s) => out.push(s),
                None => gone.push(h.clone()),
            }
        }
        for h in gone {
            self.update_index(&self.key().shard(shard_of(&h)), |idx| {
                remove(&mut idx.entries, &h)
            })
            .await?;
        }
        Ok(out)
    }

    /// The stored sessions of a group of global index shards (one
    /// pipelined read of their indexes, then of their sessions).
    pub(crate) async fn group_sessions(&self, shards: &[u32]) -> StoreResult<Vec<(SessionRecord, u64)>> {
        let handles: Vec<String> = self.shard_handles(shards).await?.into_iter().flatten().collect();
        self.sessions_of(&handles).await
    }

    /// Removes a deleted session from the indexes and its token pointer.
    async fn unindex(&self, s: &SessionRecord) -> StoreResult<()> {
        let h = &s.handle;
        self.update_index(&self.key().subject(&s.subject), |idx| {
            let a = remove(&mut idx.entries, h);
            let b = remove(&mut idx.evicted, h);
            a || b
        })
        .await?;
        self.update_index(&self.key().shard(shard_of(h)), |idx| remove(&mut idx.entries, h))
            .await?;
        self.drop_session_token(&s.token_hash, h).await
    }

    /// Undoes a create that did not happen.
    async fn rollback_create(&self, s: &SessionRecord, pointer: bool) -> StoreResult<()> {
        if pointer {
            self.drop_session_token(&s.token_hash, &s.handle).await?;
        }
        self.conn().delete(&self.key().session(&s.handle)).await?;
        Ok(())
    }

    /// Adds the new session to its subject's index, deciding in the same
    /// CAS which of the subject's sessions the limit evicts (see
    /// [`layout`](crate::layout)); the handles to evict.
    async fn index_new_session(&self, s: &SessionRecord, opts: &CreateOptions) -> StoreResult<Vec<String>> {
        let key = self.key().subject(&s.subject);
        loop {
            let (mut idx, cas) = match self.conn().get(&key).await? {
                Some(i) => (decode::<Index>("index", &i.value)?, Some(i.cas)),
                None => (Index::default(), None),
            };
            if !idx.entries.contains(&s.handle) {
                idx.entries.push(s.handle.clone());
            }
            let mut evict = Vec::new();
            if let Some(max) = opts.max_per_subject {
                let others: Vec<String> = idx.entries.iter().filter(|h| **h != s.handle).cloned().collect();
                let mut active = Vec::new();
                for (h, r) in others.iter().zip(self.load_sessions(&others).await?) {
                    match r {
                        Some((r, _)) => {
                            if r.subject == s.subject && r.is_active(opts.now) && !idx.evicted.contains(h) {
                                active.push(r);
                            }
                        }
                        // Gone (swept by a process that died before it
                        // updated this index, or evicted): prune it here.
                        None => {
                            remove(&mut idx.entries, h);
                            remove(&mut idx.evicted, h);
                        }
                    }
                }
                // The new session counts and is never evicted.
                let excess = (active.len() + 1).saturating_sub(max as usize);
                active.sort_by(|a, b| (a.created_at, &a.handle).cmp(&(b.created_at, &b.handle)));
                evict = active.into_iter().take(excess).map(|r| r.handle).collect();
                idx.evicted.extend(evict.iter().cloned());
            }
            let value = encode("index", &idx)?;
            let done = match cas {
                Some(cas) => self.conn().cas(&key, &value, cas, Ttl::NEVER).await?,
                None => self.conn().add(&key, &value, Ttl::NEVER).await?,
            };
            if done {
                return Ok(evict);
            }
        }
    }

    /// Slides the session as [`SessionStore::touch`] does; whether it matched.
    pub(crate) async fn touch_record(
        &self,
        handle: &str,
        token_hash: &TokenHash,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> StoreResult<bool> {
        let key = self.key().session(handle);
        loop {
            let Some((mut cur, cas)) = self.load_session(handle).await? else {
                return Ok(false);
            };
            if cur.token_hash != *token_hash || cur.revoked.is_some() {
                return Ok(false);
            }
            if cur.last_seen_at >= last_seen_at && cur.idle_expires_at >= idle_expires_at {
                return Ok(true);
            }
            cur.last_seen_at = cur.last_seen_at.max(last_seen_at);
            cur.idle_expires_at = cur.idle_expires_at.max(idle_expires_at);
            if self
                .conn()
                .cas(&key, &encode_session(&cur)?, cas, session_ttl(&cur))
                .await?
            {
                return Ok(true);
            }
        }
    }

    /// Revokes each of `handles` still active at `now`, appending one
    /// `revoked` event each; the handles revoked.
    async fn revoke_handles(
        &self,
        handles: &[String],
        reason: RevokeReason,
        now: Timestamp,
        active_at: Option<Timestamp>,
    ) -> StoreResult<Vec<String>> {
        let mut done = Vec::new();
        for h in handles {
            if let Some(r) = self.revoke_record(h, reason, now, active_at).await? {
                self.append(&[NewEvent::revoked(&r, reason, now)]).await?;
                done.push(h.clone());
            }
        }
        Ok(done)
    }

    /// Deletes an expired session (on its CAS, so only if unchanged since
    /// it was judged) with its families; whether this call deleted it.
    async fn sweep_one(&self, s: &SessionRecord, cas: u64, now: Timestamp) -> StoreResult<bool> {
        if !self
            .conn()
            .delete_cas(&self.key().session(&s.handle), cas)
            .await?
        {
            return Ok(false);
        }
        if s.revoked.is_none() {
            self.append(&[NewEvent::new(EventKind::Expired, s, now)]).await?;
        }
        self.delete_families_of(&s.handle).await?;
        self.unindex(s).await?;
        Ok(true)
    }
}

/// The version after a change the store makes itself.
fn bump(version: u64) -> StoreResult<u64> {
    version
        .checked_add(1)
        .ok_or_else(|| crate::codec::corrupt("session", "version at its maximum"))
}

fn remove(list: &mut Vec<String>, h: &str) -> bool {
    let before = list.len();
    list.retain(|x| x != h);
    list.len() != before
}

#[async_trait]
impl SessionStore for MemcachedStore {
    async fn create(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
    ) -> StoreResult<CreateOutcome> {
        let ttl = session_ttl(session);
        // Duplicates first: they win over every other effect.
        if !self
            .conn()
            .add(
                &self.key().session(&session.handle),
                &encode_session(session)?,
                ttl,
            )
            .await?
        {
            return Err(StoreError::Duplicate);
        }
        match self
            .claim_session_token(&session.token_hash, &session.handle, ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                self.rollback_create(session, false).await?;
                return Err(StoreError::Duplicate);
            }
            Err(e) => {
                let _ = self.rollback_create(session, true).await;
                return Err(e);
            }
        }
        let mut first_events = Vec::new();
        if let Some((h, v)) = &opts.replace {
            match self.replace_session(h, *v, opts.now).await {
                Ok(Some(r)) => first_events.push(NewEvent::revoked(&r, RevokeReason::Replaced, opts.now)),
                Ok(None) => {
                    self.rollback_create(session, true).await?;
                    return Ok(CreateOutcome::Conflict);
                }
                Err(e) => {
                    let _ = self.rollback_create(session, true).await;
                    return Err(e);
                }
            }
        }
        // The session is in place; from here on it stays, and what is left
        // is bookkeeping.
        let evict = self.index_new_session(session, opts).await?;
        let handle = session.handle.clone();
        self.update_index(&self.key().shard(shard_of(&handle)), |idx| {
            if idx.entries.contains(&handle) {
                false
            } else {
                idx.entries.push(handle.clone());
                true
            }
        })
        .await?;
        first_events.extend_from_slice(events);
        self.append(&first_events).await?;
        let evicted = self
            .revoke_handles(&evict, RevokeReason::SessionLimit, opts.now, None)
            .await?;
        Ok(CreateOutcome::Created { evicted })
    }

    async fn get(&self, handle: &str) -> StoreResult<Option<Arc<SessionRecord>>> {
        Ok(self.load_session(handle).await?.map(|(s, _)| Arc::new(s)))
    }

    async fn get_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Arc<SessionRecord>>> {
        let Some(item) = self.conn().get(&self.key().session_token(&hash.0)).await? else {
            return Ok(None);
        };
        let p: Pointer = decode("token pointer", &item.value)?;
        Ok(self
            .load_session(&p.target)
            .await?
            .map(|(s, _)| s)
            .filter(|s| s.token_hash == *hash)
            .map(Arc::new))
    }

    async fn touch(
        &self,
        handle: &str,
        token_hash: &TokenHash,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> StoreResult<bool> {
        self.touch_record(handle, token_hash, last_seen_at, idle_expires_at)
            .await
    }

    async fn update(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let key = self.key().session(&session.handle);
        let mut claimed = false;
        let old = loop {
            let Some((cur, cas)) = self.load_session(&session.handle).await? else {
                break None;
            };
            if cur.version != expected_version {
                break None;
            }
            if cur.token_hash != session.token_hash && !claimed {
                if !self
                    .claim_session_token(&session.token_hash, &session.handle, session_ttl(session))
                    .await?
                {
                    return Err(StoreError::Duplicate);
                }
                claimed = true;
            }
            let mut next = session.clone();
            next.last_seen_at = next.last_seen_at.max(cur.last_seen_at);
            next.idle_expires_at = next.idle_expires_at.max(cur.idle_expires_at);
            if self
                .conn()
                .cas(&key, &encode_session(&next)?, cas, session_ttl(&next))
                .await?
            {
                break Some(cur);
            }
        };
        let Some(old) = old else {
            if claimed {
                self.drop_session_token(&session.token_hash, &session.handle)
                    .await?;
            }
            return Ok(false);
        };
        if old.token_hash != session.token_hash {
            self.drop_session_token(&old.token_hash, &session.handle).await?;
        }
        self.append(events).await?;
        Ok(true)
    }

    async fn list_by_subject(&self, subject: &str) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let idx = self.read_index(&self.key().subject(subject)).await?;
        Ok(self
            .load_sessions(&idx.entries)
            .await?
            .into_iter()
            .flatten()
            .map(|(s, _)| s)
            .filter(|s| s.subject == subject)
            .map(Arc::new)
            .collect())
    }

    async fn revoke_subject(
        &self,
        subject: &str,
        except: Option<&str>,
        reason: RevokeReason,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        let idx = self.read_index(&self.key().subject(subject)).await?;
        let targets: Vec<String> = self
            .load_sessions(&idx.entries)
            .await?
            .into_iter()
            .flatten()
            .map(|(s, _)| s)
            .filter(|s| s.subject == subject && s.is_active(now) && Some(s.handle.as_str()) != except)
            .map(|s| s.handle)
            .collect();
        self.revoke_handles(&targets, reason, now, Some(now)).await
    }

    async fn revoke_all_active(&self, reason: RevokeReason, now: Timestamp, batch: u32) -> StoreResult<u32> {
        let mut done = 0u32;
        for group in shard_groups(0) {
            let mut targets: Vec<String> = self
                .group_sessions(&group)
                .await?
                .into_iter()
                .filter(|(s, _)| s.is_active(now))
                .map(|(s, _)| s.handle)
                .take((batch - done) as usize)
                .collect();
            targets.sort_unstable();
            let revoked = self.revoke_handles(&targets, reason, now, Some(now)).await?;
            done += u32::try_from(revoked.len()).unwrap_or(u32::MAX);
            if done >= batch {
                break;
            }
        }
        Ok(done)
    }

    async fn sweep(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        // Successive sweeps go on where the last stopped, so a backlog of
        // expired sessions is not re-read from the first shard every time.
        let start = self.inner.sweep_cursor.load(Ordering::Relaxed) % SHARDS;
        let mut n = 0u32;
        for group in shard_groups(start) {
            for (s, cas) in self.group_sessions(&group).await? {
                if n >= batch {
                    break;
                }
                if s.is_expired(now) && self.sweep_one(&s, cas, now).await? {
                    n += 1;
                }
            }
            if n >= batch {
                // This group may hold more: start there next time.
                if let Some(&first) = group.first() {
                    self.inner.sweep_cursor.store(first, Ordering::Relaxed);
                }
                return Ok(n);
            }
        }
        Ok(n)
    }

    async fn count_active(&self, now: Timestamp) -> StoreResult<u64> {
        let mut n = 0u64;
        for group in shard_groups(0) {
            n += self
                .group_sessions(&group)
                .await?
                .iter()
                .filter(|(s, _)| s.is_active(now))
                .count() as u64;
        }
        Ok(n)
    }
}
