//! The store contract: what every backend (memory, SQLite, Redis, …) must do.
//!
//! The trait is async and every method is one atomic step on the store, so a
//! networked store can implement each with one round trip (a transaction, a
//! Lua script). Domain rules live in [`Sessions`](crate::Sessions); stores
//! only keep records, maintain their indexes, and apply the conditional
//! writes described on each method. `tessera-conformance` holds the tests
//! every implementation must pass.

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{
    ApiKeyRecord, Event, EventKind, NewEvent, RefreshFamily, RefreshLookup, RevokeReason, SessionRecord,
    SigningKeyRecord,
};
use crate::time::Timestamp;
use crate::token::TokenHash;

/// A store failure. Every variant means "the store could not answer": callers
/// fail closed (503 at the HTTP edge), never open.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend is unreachable, timed out, or refused the operation.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// A uniqueness constraint was hit (e.g. a duplicate handle or token hash).
    #[error("duplicate key")]
    Duplicate,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Options of [`SessionStore::create`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Revoke this session (handle, expected version) with reason
    /// [`RevokeReason::Replaced`] and one `revoked` event, in the same atomic
    /// step (the new session's own events follow it). If it is no longer
    /// at that version or is already revoked, nothing at all is written and
    /// the outcome is [`CreateOutcome::Conflict`].
    pub replace: Option<(String, u64)>,
    /// After inserting, revoke the subject's oldest active sessions (by
    /// `created_at`, then handle) *other than the one being inserted* until
    /// at most this many remain active, with reason
    /// [`RevokeReason::SessionLimit`] and one `revoked` event each (written
    /// after the new session's own events). The new session is never evicted:
    /// a login always yields a working session.
    pub max_per_subject: Option<u32>,
    /// The time used to decide which sessions are active and to stamp the
    /// revocations this call makes.
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Inserted; the handles of sessions revoked to respect the limit.
    Created { evicted: Vec<String> },
    /// `replace` did not match (wrong version, already revoked, or no such
    /// handle); nothing was written.
    Conflict,
}

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

/// One refresh rotation: the arguments of [`SessionStore::rotate_refresh`].
#[derive(Debug, Clone, Copy)]
pub struct Rotation<'a> {
    pub family_id: &'a str,
    /// The compare-and-swap: the rotation happens only from this generation.
    pub expected_generation: u64,
    /// The hash of the new token, recorded as generation
    /// `expected_generation + 1`.
    pub successor: &'a TokenHash,
    /// The successor sealed for retries inside the grace window, kept as
    /// the family's `current_sealed`; `None` (grace 0) stores none.
    pub successor_sealed: Option<&'a [u8]>,
    /// `rotated_at` of the family.
    pub now: Timestamp,
    /// Slides the family's session in the same atomic step, by exactly the
    /// rules of [`SessionStore::touch`] (only if the session still has this
    /// token hash and is not revoked; later values win). Whether it matched
    /// does not decide the rotation.
    pub touch: Option<Touch<'a>>,
}

impl<'a> Rotation<'a> {
    /// A rotation that stores no sealed successor and slides nothing.
    pub fn new(
        family_id: &'a str,
        expected_generation: u64,
        successor: &'a TokenHash,
        now: Timestamp,
    ) -> Self {
        Self {
            family_id,
            expected_generation,
            successor,
            successor_sealed: None,
            now,
            touch: None,
        }
    }

    /// Keeps `sealed` as the family's `current_sealed`.
    #[must_use]
    pub fn sealed(mut self, sealed: &'a [u8]) -> Self {
        self.successor_sealed = Some(sealed);
        self
    }

    /// Slides the session as `touch` would, in the same step.
    #[must_use]
    pub fn touching(mut self, touch: Touch<'a>) -> Self {
        self.touch = Some(touch);
        self
    }
}

/// The arguments of [`SessionStore::touch`], for a write that includes one.
#[derive(Debug, Clone, Copy)]
pub struct Touch<'a> {
    pub handle: &'a str,
    pub token_hash: &'a TokenHash,
    pub last_seen_at: Timestamp,
    pub idle_expires_at: Timestamp,
}

/// Rules that hold across methods (the conformance suite checks each):
///
/// - Every change a store makes to a session itself (revocation by `replace`,
///   by the subject limit, by `revoke_subject`) bumps `version`, so a
///   concurrent compare-and-swap built on the old record fails instead of
///   writing the session back un-revoked.
/// - A duplicate handle or token hash wins over every other effect: nothing
///   is written.
/// - Event ids start at 1 and strictly increase; `after` is unsigned, so a
///   store with signed ids must treat values above `i64::MAX` as "nothing
///   after". `limit` applies after the filters.
/// - `touch` appends no events. Subjects are opaque: quotes, wildcards and
///   glob characters are plain bytes.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Inserts a new session and appends `events`, atomically with the
    /// `replace` and `max_per_subject` effects of `opts`.
    ///
    /// A duplicate handle or token hash is [`StoreError::Duplicate`] and
    /// writes nothing.
    async fn create(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
    ) -> StoreResult<CreateOutcome>;

    /// The session with this handle, revoked or not, until the sweeper deletes it.
    async fn get(&self, handle: &str) -> StoreResult<Option<Arc<SessionRecord>>>;

    /// The session whose current token hashes to `hash`. A token replaced by
    /// [`update`](Self::update) no longer finds it.
    async fn get_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Arc<SessionRecord>>>;

    /// Slides the idle window: sets `last_seen_at` and `idle_expires_at` to
    /// the later of their stored and given values, only if the session still
    /// has this token hash and is not revoked. Does not change `version`.
    /// Returns whether it matched.
    async fn touch(
        &self,
        handle: &str,
        token_hash: &TokenHash,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> StoreResult<bool>;

    /// Compare-and-swap: replaces the stored session with `session` (whose
    /// `version` must be `expected_version + 1`) and appends `events`, only if
    /// the stored version is `expected_version`. `last_seen_at` and
    /// `idle_expires_at` keep the later of stored and given values, so a
    /// concurrent `touch` is never undone. Returns whether it swapped.
    async fn update(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
    ) -> StoreResult<bool>;

    /// Every stored session of `subject` (revoked and expired included, until
    /// swept), in no particular order.
    async fn list_by_subject(&self, subject: &str) -> StoreResult<Vec<Arc<SessionRecord>>>;

    /// Revokes every active (at `now`) session of `subject` except `except`,
    /// with one `revoked` event each; returns their handles.
    async fn revoke_subject(
        &self,
        subject: &str,
        except: Option<&str>,
        reason: RevokeReason,
        now: Timestamp,
    ) -> StoreResult<Vec<String>>;

    /// Revokes up to `batch` active (at `now`) sessions of any subject, with
    /// one `revoked` event each; returns how many. Callers repeat while it
    /// returns `batch` ("sign everyone out", after a breach).
    async fn revoke_all_active(&self, reason: RevokeReason, now: Timestamp, batch: u32) -> StoreResult<u32>;

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

    /// Deletes up to `batch` sessions whose `expires_at() <= now`, appending
    /// an `expired` event for each that had not been revoked, together with
    /// their refresh-token families and those families' token hashes. Returns how many
    /// were deleted; callers repeat while it returns `batch`.
    async fn sweep(&self, now: Timestamp, batch: u32) -> StoreResult<u32>;

    /// How many sessions are active at `now`.
    async fn count_active(&self, now: Timestamp) -> StoreResult<u64>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// Stores a new API key ([`StoreError::Duplicate`] if the id or hash exists).
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;

    async fn api_key_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<ApiKeyRecord>>;

    /// All API keys, revoked included, oldest first.
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;

    /// Marks the key revoked; false if no such key or already revoked.
    async fn revoke_api_key(&self, id: &str, now: Timestamp) -> StoreResult<bool>;

    /// Stores a new refresh-token family whose generation-0 token hashes to
    /// `first`, and appends `events` ([`StoreError::Duplicate`] if the id or
    /// hash exists; nothing is written then).
    async fn create_refresh_family(
        &self,
        family: &RefreshFamily,
        first: &TokenHash,
        events: &[NewEvent],
    ) -> StoreResult<()>;

    /// The family a refresh token belongs to and the generation it was
    /// issued as; consumed tokens keep pointing at their family (that is how
    /// reuse is detected) until the family is deleted.
    async fn find_refresh(&self, hash: &TokenHash) -> StoreResult<Option<RefreshLookup>>;

    /// [`find_refresh`](Self::find_refresh) together with
    /// [`get`](Self::get) of the family's session (`None` if it is gone):
    /// what every refresh needs before it can decide anything.
    ///
    /// It exists so a store can answer both from one snapshot in one round
    /// trip (one SQL statement, one read transaction) instead of two. The
    /// provided implementation is the two separate reads, which is correct
    /// but gains nothing; a store that can do better overrides it, and a
    /// store that wraps another must forward it, or the inner store's
    /// single read becomes two again.
    async fn find_refresh_with_session(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshLookup, Option<Arc<SessionRecord>>)>> {
        let Some(lookup) = self.find_refresh(hash).await? else {
            return Ok(None);
        };
        let session = self.get(&lookup.family.handle).await?;
        Ok(Some((lookup, session)))
    }

    /// Compare-and-swap rotation: only if the family is at
    /// `expected_generation` and not revoked, records `successor` as
    /// generation `expected_generation + 1`, sets `generation`,
    /// `rotated_at = now` and `current_sealed = successor_sealed`, applies
    /// `touch` to the session (see [`Rotation::touch`]), and appends
    /// `events`, all in one atomic step. Returns whether it rotated; if it
    /// did not, nothing at all was written.
    ///
    /// The slide is part of the same step so that nothing a refresh does
    /// after its rotation committed can fail: a failure there would leave
    /// the client without the successor while its token is consumed.
    async fn rotate_refresh(&self, rotation: &Rotation<'_>, events: &[NewEvent]) -> StoreResult<bool>;

    /// Clears `current_sealed` of up to `batch` families rotated before
    /// `rotated_before` (strictly) that still hold one; returns how many.
    /// Callers repeat while it returns `batch`. Nothing else changes: no
    /// generation, no token, no event.
    ///
    /// A sealed successor exists only so a retry inside the grace window
    /// gets the same token back; once the window has passed it only makes a
    /// copy of the store (with the key-encryption key) worth a current
    /// refresh token (SPEC §5). The sweeper calls this.
    async fn clear_sealed_successors(&self, rotated_before: Timestamp, batch: u32) -> StoreResult<u32>;

    /// Marks the family revoked (and clears `current_sealed`) and appends
    /// `events`; false if unknown or already revoked.
    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        reason: RevokeReason,
        now: Timestamp,
        events: &[NewEvent],
    ) -> StoreResult<bool>;

    /// Every family of a session, revoked ones included.
    async fn refresh_families_of(&self, handle: &str) -> StoreResult<Vec<std::sync::Arc<RefreshFamily>>>;

    /// Adds a signing key only if the newest stored key (by `activates_at`,
    /// then `kid`) is `if_newest` (`None`: only if there is no key at all).
    /// This is how several processes sharing a store agree on one rotation.
    /// Returns whether it was added.
    async fn insert_signing_key(&self, key: &SigningKeyRecord, if_newest: Option<&str>) -> StoreResult<bool>;

    /// Every stored signing key, oldest `activates_at` first.
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;

    /// Deletes a retired key; false if there was none.
    async fn delete_signing_key(&self, kid: &str) -> StoreResult<bool>;

    /// Emergency withdrawal: marks the key revoked at `now` and erases its
    /// sealed private part (it must never sign again, and a later copy of the
    /// store should not hold it), keeping the rest of the record so the
    /// operator can still see the key and when it was revoked. False if
    /// there is no such key or it was already revoked. Does not change the
    /// key order the [`insert_signing_key`](Self::insert_signing_key)
    /// compare-and-set uses.
    async fn revoke_signing_key(&self, kid: &str, now: Timestamp) -> StoreResult<bool>;
}
