//! The OAuth client registry (SPEC §4.3): who may ask for tokens, for which
//! scopes and audiences, with which grants, and how they authenticate.

mod assertion;
mod jwks;
mod registration;

use std::collections::HashMap;
use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::secret::TokenHash;

pub use assertion::{
    ASSERTION_TYPE_JWT_BEARER, AssertionError, AssertionRules, CheckedAssertion, ClientAssertions,
    MAX_ASSERTION_BYTES, MAX_ASSERTION_JTI_BYTES, MAX_ASSERTION_LIFETIME_SECS, assertion_client_id,
    check_assertion, replay_marker,
};
pub use jwks::{ASSERTION_ALGS, ClientJwks, JwksError, MAX_CLIENT_KEYS, assertion_alg_names};
pub use registration::Registration;

/// `grant_type=refresh_token` (RFC 6749 §6).
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
/// `grant_type=client_credentials` (RFC 6749 §4.4): a confidential client
/// acting for itself.
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
/// RFC 8693 token exchange: a confidential client trading an access token
/// for a narrower one.
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The grant types a client's registration may list.
pub const KNOWN_GRANT_TYPES: &[&str] = &[
    GRANT_REFRESH_TOKEN,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_TOKEN_EXCHANGE,
];

/// How a client authenticates (RFC 7591 §2 `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// A public client: nothing to prove.
    None,
    /// `client_secret_basic` or `client_secret_post` (either is accepted).
    ClientSecret,
    /// `private_key_jwt` (RFC 7523 §2.2): an assertion signed with a key of
    /// the client's `jwks`.
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    pub fn name(self) -> &'static str {
        match self {
            ClientAuthMethod::None => "none",
            ClientAuthMethod::ClientSecret => "client_secret_basic",
            ClientAuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// RFC 6749 §2.1 client types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Cannot keep a secret (SPA, mobile app); refresh tokens rotate.
    Public,
    /// Authenticates with a secret at the token, revocation and
    /// introspection endpoints.
    Confidential,
}

/// One registered client. `"*"` in `scopes` or `audiences` allows any.
#[derive(Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub kind: ClientKind,
    /// SHA-256 of the client secret (confidential clients only). Secrets are
    /// high-entropy values generated for the client, so a plain hash is
    /// enough (no password stretching needed).
    pub secret_sha256: Option<[u8; 32]>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub refresh_tokens: bool,
    /// RFC 9449 §5.2 `dpop_bound_access_tokens`: every token request of
    /// this client must carry a DPoP proof (or, at session creation, a
    /// `dpop_jkt`).
    pub dpop_bound_access_tokens: bool,
    /// Public keys for `private_key_jwt` (confidential clients without a
    /// secret only).
    pub jwks: Option<ClientJwks>,
    /// The grants the client may use at the token endpoint
    /// ([`KNOWN_GRANT_TYPES`]).
    pub grant_types: Vec<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.client_id)
            .field("kind", &self.kind)
            .field("secret_sha256", &self.secret_sha256.map(|_| "<set>"))
            .field("scopes", &self.scopes)
            .field("audiences", &self.audiences)
            .field("refresh_tokens", &self.refresh_tokens)
            .field("dpop_bound_access_tokens", &self.dpop_bound_access_tokens)
            .field("jwks", &self.jwks)
            .field("grant_types", &self.grant_types)
            .finish()
    }
}

impl Client {
    /// The built-in first-party public client `default`, allowed every scope
    /// and audience, with refresh tokens.
    pub fn default_client() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            kind: ClientKind::Public,
            secret_sha256: None,
            scopes: vec!["*".into()],
            audiences: vec!["*".into()],
            refresh_tokens: true,
            dpop_bound_access_tokens: false,
            jwks: None,
            grant_types: vec![GRANT_REFRESH_TOKEN.into()],
        }
    }

    /// How this client authenticates.
    pub fn auth_method(&self) -> ClientAuthMethod {
        match (self.kind, self.jwks.is_some()) {
            (ClientKind::Public, _) => ClientAuthMethod::None,
            (ClientKind::Confidential, true) => ClientAuthMethod::PrivateKeyJwt,
            (ClientKind::Confidential, false) => ClientAuthMethod::ClientSecret,
        }
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// Checks the registration's consistency: the id's form, exactly one
    /// way to authenticate for a confidential client (a secret or keys,
    /// never both), none for a public one, known grants, and
    /// `client_credentials` for confidential clients only.
    pub fn validate(&self) -> Result<(), String> {
        let id = &self.client_id;
        if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
            return Err(format!("client_id {id:?} must be 1-128 printable characters"));
        }
        match (self.kind, &self.secret_sha256, &self.jwks) {
            (ClientKind::Confidential, None, None) => {
                return Err(format!(
                    "confidential client {id} needs secret_sha256 or (with private_key_jwt) jwks"
                ));
            }
            (ClientKind::Confidential, Some(_), Some(_)) => {
                return Err(format!(
                    "client {id}: a client authenticates with a secret or with private_key_jwt, not both"
                ));
            }
            (ClientKind::Public, Some(_), _) => {
                return Err(format!("public client {id} must not have a secret"));
            }
            (ClientKind::Public, _, Some(_)) => {
                return Err(format!("public client {id} must not have jwks"));
            }
            _ => {}
        }
        if let Some(g) = self
            .grant_types
            .iter()
            .find(|g| !KNOWN_GRANT_TYPES.contains(&g.as_str()))
        {
            return Err(format!(
                "client {id}: unknown grant type {g:?} (known: {})",
                KNOWN_GRANT_TYPES.join(", ")
            ));
        }
        for g in [GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE] {
            if self.kind == ClientKind::Public && self.allows_grant(g) {
                return Err(format!(
                    "public client {id} cannot use {g} (it has nothing to authenticate with)"
                ));
            }
        }
        Ok(())
    }

    pub fn allows_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == "*" || s == scope)
    }

    pub fn allows_audience(&self, aud: &str) -> bool {
        self.audiences.iter().any(|a| a == "*" || a == aud)
    }

    /// Constant-time check of a presented secret.
    pub fn secret_matches(&self, presented: &str) -> bool {
        match &self.secret_sha256 {
            Some(want) => {
                let got = TokenHash::of_secret(presented.as_bytes());
                got.0.ct_eq(want).into()
            }
            None => false,
        }
    }
}

pub const DEFAULT_CLIENT_ID: &str = "default";

/// Prefix of a revoked client's entry in the revocation feed (its `sid`
/// member): session handles start with `ses_`, so the two never meet.
pub const CLIENT_REVOCATION_PREFIX: &str = "client:";

/// The feed entry that revokes `client_id`'s session-less tokens.
pub fn client_revocation_key(client_id: &str) -> String {
    format!("{CLIENT_REVOCATION_PREFIX}{client_id}")
}

/// Why a client could not be authenticated (→ `invalid_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientAuthError {
    #[error("unknown client")]
    Unknown,
    #[error("client authentication failed")]
    BadSecret,
    #[error("confidential client must authenticate")]
    Missing,
}

#[derive(Debug, Clone)]
pub struct ClientRegistry {
    clients: HashMap<String, Arc<Client>>,
}

impl ClientRegistry {
    /// Builds the registry; adds the built-in `default` client unless one
    /// with that id is configured.
    pub fn new(clients: Vec<Client>) -> Result<Self, String> {
        let mut map = HashMap::new();
        for c in clients {
            c.validate()?;
            let id = c.client_id.clone();
            if map.insert(id.clone(), Arc::new(c)).is_some() {
                return Err(format!("client {id} is configured twice"));
            }
        }
        map.entry(DEFAULT_CLIENT_ID.to_owned())
            .or_insert_with(|| Arc::new(Client::default_client()));
        Ok(Self { clients: map })
    }

    pub fn get(&self, client_id: &str) -> Option<&Client> {
        self.clients.get(client_id).map(|c| &**c)
    }

    /// The shared registration of `client_id`.
    pub fn get_arc(&self, client_id: &str) -> Option<Arc<Client>> {
        self.clients.get(client_id).cloned()
    }

    /// Authenticates a client at an OAuth endpoint: confidential clients
    /// must present their secret, public clients present none.
    pub fn authenticate(&self, client_id: &str, secret: Option<&str>) -> Result<&Client, ClientAuthError> {
        let c = self.get(client_id).ok_or(ClientAuthError::Unknown)?;
        c.authenticate_secret(secret).map(|()| c)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Client> {
        self.clients.values().map(|c| &**c)
    }
}

impl Client {
    /// Checks a presented secret (or its absence) against this
    /// registration. A `private_key_jwt` client never authenticates with a
    /// secret; without one it is [`ClientAuthError::Missing`] (its assertion
    /// is checked by [`ClientAssertions`]).
    pub fn authenticate_secret(&self, secret: Option<&str>) -> Result<(), ClientAuthError> {
        let c = self;
        if c.jwks.is_some() {
            return Err(match secret {
                None => ClientAuthError::Missing,
                Some(_) => ClientAuthError::BadSecret,
            });
        }
        match (c.kind, secret) {
            (ClientKind::Confidential, None) => Err(ClientAuthError::Missing),
            (ClientKind::Confidential, Some(s)) if c.secret_matches(s) => Ok(()),
            (ClientKind::Confidential, Some(_)) => Err(ClientAuthError::BadSecret),
            (ClientKind::Public, None) => Ok(()),
            // A public client has no secret; one that sends one is confused
            // or spoofing a confidential client.
            (ClientKind::Public, Some(_)) => Err(ClientAuthError::BadSecret),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confidential(id: &str, secret: &str) -> Client {
        Client {
            client_id: id.into(),
            kind: ClientKind::Confidential,
            secret_sha256: Some(TokenHash::of_secret(secret.as_bytes()).0),
            scopes: vec!["read".into()],
            audiences: vec!["api".into()],
            refresh_tokens: false,
            dpop_bound_access_tokens: false,
            jwks: None,
            grant_types: vec![GRANT_CLIENT_CREDENTIALS.into()],
        }
    }

    #[test]
    fn default_client_is_added() {
        let r = ClientRegistry::new(vec![]).unwrap();
        let d = r.get("default").unwrap();
        assert!(d.allows_scope("anything") && d.allows_audience("x") && d.refresh_tokens);
    }

    #[test]
    fn confidential_clients_must_authenticate() {
        let r = ClientRegistry::new(vec![confidential("svc", "s3cret")]).unwrap();
        assert!(r.authenticate("svc", Some("s3cret")).is_ok());
        assert_eq!(r.authenticate("svc", None), Err(ClientAuthError::Missing));
        assert_eq!(
            r.authenticate("svc", Some("nope")),
            Err(ClientAuthError::BadSecret)
        );
        assert_eq!(r.authenticate("ghost", None), Err(ClientAuthError::Unknown));
        assert_eq!(
            r.authenticate("default", Some("x")),
            Err(ClientAuthError::BadSecret)
        );
        assert!(r.authenticate("default", None).is_ok());
        let c = r.get("svc").unwrap();
        assert!(c.allows_scope("read") && !c.allows_scope("write"));
        assert!(!format!("{c:?}").contains(&format!("{:?}", c.secret_sha256.unwrap())));
    }

    #[test]
    fn bad_registries_are_refused() {
        let mut no_secret = confidential("a", "x");
        no_secret.secret_sha256 = None;
        assert!(ClientRegistry::new(vec![no_secret]).is_err());
        assert!(ClientRegistry::new(vec![confidential("a", "x"), confidential("a", "y")]).is_err());
        assert!(ClientRegistry::new(vec![confidential("", "x")]).is_err());
    }
}
