//! Tessera's session core.
//!
//! Sessions, tokens, policies, events and the [`SessionStore`] contract. It
//! knows nothing about HTTP or any particular database: the service
//! (`tessera-server`) and the library faces are thin layers over
//! [`Sessions`], and every store implements [`SessionStore`] and passes the
//! shared conformance suite (`tessera-conformance`).
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
pub mod cookie_header;
pub mod error;
pub mod keys;
pub mod memory;
pub mod model;
pub mod policy;
pub mod seal;
pub mod sessions;
pub mod store;
pub mod store_url;
pub mod time;
pub mod token;
pub mod tokens;

pub use access::{AccessClaims, Audience};
pub use clients::{Client, ClientKind, ClientRegistry};
pub use error::{Error, Result};
pub use keys::{KeyManager, KeyPolicy};
pub use memory::MemoryStore;
pub use model::{
    ApiKeyRecord, ApiKeyScope, AuthInfo, Binding, DeviceInfo, Event, EventKind, NewEvent, PublicSession,
    RefreshFamily, RefreshLookup, Revocation, RevokeReason, SessionRecord, SigningAlg, SigningKeyRecord,
};
pub use policy::SessionPolicy;
pub use seal::Sealer;
pub use sessions::{AuthInput, CreateSession, DeviceInput, IssuedSession, Sessions, TtlInput};
pub use store::{
    CreateOptions, CreateOutcome, EventQuery, Rotation, SessionStore, StoreError, StoreResult, Touch,
};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
pub use token::{SecretToken, TokenHash, TokenKind};
pub use tokens::{Introspection, IssuedTokens, OAuthError, TokenPolicy, TokenRequest, TokenService};
