//! The resource layer's verification: the cache of verified tokens and the
//! revocation set around core's access-token verifier
//! (`tessera_core::access::verify`), which does every token check.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tessera_core::access::{self, AccessClaims};

use super::cache::Checked;
use super::error::VerifyError;
use super::{Inner, read};

/// A verified access token: its claims and its scopes, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The claims.
    pub claims: AccessClaims,
    /// `scope`, split on spaces.
    pub scopes: Vec<String>,
}

impl VerifiedToken {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// The verification (see the module docs for the order of the checks).
pub(crate) fn verify(inner: &Inner, token: &str) -> Result<Arc<VerifiedToken>, VerifyError> {
    inner.check_feed()?;
    let cache_key = inner.cache.key(token);
    // Fast path: a token verified before. Expiry and revocation are checked
    // again on every hit.
    if let Some(key) = cache_key
        && let Some(Some(result)) = inner.cache.with_hit(key, token, |entry| {
            // Verified with a key set that has lost a key since: verify
            // again against the current one.
            if entry.keys_removed != inner.keys_removed.load(Ordering::Acquire) {
                return None;
            }
            if inner.expected().is_expired(entry.exp, inner.now()) {
                return Some(Err(VerifyError::Expired));
            }
            let epoch = inner.revocations.epoch();
            if entry.epoch() != epoch {
                if inner.revocations.is_revoked(&entry.verified.claims.sid) {
                    return Some(Err(VerifyError::Revoked));
                }
                entry.set_epoch(epoch);
            }
            Some(Ok(Arc::clone(&entry.verified)))
        })
    {
        return result;
    }
    first_sight(inner, token, cache_key)
}

fn first_sight(
    inner: &Inner,
    token: &str,
    cache_key: Option<u64>,
) -> Result<Arc<VerifiedToken>, VerifyError> {
    // The removal generation is read before the keys (see `install_keys`).
    let keys_removed = inner.keys_removed.load(Ordering::Acquire);
    let keys = Arc::clone(&*read(&inner.keys));
    let claims = access::verify(token, &*keys, &inner.expected(), &*inner.clock)?;

    // Revocation. The epoch is read before the lookup, so the cache entry
    // never claims a check newer than the one made.
    let epoch = inner.revocations.epoch();
    if inner.revocations.is_revoked(&claims.sid) {
        return Err(VerifyError::Revoked);
    }

    let scopes = claims
        .scope
        .as_deref()
        .map(|s| {
            s.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let exp = claims.exp;
    let verified = Arc::new(VerifiedToken { claims, scopes });
    if let Some(cache_key) = cache_key {
        inner.cache.insert(
            cache_key,
            token,
            Arc::clone(&verified),
            exp,
            Checked { epoch, keys_removed },
            inner.now().saturating_sub(inner.leeway),
        );
    }
    Ok(verified)
}
