//! Tessera's session core.
//!
//! Sessions, tokens, policies, events and the store contract. It knows
//! nothing about HTTP or any particular database: the service
//! (`tessera-server`) and the library faces are thin layers over
//! [`Sessions`] and the other services, each of which takes only the store
//! capabilities it uses ([`store`]), and every store implements those
//! capabilities and passes the shared conformance suite
//! (`tessera-conformance`).
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::todo,
    clippy::unimplemented
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod access;
pub mod b64url;
pub mod clients;
pub mod dbsc;
pub mod dpop;
pub mod error;
pub mod events;
pub mod keys;
pub mod lease;
pub mod memory;
pub mod model;
pub mod policy;
pub mod ratelimit;
pub mod seal;
pub mod secret;
pub mod sessions;
pub mod store;
pub mod store_url;
pub mod time;
pub mod tokens;

pub use access::{AccessClaims, Audience};
pub use clients::{Client, ClientKind, ClientRegistry};
pub use error::{Error, Result};
pub use events::EventLog;
pub use keys::{KeyManager, KeyPolicy};
pub use lease::DutyLease;
pub use memory::MemoryStore;
pub use model::{
    ApiKeyRecord, ApiKeyScope, AuthInfo, Binding, ClientRecord, DeviceInfo, Event, EventKind, NewEvent,
    RefreshFamily, RefreshLookup, Revocation, RevokeReason, SessionRecord, SigningAlg, SigningKeyRecord,
};
pub use policy::SessionPolicy;
pub use seal::Sealer;
pub use secret::{SecretToken, TokenHash, TokenKind};
pub use sessions::{AuthInput, CreateSession, DeviceInput, IssuedSession, Sessions, TtlInput};
pub use store::{
    ApiKeyStore, ClientStore, CreateOptions, CreateOutcome, EventQuery, EventStore, LeaseStore,
    RateLimitStore, RefreshStore, ReplayStore, Rotation, SessionStore, SigningKeyStore, Store, StoreError,
    StoreHealth, StoreResult, Touch,
};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
pub use tokens::{
    Introspection, IssuedTokens, LoginError, OAuthError, PreparedTokens, TokenPolicy, TokenRequest,
    TokenService,
};
