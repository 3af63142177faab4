//! [`RefreshStore`]: refresh-token families, over the sessions they belong to.

use std::sync::Arc;

use async_trait::async_trait;

use super::{CreateOptions, CreateOutcome, SessionStore, StoreResult, Touch};
use crate::model::{Binding, NewEvent, RefreshFamily, RefreshLookup, RevokeReason, SessionRecord};
use crate::secret::TokenHash;
use crate::time::Timestamp;

/// One refresh rotation: the arguments of [`RefreshStore::rotate_refresh`].
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
    /// Binds the family to this key or certificate if it is bound to
    /// nothing yet (a public client's first refresh with a DPoP proof or
    /// over mTLS: its refresh tokens from then on need the same key, RFC
    /// 9449 §5, RFC 8705 §4). A family's binding, once set, never changes.
    pub bind: Option<&'a Binding>,
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
            bind: None,
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

/// Refresh-token families: the chain of refresh tokens of one session.
///
/// It extends [`SessionStore`] because a family is never apart from its
/// session: a rotation slides the session in its own atomic step, a lookup
/// reads the family's session from the same snapshot, and a session's sweep
/// deletes its families. Families and sessions therefore live in one
/// backend, and whoever holds a `RefreshStore` holds that backend's sessions
/// too.
#[async_trait]
pub trait RefreshStore: SessionStore {
    /// Stores a new refresh-token family whose generation-0 token hashes to
    /// `first`, and appends `events`
    /// ([`StoreError::Duplicate`](super::StoreError::Duplicate) if the id or
    /// hash exists; nothing is written then).
    async fn create_refresh_family(
        &self,
        family: &RefreshFamily,
        first: &TokenHash,
        events: &[NewEvent],
    ) -> StoreResult<()>;

    /// [`SessionStore::create`] of `session` together with
    /// [`create_refresh_family`](Self::create_refresh_family) of `family`
    /// (whose `handle` is `session.handle`), in one atomic step: a login
    /// that also hands out a refresh token. Either both are stored or
    /// neither: when the create writes nothing (a duplicate session,
    /// [`CreateOutcome::Conflict`]) no family is stored, and a duplicate
    /// family id or `first` hash is
    /// [`StoreError::Duplicate`](super::StoreError::Duplicate) with
    /// nothing written, not even the session. `events` are the session's;
    /// the family appends none.
    ///
    /// It exists because the two separate writes leave, after a crash
    /// between them, a session with no refresh family: a login nobody
    /// received that still counts against the subject's session limit.
    async fn create_with_refresh_family(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> StoreResult<CreateOutcome>;

    /// [`SessionStore::update`] of `session` together with
    /// [`create_refresh_family`](Self::create_refresh_family) of `family`
    /// (whose `handle` is `session.handle`), in one atomic step: a step-up
    /// that also hands out a refresh token. Returns whether it swapped; if
    /// it did not, no family is stored either. A duplicate family id or
    /// `first` hash is [`StoreError::Duplicate`](super::StoreError::Duplicate)
    /// with nothing written.
    async fn update_with_refresh_family(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> StoreResult<bool>;

    /// The family a refresh token belongs to and the generation it was
    /// issued as; consumed tokens keep pointing at their family (that is how
    /// reuse is detected) until the family is deleted.
    async fn find_refresh(&self, hash: &TokenHash) -> StoreResult<Option<RefreshLookup>>;

    /// [`find_refresh`](Self::find_refresh) together with
    /// [`get`](SessionStore::get) of the family's session (`None` if it is
    /// gone): what every refresh needs before it can decide anything.
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
    async fn refresh_families_of(&self, handle: &str) -> StoreResult<Vec<Arc<RefreshFamily>>>;
}
