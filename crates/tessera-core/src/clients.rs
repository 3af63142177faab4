//! The OAuth client registry (SPEC §4.3): who may ask for tokens, for which
//! scopes and audiences, and whether they get refresh tokens.

use std::collections::HashMap;

use subtle::ConstantTimeEq;

use crate::secret::TokenHash;

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
        }
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
    clients: HashMap<String, Client>,
}

impl ClientRegistry {
    /// Builds the registry; adds the built-in `default` client unless one
    /// with that id is configured.
    pub fn new(clients: Vec<Client>) -> Result<Self, String> {
        let mut map = HashMap::new();
        for c in clients {
            if c.client_id.is_empty() || c.client_id.len() > 128 || c.client_id.chars().any(char::is_control)
            {
                return Err(format!(
                    "client_id {:?} must be 1-128 printable characters",
                    c.client_id
                ));
            }
            match (c.kind, &c.secret_sha256) {
                (ClientKind::Confidential, None) => {
                    return Err(format!("confidential client {} needs secret_sha256", c.client_id));
                }
                (ClientKind::Public, Some(_)) => {
                    return Err(format!("public client {} must not have a secret", c.client_id));
                }
                _ => {}
            }
            if map.insert(c.client_id.clone(), c.clone()).is_some() {
                return Err(format!("client {} is configured twice", c.client_id));
            }
        }
        map.entry(DEFAULT_CLIENT_ID.to_owned())
            .or_insert_with(Client::default_client);
        Ok(Self { clients: map })
    }

    pub fn get(&self, client_id: &str) -> Option<&Client> {
        self.clients.get(client_id)
    }

    /// Authenticates a client at an OAuth endpoint: confidential clients
    /// must present their secret, public clients present none.
    pub fn authenticate(&self, client_id: &str, secret: Option<&str>) -> Result<&Client, ClientAuthError> {
        let c = self.clients.get(client_id).ok_or(ClientAuthError::Unknown)?;
        match (c.kind, secret) {
            (ClientKind::Confidential, None) => Err(ClientAuthError::Missing),
            (ClientKind::Confidential, Some(s)) if c.secret_matches(s) => Ok(c),
            (ClientKind::Confidential, Some(_)) => Err(ClientAuthError::BadSecret),
            (ClientKind::Public, None) => Ok(c),
            // A public client has no secret; one that sends one is confused
            // or spoofing a confidential client.
            (ClientKind::Public, Some(_)) => Err(ClientAuthError::BadSecret),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Client> {
        self.clients.values()
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
