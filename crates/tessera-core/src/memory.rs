//! `memory://` — an in-process store for tests and single-process demos.
//!
//! One lock guards all maps, and every trait method holds it for its whole
//! run, which makes each method trivially atomic. It is a `RwLock` because
//! the hot path, resolving a presented token on every request, only reads.
//! Records are kept behind `Arc`, so a read is a map lookup and a
//! reference-count increment, with no copying of the session.
//!
//! Sessions are keyed by their current token hash, not by handle: a request
//! that presents a token finds its record with one probe, and the handle
//! index is only used by the less frequent calls that name a handle.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use crate::model::{
    ApiKeyRecord, ClientRecord, Event, EventKind, NewEvent, RefreshFamily, RefreshLookup, Revocation,
    RevokeReason, SessionRecord, SigningKeyRecord,
};
use crate::secret::TokenHash;
use crate::store::{
    ApiKeyStore, ClientStore, CreateOptions, CreateOutcome, EventQuery, EventStore, RefreshStore, Rotation,
    SessionStore, SigningKeyStore, StoreError, StoreHealth, StoreResult, Touch,
};
use crate::time::Timestamp;

mod events;
mod keys;
mod leases;
mod rate_limits;
mod refresh;
mod replay;

/// Hashes [`TokenHash`] keys by taking the bits they already carry.
///
/// A token hash is a SHA-256 output of a server-drawn random secret, so its
/// bits are uniform and nobody can choose them: running them through SipHash
/// again buys no protection against crafted collisions, only cost. Keys whose
/// `Hash` feeds arbitrary bytes still get spread by an FNV-1a fold.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

type ByDigest<V> = HashMap<TokenHash, V, BuildHasherDefault<DigestHasher>>;

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Every session, by its current token hash.
    sessions: ByDigest<Arc<SessionRecord>>,
    /// handle → the session's current token hash.
    handles: HashMap<String, TokenHash>,
    by_subject: HashMap<String, HashSet<String>>,
    events: Vec<Event>,
    /// The id of the newest event ever appended: retention may delete every
    /// event, and ids are never reused.
    last_event_id: u64,
    api_keys: Vec<ApiKeyRecord>,
    clients: Vec<ClientRecord>,
    families: HashMap<String, Arc<RefreshFamily>>,
    /// Every refresh token hash ever issued → (family, generation).
    refresh_tokens: ByDigest<(String, u64)>,
    /// family id → its token hashes, so a sweep can drop them.
    family_tokens: HashMap<String, Vec<TokenHash>>,
    signing_keys: Vec<SigningKeyRecord>,
    /// lease name → (holder, expires at).
    leases: HashMap<String, (String, Timestamp)>,
    /// single-use marker → expires at.
    markers: HashMap<[u8; 32], Timestamp>,
    /// (rate-limit counter, window) → (hits, kept until).
    counters: HashMap<([u8; 32], u64), (u64, Timestamp)>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while holding the lock cannot leave a half-applied change:
    // every method validates before it mutates, so the data is usable.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// [`SessionStore::create`] under the caller's write lock.
    fn create(
        &mut self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
    ) -> StoreResult<CreateOutcome> {
        if self.handles.contains_key(&session.handle) || self.sessions.contains_key(&session.token_hash) {
            return Err(StoreError::Duplicate);
        }
        if let Some((h, v)) = &opts.replace {
            match self.session(h) {
                Some(p) if p.version == *v && p.revoked.is_none() => {}
                _ => return Ok(CreateOutcome::Conflict),
            }
            self.revoke(h, RevokeReason::Replaced, opts.now);
        }
        self.put(session.clone());
        self.by_subject
            .entry(session.subject.clone())
            .or_default()
            .insert(session.handle.clone());
        for e in events {
            self.push_event(e.clone());
        }
        let mut evicted = Vec::new();
        if let Some(max) = opts.max_per_subject {
            let mut active = self.active_of(&session.subject, opts.now);
            let excess = active.len().saturating_sub(max as usize);
            active.retain(|s| s.handle != session.handle);
            active.sort_by(|a, b| (a.created_at, &a.handle).cmp(&(b.created_at, &b.handle)));
            for s in active.into_iter().take(excess) {
                self.revoke(&s.handle, RevokeReason::SessionLimit, opts.now);
                evicted.push(s.handle.clone());
            }
        }
        Ok(CreateOutcome::Created { evicted })
    }

    /// [`SessionStore::update`] under the caller's write lock.
    fn update(
        &mut self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let Some(cur) = self.session(&session.handle).cloned() else {
            return Ok(false);
        };
        if cur.version != expected_version {
            return Ok(false);
        }
        if cur.token_hash != session.token_hash && self.sessions.contains_key(&session.token_hash) {
            return Err(StoreError::Duplicate);
        }
        let mut next = session.clone();
        next.last_seen_at = next.last_seen_at.max(cur.last_seen_at);
        next.idle_expires_at = next.idle_expires_at.max(cur.idle_expires_at);
        self.put(next);
        for e in events {
            self.push_event(e.clone());
        }
        Ok(true)
    }

    /// Whether a family with this id or first token hash exists.
    fn family_exists(&self, family: &RefreshFamily, first: &TokenHash) -> bool {
        self.families.contains_key(&family.id) || self.refresh_tokens.contains_key(first)
    }

    /// Stores a family the caller checked with [`family_exists`](Self::family_exists).
    fn insert_family(&mut self, family: &RefreshFamily, first: &TokenHash) {
        self.families.insert(family.id.clone(), Arc::new(family.clone()));
        self.refresh_tokens
            .insert(*first, (family.id.clone(), family.generation));
        self.family_tokens.insert(family.id.clone(), vec![*first]);
    }
    fn push_event(&mut self, e: NewEvent) {
        self.last_event_id += 1;
        self.events.push(Event {
            id: self.last_event_id,
            event: e,
        });
    }

    fn session(&self, handle: &str) -> Option<&Arc<SessionRecord>> {
        self.handles.get(handle).and_then(|h| self.sessions.get(h))
    }

    fn find_refresh(&self, hash: &TokenHash) -> Option<RefreshLookup> {
        let (fid, generation) = self.refresh_tokens.get(hash)?;
        self.families.get(fid).map(|f| RefreshLookup {
            family: f.clone(),
            generation: *generation,
        })
    }

    /// Puts `record` in place of the session with its handle, under its own
    /// token hash. The caller has checked that no other session holds that hash.
    fn put(&mut self, record: SessionRecord) {
        if let Some(old) = self.handles.insert(record.handle.clone(), record.token_hash)
            && old != record.token_hash
        {
            self.sessions.remove(&old);
        }
        self.sessions.insert(record.token_hash, Arc::new(record));
    }

    fn revoke(&mut self, handle: &str, reason: RevokeReason, now: Timestamp) -> bool {
        let Some(cur) = self.session(handle) else {
            return false;
        };
        if cur.revoked.is_some() {
            return false;
        }
        let mut next = SessionRecord::clone(cur);
        next.version += 1;
        next.revoked = Some(Revocation { at: now, reason });
        let ev = NewEvent::revoked(&next, reason, now);
        self.put(next);
        self.push_event(ev);
        true
    }

    /// [`SessionStore::touch`]; whether it matched.
    fn touch(&mut self, t: &Touch<'_>) -> bool {
        // Keyed by the token hash: a hit is the session's current token.
        let Some(cur) = self.sessions.get_mut(t.token_hash) else {
            return false;
        };
        if cur.handle != t.handle || cur.revoked.is_some() {
            return false;
        }
        let s = Arc::make_mut(cur);
        s.last_seen_at = s.last_seen_at.max(t.last_seen_at);
        s.idle_expires_at = s.idle_expires_at.max(t.idle_expires_at);
        true
    }

    fn active_of(&self, subject: &str, now: Timestamp) -> Vec<Arc<SessionRecord>> {
        self.by_subject
            .get(subject)
            .into_iter()
            .flatten()
            .filter_map(|h| self.session(h))
            .filter(|s| s.is_active(now))
            .cloned()
            .collect()
    }

    fn remove(&mut self, handle: &str) -> Option<Arc<SessionRecord>> {
        let s = self.sessions.remove(&self.handles.remove(handle)?)?;
        let fams: Vec<String> = self
            .families
            .values()
            .filter(|f| f.handle == handle)
            .map(|f| f.id.clone())
            .collect();
        for f in fams {
            self.families.remove(&f);
            for h in self.family_tokens.remove(&f).unwrap_or_default() {
                self.refresh_tokens.remove(&h);
            }
        }
        if let Some(set) = self.by_subject.get_mut(&s.subject) {
            set.remove(handle);
            if set.is_empty() {
                self.by_subject.remove(&s.subject);
            }
        }
        Some(s)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
    ) -> StoreResult<CreateOutcome> {
        self.write().create(session, opts, events)
    }

    async fn get(&self, handle: &str) -> StoreResult<Option<Arc<SessionRecord>>> {
        Ok(self.read().session(handle).cloned())
    }

    async fn get_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Arc<SessionRecord>>> {
        Ok(self.read().sessions.get(hash).cloned())
    }

    async fn touch(
        &self,
        handle: &str,
        token_hash: &TokenHash,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> StoreResult<bool> {
        Ok(self.write().touch(&Touch {
            handle,
            token_hash,
            last_seen_at,
            idle_expires_at,
        }))
    }

    async fn update(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        self.write().update(session, expected_version, events)
    }

    async fn list_by_subject(&self, subject: &str) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let g = self.read();
        Ok(g.by_subject
            .get(subject)
            .into_iter()
            .flatten()
            .filter_map(|h| g.session(h).cloned())
            .collect())
    }

    async fn revoke_subject(
        &self,
        subject: &str,
        except: Option<&str>,
        reason: RevokeReason,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        let mut g = self.write();
        let targets: Vec<String> = g
            .active_of(subject, now)
            .into_iter()
            .filter(|s| Some(s.handle.as_str()) != except)
            .map(|s| s.handle.clone())
            .collect();
        for h in &targets {
            g.revoke(h, reason, now);
        }
        Ok(targets)
    }

    async fn revoke_all_active(&self, reason: RevokeReason, now: Timestamp, batch: u32) -> StoreResult<u32> {
        let mut g = self.write();
        let mut targets: Vec<String> = g
            .sessions
            .values()
            .filter(|s| s.is_active(now))
            .take(batch as usize)
            .map(|s| s.handle.clone())
            .collect();
        targets.sort_unstable();
        for h in &targets {
            g.revoke(h, reason, now);
        }
        Ok(targets.len() as u32)
    }

    async fn sweep(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        let mut g = self.write();
        let dead: Vec<String> = g
            .sessions
            .values()
            .filter(|s| s.is_expired(now))
            .take(batch as usize)
            .map(|s| s.handle.clone())
            .collect();
        for h in &dead {
            if let Some(s) = g.remove(h)
                && s.revoked.is_none()
            {
                g.push_event(NewEvent::new(EventKind::Expired, &s, now));
            }
        }
        Ok(dead.len() as u32)
    }

    async fn count_active(&self, now: Timestamp) -> StoreResult<u64> {
        Ok(self.read().sessions.values().filter(|s| s.is_active(now)).count() as u64)
    }
}

#[async_trait]
impl StoreHealth for MemoryStore {
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
