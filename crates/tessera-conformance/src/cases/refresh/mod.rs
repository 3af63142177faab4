//! [`RefreshStore`]: refresh-token families, method by method, and their
//! compare-and-swap under real parallelism.
//!
//! These cases go straight to the store. Families are always created for a
//! stored session, as the token service does (a store may tie a family to
//! its session, e.g. with a foreign key).

mod families;
mod login;
mod rotate;

pub use families::*;
pub use login::*;
pub use rotate::*;

use tessera_core::{
    Event, EventStore, NewEvent, RefreshFamily, RefreshStore, Rotation, SecretToken, SigningKeyRecord,
    Timestamp, TokenHash, TokenKind,
};

use crate::support::*;

pub(super) fn refresh_token() -> SecretToken {
    SecretToken::generate(TokenKind::Refresh)
}

/// What `hash` finds: the family and the generation the token was issued as.
pub(super) async fn lookup(s: &dyn RefreshStore, hash: &TokenHash) -> Option<(RefreshFamily, u64)> {
    s.find_refresh(hash)
        .await
        .expect("find_refresh")
        .map(|l| (RefreshFamily::clone(&l.family), l.generation))
}

/// The families of `handle`, by id (the contract leaves their order open).
pub(super) async fn families_of(s: &dyn RefreshStore, handle: &str) -> Vec<RefreshFamily> {
    let mut out: Vec<RefreshFamily> = s
        .refresh_families_of(handle)
        .await
        .expect("refresh_families_of")
        .iter()
        .map(|f| RefreshFamily::clone(f))
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

pub(super) fn by_id(mut v: Vec<RefreshFamily>) -> Vec<RefreshFamily> {
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

pub(super) async fn create_family(
    s: &dyn RefreshStore,
    family: &RefreshFamily,
    first: &TokenHash,
    events: &[NewEvent],
) {
    s.create_refresh_family(family, first, events)
        .await
        .unwrap_or_else(|e| panic!("create_refresh_family {}: {e}", family.id));
}

pub(super) async fn rotate_ok(
    s: &dyn RefreshStore,
    family: &RefreshFamily,
    successor: &TokenHash,
    sealed: &[u8],
    now: Timestamp,
) -> RefreshFamily {
    assert!(
        s.rotate_refresh(
            &Rotation::new(&family.id, family.generation, successor, now).sealed(sealed),
            &[]
        )
        .await
        .expect("rotate_refresh"),
        "rotation of {} from generation {} should swap",
        family.id,
        family.generation
    );
    RefreshFamily {
        generation: family.generation + 1,
        rotated_at: now,
        current_sealed: Some(sealed.to_vec()),
        ..family.clone()
    }
}

/// Everything the refresh methods can show about some sessions and
/// hashes, for "nothing was written" checks.
#[derive(Debug, PartialEq)]
pub(super) struct TokenState {
    families: Vec<Vec<RefreshFamily>>,
    lookups: Vec<Option<(RefreshFamily, u64)>>,
    /// Every signing key, on a complete store.
    keys: Option<Vec<SigningKeyRecord>>,
    events: Vec<Event>,
}

pub(super) async fn token_state<S: RefreshStore + EventStore>(
    s: &S,
    handles: &[&str],
    hashes: &[TokenHash],
) -> TokenState {
    let mut families = Vec::new();
    for h in handles {
        families.push(families_of(s, h).await);
    }
    let mut lookups = Vec::new();
    for h in hashes {
        lookups.push(lookup(s, h).await);
    }
    TokenState {
        families,
        lookups,
        keys: match complete_store() {
            Some(c) => Some(c.signing_keys().await.expect("signing_keys")),
            None => None,
        },
        events: all_events(s).await,
    }
}

/// The events appended after the first `skip`, without their ids.
pub(super) async fn events_after(s: &dyn EventStore, skip: usize) -> Vec<NewEvent> {
    all_events(s)
        .await
        .into_iter()
        .skip(skip)
        .map(|e| e.event)
        .collect()
}
