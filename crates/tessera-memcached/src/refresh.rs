//! Refresh-token families: `f:ID` records, `r:HASH` pointers, and each
//! session's list of families (`sf:HANDLE`).

use std::sync::Arc;

use async_trait::async_trait;
use memcache::exp::Ttl;
use tessera_core::{
    CreateOptions, CreateOutcome, NewEvent, RefreshFamily, RefreshLookup, RefreshStore, Revocation,
    RevokeReason, Rotation, SessionRecord, SessionStore, StoreError, StoreResult, Timestamp, TokenHash,
};

use crate::MemcachedStore;
use crate::codec::{Pointer, decode, decode_family, encode, encode_family};
use crate::conn::{Item, ttl_secs};
use crate::layout::{EXPIRY_SLACK_SECS, shard_groups};
use crate::sessions::session_ttl;

/// A family's time to live when its session is not found: families go
/// with their session's sweep; this only bounds garbage.
const ORPHAN_FAMILY_TTL_SECS: i64 = 30 * 24 * 3600;

impl MemcachedStore {
    async fn load_family(&self, id: &str) -> StoreResult<Option<(RefreshFamily, u64)>> {
        match self.conn().get(&self.key().family(id)).await? {
            Some(Item { value, cas }) => Ok(Some((decode_family(id, &value)?, cas))),
            None => Ok(None),
        }
    }

    /// How long a family of session `handle` lives in memcached.
    async fn family_ttl(&self, handle: &str) -> StoreResult<Ttl> {
        Ok(match self.load_session(handle).await {
            Ok(Some((s, _))) => session_ttl(&s),
            // Only a time to live: a session that is gone or unreadable
            // does not stop its family's own writes.
            Ok(None) | Err(StoreError::Corrupt(_)) => ttl_secs(ORPHAN_FAMILY_TTL_SECS + EXPIRY_SLACK_SECS),
            Err(e) => return Err(e),
        })
    }

    /// Points refresh token `hash` at (`family`, `generation`) unless it
    /// points at an existing family already; whether it does now.
    async fn claim_refresh_token(
        &self,
        hash: &TokenHash,
        family: &str,
        generation: u64,
        ttl: Ttl,
    ) -> StoreResult<bool> {
        let key = self.key().refresh_token(&hash.0);
        let value = encode(
            "refresh pointer",
            &Pointer {
                target: family.to_owned(),
                generation,
            },
        )?;
        loop {
            if self.conn().add(&key, &value, ttl).await? {
                return Ok(true);
            }
            let Some(item) = self.conn().get(&key).await? else {
                continue;
            };
            let p: Pointer = decode("refresh pointer", &item.value)?;
            if self.load_family(&p.target).await?.is_some() {
                return Ok(false);
            }
            if self.conn().cas(&key, &value, item.cas, ttl).await? {
                return Ok(true);
            }
        }
    }

    /// Deletes the refresh pointer `hash` if it is (`family`, `generation`).
    async fn drop_refresh_token(&self, hash: &TokenHash, family: &str, generation: u64) -> StoreResult<()> {
        let key = self.key().refresh_token(&hash.0);
        if let Some(item) = self.conn().get(&key).await? {
            let p: Pointer = decode("refresh pointer", &item.value)?;
            if p.target == family && p.generation == generation {
                self.conn().delete_cas(&key, item.cas).await?;
            }
        }
        Ok(())
    }

    /// Stores a new family: its record, its first token's pointer and its
    /// place in the session's list ([`StoreError::Duplicate`] with nothing
    /// left behind if the id or the token exists).
    async fn insert_family(&self, family: &RefreshFamily, first: &TokenHash, ttl: Ttl) -> StoreResult<()> {
        let key = self.key().family(&family.id);
        if !self.conn().add(&key, &encode_family(family)?, ttl).await? {
            return Err(StoreError::Duplicate);
        }
        match self
            .claim_refresh_token(first, &family.id, family.generation, ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                self.conn().delete(&key).await?;
                return Err(StoreError::Duplicate);
            }
            Err(e) => {
                let _ = self.conn().delete(&key).await;
                return Err(e);
            }
        }
        let id = family.id.clone();
        // The list lives as long as the session (set again with each family).
        self.update_index_ttl(&self.key().families_of(&family.handle), ttl, |idx| {
            if idx.entries.contains(&id) {
                false
            } else {
                idx.entries.push(id.clone());
                true
            }
        })
        .await
        .map(|_| ())
    }

    /// Undoes [`insert_family`](Self::insert_family) of a login whose
    /// session was not stored. The list is that of the handle, which may be
    /// another session's when the handle was the duplicate: only this
    /// family leaves it.
    async fn remove_new_family(&self, family: &RefreshFamily, first: &TokenHash) -> StoreResult<()> {
        self.drop_refresh_token(first, &family.id, family.generation)
            .await?;
        self.conn().delete(&self.key().family(&family.id)).await?;
        let ttl = self.family_ttl(&family.handle).await?;
        self.update_index_ttl(&self.key().families_of(&family.handle), ttl, |idx| {
            let before = idx.entries.len();
            idx.entries.retain(|id| *id != family.id);
            idx.entries.len() != before
        })
        .await
    }

    /// Deletes every family of a session (its pointers expire with them).
    pub(crate) async fn delete_families_of(&self, handle: &str) -> StoreResult<()> {
        let key = self.key().families_of(handle);
        let idx = self.read_index(&key).await?;
        for id in &idx.entries {
            self.conn().delete(&self.key().family(id)).await?;
        }
        self.conn().delete(&key).await?;
        Ok(())
    }

    /// The families of `handles` (pipelined: their lists, then the
    /// families).
    async fn families_of_sessions(&self, handles: &[String]) -> StoreResult<Vec<(RefreshFamily, u64)>> {
        let list_keys: Vec<String> = handles.iter().map(|h| self.key().families_of(h)).collect();
        let mut ids = Vec::new();
        for item in self.conn().get_many(&list_keys).await?.into_iter().flatten() {
            ids.extend(decode::<crate::codec::Index>("index", &item.value)?.entries);
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key().family(id)).collect();
        let mut out = Vec::new();
        for (id, item) in ids.iter().zip(self.conn().get_many(&keys).await?) {
            if let Some(i) = item {
                out.push((decode_family(id, &i.value)?, i.cas));
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl RefreshStore for MemcachedStore {
    async fn create_refresh_family(
        &self,
        family: &RefreshFamily,
        first: &TokenHash,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        let ttl = self.family_ttl(&family.handle).await?;
        self.insert_family(family, first, ttl).await?;
        self.append(events).await
    }

    async fn create_with_refresh_family(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> StoreResult<CreateOutcome> {
        // No transaction spans keys, so the family goes first: a login cut
        // off half-way leaves at most a family whose session never came
        // (its token is refused like one of a swept session, and it expires
        // when the session would have), never a session without the
        // family its refresh token needs.
        self.insert_family(family, first, session_ttl(session)).await?;
        let out = self.create(session, opts, events).await;
        // Taken back only when the session certainly was not stored: after
        // another error it may have been (`create` keeps a session once it
        // is in place), and a family left over is the harmless case.
        if matches!(out, Ok(CreateOutcome::Conflict) | Err(StoreError::Duplicate)) {
            let _ = self.remove_new_family(family, first).await;
        }
        out
    }

    async fn update_with_refresh_family(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> StoreResult<bool> {
        // The family first, for the reason given in
        // `create_with_refresh_family`: cut off half-way, a step-up leaves
        // at most a family whose session never got the token it names.
        self.insert_family(family, first, session_ttl(session)).await?;
        let out = self.update(session, expected_version, events).await;
        if matches!(out, Ok(false) | Err(StoreError::Duplicate)) {
            let _ = self.remove_new_family(family, first).await;
        }
        out
    }

    async fn find_refresh(&self, hash: &TokenHash) -> StoreResult<Option<RefreshLookup>> {
        let Some(item) = self.conn().get(&self.key().refresh_token(&hash.0)).await? else {
            return Ok(None);
        };
        let p: Pointer = decode("refresh pointer", &item.value)?;
        Ok(self.load_family(&p.target).await?.map(|(f, _)| RefreshLookup {
            family: Arc::new(f),
            generation: p.generation,
        }))
    }

    async fn rotate_refresh(&self, rotation: &Rotation<'_>, events: &[NewEvent]) -> StoreResult<bool> {
        let key = self.key().family(rotation.family_id);
        // No family ever reaches the last generation; one "at" it cannot move.
        let Some(next_gen) = rotation.expected_generation.checked_add(1) else {
            return Ok(false);
        };
        let mut claimed = false;
        let rotated = loop {
            let Some((cur, cas)) = self.load_family(rotation.family_id).await? else {
                break false;
            };
            if cur.generation != rotation.expected_generation || cur.revoked.is_some() {
                break false;
            }
            let ttl = self.family_ttl(&cur.handle).await?;
            if !claimed {
                if !self
                    .claim_refresh_token(rotation.successor, rotation.family_id, next_gen, ttl)
                    .await?
                {
                    return Err(StoreError::Duplicate);
                }
                claimed = true;
            }
            let mut next = cur;
            next.generation = next_gen;
            next.rotated_at = rotation.now;
            next.current_sealed = rotation.successor_sealed.map(<[u8]>::to_vec);
            if next.binding.is_none()
                && let Some(b) = rotation.bind
            {
                next.binding = Some(b.clone());
            }
            // The commit point: of concurrent rotations one CAS wins.
            if self.conn().cas(&key, &encode_family(&next)?, cas, ttl).await? {
                break true;
            }
        };
        if !rotated {
            if claimed {
                self.drop_refresh_token(rotation.successor, rotation.family_id, next_gen)
                    .await?;
            }
            return Ok(false);
        }
        // Committed: the client must get its successor whatever happens
        // now (its old token is consumed; under strict rotation a retry
        // would count as reuse). A slide that fails is made up by the next
        // verification; an event that fails is lost from the log.
        if let Some(t) = &rotation.touch
            && let Err(e) = self
                .touch_record(t.handle, t.token_hash, t.last_seen_at, t.idle_expires_at)
                .await
        {
            tracing::warn!(error = %e, family = rotation.family_id, "rotated, but the session's slide failed");
        }
        if let Err(e) = self.append(events).await {
            tracing::warn!(error = %e, family = rotation.family_id, "rotated, but its events were not appended");
        }
        Ok(true)
    }

    async fn clear_sealed_successors(&self, rotated_before: Timestamp, batch: u32) -> StoreResult<u32> {
        let mut n = 0u32;
        for group in shard_groups(0) {
            let handles: Vec<String> = self
                .group_sessions(&group)
                .await?
                .into_iter()
                .map(|(s, _)| s.handle)
                .collect();
            for (f, _) in self.families_of_sessions(&handles).await? {
                if n >= batch {
                    return Ok(n);
                }
                if f.current_sealed.is_none() || f.rotated_at >= rotated_before {
                    continue;
                }
                let key = self.key().family(&f.id);
                let ttl = self.family_ttl(&f.handle).await?;
                loop {
                    let Some((mut cur, cas)) = self.load_family(&f.id).await? else {
                        break;
                    };
                    if cur.current_sealed.is_none() || cur.rotated_at >= rotated_before {
                        break;
                    }
                    cur.current_sealed = None;
                    if self.conn().cas(&key, &encode_family(&cur)?, cas, ttl).await? {
                        n += 1;
                        break;
                    }
                }
            }
        }
        Ok(n)
    }

    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        reason: RevokeReason,
        now: Timestamp,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let key = self.key().family(family_id);
        loop {
            let Some((mut cur, cas)) = self.load_family(family_id).await? else {
                return Ok(false);
            };
            if cur.revoked.is_some() {
                return Ok(false);
            }
            let ttl = self.family_ttl(&cur.handle).await?;
            cur.revoked = Some(Revocation { at: now, reason });
            cur.current_sealed = None;
            if self.conn().cas(&key, &encode_family(&cur)?, cas, ttl).await? {
                break;
            }
        }
        self.append(events).await?;
        Ok(true)
    }

    async fn refresh_families_of(&self, handle: &str) -> StoreResult<Vec<Arc<RefreshFamily>>> {
        let idx = self.read_index(&self.key().families_of(handle)).await?;
        let keys: Vec<String> = idx.entries.iter().map(|id| self.key().family(id)).collect();
        let mut out = Vec::new();
        for (id, item) in idx.entries.iter().zip(self.conn().get_many(&keys).await?) {
            if let Some(i) = item {
                out.push(Arc::new(decode_family(id, &i.value)?));
            }
        }
        Ok(out)
    }
}
