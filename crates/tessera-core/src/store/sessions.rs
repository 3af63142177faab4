//! [`SessionStore`]: the session records.

use std::sync::Arc;

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{NewEvent, RevokeReason, SessionRecord};
use crate::secret::TokenHash;
use crate::time::Timestamp;

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

/// The arguments of [`SessionStore::touch`], for a write that includes one.
#[derive(Debug, Clone, Copy)]
pub struct Touch<'a> {
    pub handle: &'a str,
    pub token_hash: &'a TokenHash,
    pub last_seen_at: Timestamp,
    pub idle_expires_at: Timestamp,
}

/// Sessions: one per logged-in device, found by handle or by the hash of
/// its current token.
///
/// Session writes append their events (`created`, `revoked`, …) in the same
/// atomic step; reading the log is [`EventStore`](super::EventStore)'s.
///
/// Rules that hold across methods (the conformance suite checks each):
///
/// - Every change a store makes to a session itself (revocation by `replace`,
///   by the subject limit, by `revoke_subject`) bumps `version`, so a
///   concurrent compare-and-swap built on the old record fails instead of
///   writing the session back un-revoked.
/// - A duplicate handle or token hash wins over every other effect: nothing
///   is written.
/// - `touch` appends no events. Subjects are opaque: quotes, wildcards and
///   glob characters are plain bytes.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Inserts a new session and appends `events`, atomically with the
    /// `replace` and `max_per_subject` effects of `opts`.
    ///
    /// A duplicate handle or token hash is
    /// [`StoreError::Duplicate`](super::StoreError::Duplicate) and writes
    /// nothing.
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

    /// Deletes up to `batch` sessions whose `expires_at() <= now`, appending
    /// an `expired` event for each that had not been revoked, together with
    /// their refresh-token families and those families' token hashes (a
    /// store without [`RefreshStore`](super::RefreshStore) has none). Returns
    /// how many were deleted; callers repeat while it returns `batch`.
    async fn sweep(&self, now: Timestamp, batch: u32) -> StoreResult<u32>;

    /// How many sessions are active at `now`.
    async fn count_active(&self, now: Timestamp) -> StoreResult<u64>;
}
