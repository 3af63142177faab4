//! Backend API keys: `Authorization: Bearer tsk_…`.
//!
//! A presented key is shape-checked (length, prefix, alphabet) before
//! anything else, then looked up by the SHA-256 of its secret. Valid keys
//! are cached for `api_key_cache_secs`, so a revoked key may keep working
//! for at most that long; unknown keys are never cached.
//!
//! The cache is found by a keyed SipHash of the presented key and confirmed
//! by a constant-time comparison with the key it cached, so a backend that
//! calls on every request pays neither the SHA-256 (a tenth of a verify's
//! CPU) nor a store read. Cached secrets live only in this process's memory,
//! for at most the TTL, and are zeroed when dropped; the store keeps hashes.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use tessera_core::secret::{self, API_KEY_ID_PREFIX, TokenKind};
use tessera_core::{ApiKeyRecord, ApiKeyScope, ApiKeyStore, SecretToken, StoreResult, Timestamp};

use crate::problem::ApiError;

/// Longest `Authorization` value looked at; anything longer is refused unread.
const MAX_AUTHORIZATION_BYTES: usize = 256;
/// Cached keys; past this the cache is cleared rather than grown.
const CACHE_CAPACITY: usize = 1024;

/// A small time-bounded cache of valid keys.
struct ApiKeyCache {
    ttl: Duration,
    /// Random per process: which bucket a key lands in says nothing.
    hasher: std::collections::hash_map::RandomState,
    entries: Mutex<HashMap<u64, CachedKey>>,
}

struct CachedKey {
    presented: Zeroizing<Box<[u8]>>,
    key: Arc<ApiKey>,
    at: Instant,
}

/// An authenticated API key: its id (for the log; never the secret) and
/// the scopes it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Box<str>,
    pub scopes: Vec<ApiKeyScope>,
}

impl ApiKey {
    /// Whether the key may act within `scope` (it holds it, or `admin`).
    pub fn allows(&self, scope: ApiKeyScope) -> bool {
        scope.granted_by(&self.scopes)
    }

    /// The refusal of a request outside the key's scopes (403 `forbidden`).
    pub fn require(&self, scope: ApiKeyScope) -> Result<(), ApiError> {
        if self.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this API key lacks the `{scope}` scope (it has: {}); create one with `tessera api-keys create --scope {scope}`",
                ApiKeyScope::join(&self.scopes)
            )))
        }
    }
}

impl std::fmt::Debug for ApiKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ApiKeyCache {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            hasher: Default::default(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, presented: &[u8]) -> Option<Arc<ApiKey>> {
        if self.ttl.is_zero() {
            return None;
        }
        let slot = self.hasher.hash_one(presented);
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let hit = map.get(&slot)?;
        if !bool::from(hit.presented.as_ref().ct_eq(presented)) {
            return None;
        }
        if hit.at.elapsed() < self.ttl {
            Some(hit.key.clone())
        } else {
            map.remove(&slot);
            None
        }
    }

    fn put(&self, presented: &[u8], key: Arc<ApiKey>) {
        if self.ttl.is_zero() {
            return;
        }
        let slot = self.hasher.hash_one(presented);
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(
            slot,
            CachedKey {
                presented: Zeroizing::new(presented.into()),
                key,
                at: Instant::now(),
            },
        );
    }

    /// Forgets every cached key (after a revocation in this process).
    fn clear(&self) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// The backend API keys: checking a presented key (through the cache) and
/// managing the stored ones. Needs only the [`ApiKeyStore`] capability.
pub struct ApiKeys {
    store: Arc<dyn ApiKeyStore>,
    cache: ApiKeyCache,
    /// `[[tls.api_clients]]`: client certificate thumbprint → the key it
    /// stands for.
    cert_clients: std::collections::HashMap<String, Arc<ApiKey>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl ApiKeys {
    /// Valid keys are remembered for `cache_ttl` (zero: never).
    pub fn new(store: Arc<dyn ApiKeyStore>, cache_ttl: Duration) -> Self {
        Self {
            store,
            cache: ApiKeyCache::new(cache_ttl),
            cert_clients: std::collections::HashMap::new(),
        }
    }

    /// Lets these client certificates authenticate to the backend API
    /// instead of an API key (SPEC §4.1, `[[tls.api_clients]]`).
    #[must_use]
    pub fn with_cert_clients(mut self, clients: &[crate::config::CertApiClient]) -> Self {
        self.cert_clients = clients
            .iter()
            .map(|c| {
                let key = ApiKey {
                    id: format!("mtls:{}", c.name).into(),
                    scopes: c.scopes.clone(),
                };
                (c.x5t_s256.clone(), Arc::new(key))
            })
            .collect();
        self
    }

    /// The key a TLS client certificate stands for, if it is mapped.
    pub fn by_certificate(&self, cert: &tessera_http::bearer::ClientCertThumbprint) -> Option<Arc<ApiKey>> {
        self.cert_clients.get(&cert.0).cloned()
    }

    /// Checks a presented `Authorization` header value; returns the key's id
    /// and scopes. Whether the scopes allow the request is the caller's check
    /// ([`ApiKey::require`]).
    pub async fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Arc<ApiKey>, ApiError> {
        let Some(value) = authorization else {
            return Err(ApiError::Unauthorized(
                "an API key is required: Authorization: Bearer tsk_…",
            ));
        };
        let presented = presented_key(value)?;
        if let Some(key) = self.cache.get(presented) {
            return Ok(key);
        }
        let hash = secret::parse(TokenKind::ApiKey, presented)
            .map_err(|_| ApiError::Unauthorized("the API key is not valid"))?;
        let rec = self.store.api_key_by_hash(&hash).await?;
        match rec {
            Some(k) if k.hash.ct_eq(&hash) && k.revoked_at.is_none() => {
                let key = Arc::new(ApiKey {
                    id: k.id.into(),
                    scopes: k.scopes,
                });
                self.cache.put(presented, key.clone());
                Ok(key)
            }
            _ => Err(ApiError::Unauthorized("the API key is not valid")),
        }
    }

    /// The key `authorization` presents if it was found valid within the
    /// cache's lifetime; never asks the store.
    pub fn cached(&self, authorization: &[u8]) -> Option<Arc<ApiKey>> {
        self.cache.get(presented_key(authorization).ok()?)
    }

    /// Creates and stores a new API key; returns its record and the secret.
    pub async fn create(
        &self,
        name: &str,
        scopes: &[ApiKeyScope],
        now: Timestamp,
    ) -> StoreResult<(ApiKeyRecord, SecretToken)> {
        create_api_key(self.store.as_ref(), name, scopes, now).await
    }

    /// Stores a key made by [`new_api_key`] whose secret the caller has
    /// already put somewhere (the bootstrap key file).
    pub async fn insert(&self, rec: &ApiKeyRecord) -> StoreResult<()> {
        self.store.insert_api_key(rec).await
    }

    /// All API keys, revoked included, oldest first.
    pub async fn list(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        self.store.list_api_keys().await
    }

    /// Revokes the key; false if there is no such active key. This
    /// process's cache forgets every key at once; other processes keep
    /// accepting it for at most their cache TTL.
    pub async fn revoke(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        let revoked = self.store.revoke_api_key(id, now).await?;
        self.cache.clear();
        Ok(revoked)
    }
}

/// A new API key with `scopes`: the record to store and the secret to show
/// once.
pub fn new_api_key(name: &str, scopes: &[ApiKeyScope], now: Timestamp) -> (ApiKeyRecord, SecretToken) {
    let secret = SecretToken::generate(TokenKind::ApiKey);
    let rec = ApiKeyRecord {
        id: secret::new_id(API_KEY_ID_PREFIX),
        name: name.to_owned(),
        hash: secret.hash(),
        created_at: now,
        revoked_at: None,
        scopes: ApiKeyScope::normalize(scopes.to_vec()),
    };
    (rec, secret)
}

/// Creates and stores a new API key; returns its record and the secret.
pub async fn create_api_key(
    store: &dyn ApiKeyStore,
    name: &str,
    scopes: &[ApiKeyScope],
    now: Timestamp,
) -> StoreResult<(ApiKeyRecord, SecretToken)> {
    let (rec, secret) = new_api_key(name, scopes, now);
    store.insert_api_key(&rec).await?;
    Ok((rec, secret))
}

#[cfg(test)]
mod tests;

/// The key in `Authorization: Bearer …`.
fn presented_key(value: &[u8]) -> Result<&[u8], ApiError> {
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(ApiError::Unauthorized("the API key is not valid"));
    }
    match value.split_first_chunk::<7>() {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"Bearer ") => Ok(rest.trim_ascii()),
        _ => Err(ApiError::Unauthorized("the Authorization scheme must be Bearer")),
    }
}
