//! The key schedule: each key's state and publication over time, and the
//! in-memory snapshot of the stored keys it runs over.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::ActiveSigner;
use crate::access::{KeySource, VerifyKey};
use crate::model::{SigningAlg, SigningKeyRecord};
use crate::time::Timestamp;

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not signing yet.
    Pending,
    /// The key signing now.
    Active,
    /// A newer key signs; published until its tokens have expired.
    Retired,
    /// Withdrawn by `tessera keys revoke`: never signs, never published.
    Revoked,
}

/// What `tessera keys list` shows. No key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: SigningAlg,
    pub created_at: Timestamp,
    pub activates_at: Timestamp,
    /// When the next key takes over (in the future while that key is
    /// pending); `None` for the newest key.
    pub retires_at: Option<Timestamp>,
    pub state: KeyState,
    /// Whether the JWKS lists it; an unpublished key is deleted by `prune`
    /// (a revoked one is kept as a record).
    pub published: bool,
    /// When it was revoked, for a [`KeyState::Revoked`] key.
    pub revoked_at: Option<Timestamp>,
}

pub(super) struct LoadedKey {
    pub(super) created_at: Timestamp,
    pub(super) activates_at: Timestamp,
    pub(super) sealed: Vec<u8>,
    pub(super) signer: Arc<ActiveSigner>,
    pub(super) jwk: Value,
    /// The public half as the access-token verifier uses it, imported from
    /// `jwk` like a resource server imports it from the JWKS.
    pub(super) verify: Arc<VerifyKey>,
}

/// An immutable view of the stored keys, oldest (`activates_at`, `kid`) first.
#[derive(Default)]
pub(super) struct Snapshot {
    pub(super) seq: u64,
    /// The usable keys: the schedule runs over these only.
    pub(super) keys: Vec<Arc<LoadedKey>>,
    /// Revoked keys, as records without their (erased) private part.
    pub(super) revoked: Vec<SigningKeyRecord>,
}

/// The schedule over keys sorted by (`activates_at`, `kid`); only their
/// activation instants matter.
pub(super) struct Schedule<'a> {
    pub(super) activates: &'a [Timestamp],
    pub(super) now: Timestamp,
    pub(super) keep_secs: i64,
}

impl Schedule<'_> {
    pub(super) fn active(&self) -> Option<usize> {
        self.activates.iter().rposition(|&a| a <= self.now)
    }

    pub(super) fn retires_at(&self, i: usize) -> Option<Timestamp> {
        self.activates.get(i.saturating_add(1)).copied()
    }

    pub(super) fn state(&self, i: usize) -> KeyState {
        match (self.activates.get(i), self.retires_at(i)) {
            (Some(&a), _) if a > self.now => KeyState::Pending,
            (_, Some(r)) if r <= self.now => KeyState::Retired,
            _ => KeyState::Active,
        }
    }

    pub(super) fn published(&self, i: usize) -> bool {
        published(self.retires_at(i), self.now, self.keep_secs)
    }
}

/// A key retiring at `retires_at` (`None`: the newest) is published at `now`
/// until its successor has been active for `keep_secs`.
fn published(retires_at: Option<Timestamp>, now: Timestamp, keep_secs: i64) -> bool {
    retires_at.is_none_or(|r| now <= r.plus_secs(keep_secs))
}

/// The service's own signing keys as the access-token verifier's key
/// source: exactly the keys the JWKS lists at `now`, so the service accepts
/// the tokens a resource server holding its JWKS accepts, and a revoked key
/// (gone from the snapshot) verifies nothing. Looks keys up without
/// allocating.
pub struct PublishedKeys {
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) now: Timestamp,
    pub(super) keep_secs: i64,
}

impl KeySource for PublishedKeys {
    fn key(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        let keys = &self.snapshot.keys;
        let i = keys.iter().position(|k| k.signer.kid == kid)?;
        let retires_at = keys.get(i + 1).map(|k| k.activates_at);
        published(retires_at, self.now, self.keep_secs).then(|| &keys[i].verify)
    }
}

pub(super) fn key_order(a: &SigningKeyRecord, b: &SigningKeyRecord) -> std::cmp::Ordering {
    (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid))
}
