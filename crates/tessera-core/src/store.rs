//! The store contract: what every backend (memory, SQLite, Redis, …) must do,
//! split by capability.
//!
//! Each capability trait covers one kind of record, so a backend, a wrapper
//! (the service's metrics decorator) or a test double implements what its
//! users need, and each service takes only the capabilities it uses:
//!
//! | trait | records | used by |
//! |---|---|---|
//! | [`SessionStore`] | sessions | [`Sessions`](crate::Sessions) |
//! | [`RefreshStore`] | refresh-token families (over sessions) | [`TokenService`](crate::TokenService) |
//! | [`SigningKeyStore`] | access-token signing keys | [`KeyManager`](crate::KeyManager) |
//! | [`ApiKeyStore`] | backend API keys | the service's API-key check |
//! | [`ClientStore`] | OAuth clients registered at run time | the client registry |
//! | [`EventStore`] | the event log (reads and retention) | [`EventLog`](crate::EventLog) |
//! | [`LeaseStore`] | leases: who does a cluster-wide duty now | [`DutyLease`](crate::lease::DutyLease) |
//! | [`ReplayStore`] | single-use markers (DPoP `jti`, …) | [`dpop`](crate::dpop) |
//! | [`RateLimitStore`] | rate-limit counters | [`ratelimit`](crate::ratelimit) |
//! | [`StoreHealth`] | — | readiness probes |
//!
//! [`Store`] is all of them, implemented for every type that implements
//! each: code that opens "the store" (a URL, a test fixture) passes it
//! around as `Arc<dyn Store>` and hands each service its capability.
//!
//! Every method is one atomic step on the store, so a networked store can
//! implement each with one round trip (a transaction, a Lua script). A
//! method whose operation changes several kinds of records (a rotation
//! slides its session and appends events; a session write appends events;
//! a sweep deletes sessions with their families) stays one method on the
//! trait of its operation: splitting it across traits would split the
//! atomic step. Domain rules live in the services; stores only keep
//! records, maintain their indexes, and apply the conditional writes
//! described on each method. `tessera-conformance` holds the tests every
//! implementation must pass, grouped by the same capabilities.
//!
//! Method names are unique across the traits, so a type implementing
//! several (or `dyn Store`) never needs a qualified call.

mod api_keys;
mod clients;
mod events;
mod keys;
mod leases;
mod rate_limits;
mod refresh;
mod replay;
mod sessions;

use async_trait::async_trait;

pub use api_keys::ApiKeyStore;
pub use clients::ClientStore;
pub use events::{EventQuery, EventStore};
pub use keys::SigningKeyStore;
pub use leases::{LeaseStore, ttl_millis};
pub use rate_limits::{RateLimitStore, WindowTotals};
pub use refresh::{RefreshStore, Rotation};
pub use replay::ReplayStore;
pub use sessions::{CreateOptions, CreateOutcome, SessionStore, Touch};

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

/// Whether the backend answers at all.
#[async_trait]
pub trait StoreHealth: Send + Sync + 'static {
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
}

/// Every capability: a complete store. Implemented for any type that
/// implements each capability trait; never implement it by hand.
pub trait Store:
    SessionStore
    + RefreshStore
    + SigningKeyStore
    + ApiKeyStore
    + ClientStore
    + EventStore
    + LeaseStore
    + ReplayStore
    + RateLimitStore
    + StoreHealth
{
}

impl<T> Store for T where
    T: SessionStore
        + RefreshStore
        + SigningKeyStore
        + ApiKeyStore
        + ClientStore
        + EventStore
        + LeaseStore
        + ReplayStore
        + RateLimitStore
        + StoreHealth
        + ?Sized
{
}
