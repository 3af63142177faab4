//! Stateless tokens over sessions: RFC 9068 access tokens and rotating
//! refresh tokens (SPEC §1, §4.3).
//!
//! A refresh-token family belongs to one session and one client. Each use
//! rotates it with a compare-and-swap on the family's generation, so of N
//! concurrent refreshes with the same token exactly one rotates; the others
//! find the token one generation behind and, inside the grace window, get
//! the very same successor back (it is kept sealed for that window only;
//! the sweeper clears it after, [`TokenService::clear_sealed_successors`]).
//! Any other use of a consumed token is theft: the session is revoked and a
//! `refresh_token_reuse` event recorded.

mod client_credentials;
mod error;
mod exchange;
mod introspect;
mod issue;
mod refresh;
mod scope;
mod target;
mod types;

use std::sync::Arc;

use crate::clients::ClientRegistry;
use crate::keys::KeyManager;
use crate::seal::Sealer;
use crate::sessions::Sessions;
use crate::store::{ClientStore, RefreshStore};

pub use error::OAuthError;
pub use exchange::{ACCESS_TOKEN_TYPE, ExchangeRequest, JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT};
pub use introspect::Introspection;
pub use issue::{LoginError, PreparedTokens, REFRESH_FAMILY_PREFIX};
pub use scope::parse_scope;
pub use target::{MAX_AUDIENCES, resource_syntax};
pub use types::{IssuedTokens, TokenPolicy, TokenRequest};

/// Longest reuse grace window. The window exists for a client's retry and a
/// second tab racing the first, which take seconds; a longer one only keeps a
/// stolen consumed token good for longer, and keeps the successor sealed in
/// the store for longer (SPEC §5: a copy of the store yields no refresh
/// token but those rotated within the last grace window).
pub const MAX_REUSE_GRACE_SECS: i64 = 60;

/// Issues, refreshes, revokes and introspects tokens; every face that deals
/// in tokens goes through this.
#[derive(Clone)]
pub struct TokenService {
    sessions: Sessions,
    families: Arc<dyn RefreshStore>,
    keys: Arc<KeyManager>,
    clients: Arc<ClientRegistry>,
    /// Clients registered at run time (`tessera clients create`), looked
    /// up when the configuration has no client of that id.
    stored_clients: Option<Arc<dyn ClientStore>>,
    sealer: Arc<Sealer>,
    policy: Arc<TokenPolicy>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    /// The reuse grace window is capped to `0..=`[`MAX_REUSE_GRACE_SECS`]
    /// here, whoever built the policy (the service's config refuses larger
    /// values; an embedding app gets the cap).
    ///
    /// `families` must be the store `sessions` is over (or a wrapper of
    /// it): a rotation slides the family's session in the same atomic step,
    /// which one backend can do and two cannot.
    pub fn new(
        sessions: Sessions,
        families: Arc<dyn RefreshStore>,
        keys: Arc<KeyManager>,
        clients: Arc<ClientRegistry>,
        sealer: Arc<Sealer>,
        mut policy: TokenPolicy,
    ) -> Self {
        policy.reuse_grace_secs = policy.reuse_grace_secs.clamp(0, MAX_REUSE_GRACE_SECS);
        Self {
            sessions,
            families,
            keys,
            clients,
            stored_clients: None,
            sealer,
            policy: Arc::new(policy),
        }
    }

    /// Also serves the clients `store` holds (the configuration's win on an
    /// id they share). Each lookup reads the store, so a client revoked
    /// there is refused by every process at once.
    #[must_use]
    pub fn with_client_store(mut self, store: Arc<dyn ClientStore>) -> Self {
        self.stored_clients = Some(store);
        self
    }

    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    pub fn keys(&self) -> &Arc<KeyManager> {
        &self.keys
    }

    pub fn clients(&self) -> &Arc<ClientRegistry> {
        &self.clients
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }
}

#[cfg(test)]
mod tests;
