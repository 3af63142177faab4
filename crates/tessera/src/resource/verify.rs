//! The resource layer's verification: the cache of verified tokens and the
//! revocation set around core's access-token verifier
//! (`tessera_core::access::verify`), which does every token check.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tessera_core::access::{self, AccessClaims};
use tessera_core::dpop::{ProofHeader, Scheme};

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

/// What a request presents besides its access token, for
/// [`Verifier::verify_request`](super::Verifier::verify_request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceRequest<'a> {
    /// The `Authorization` scheme the token came with.
    pub scheme: Scheme,
    /// The request's `DPoP` header(s).
    pub proof: ProofHeader<'a>,
    /// The HTTP method, e.g. `GET`.
    pub method: &'a str,
    /// The request's path as the client sent it (a query is ignored).
    pub path: &'a str,
    /// The `Host` (or HTTP/2 `:authority`) of the request; read for a
    /// proof's `htu` only when no
    /// [`public_base_url`](super::VerifierConfig::public_base_url) is set.
    pub host: Option<&'a str>,
    /// base64url(SHA-256(DER)) of the TLS client certificate, as the TLS
    /// layer (or a trusted proxy) established it; see
    /// [`ClientCertThumbprint`](super::ClientCertThumbprint).
    pub client_cert: Option<&'a str>,
}

/// The verification (see the module docs for the order of the checks).
/// `accept_bound`: whether a sender-constrained token (`cnf`) may pass,
/// for a caller that checks its presentation next. The cache holds both
/// kinds, so a hit is held to the same rule.
pub(crate) fn verify(
    inner: &Inner,
    token: &str,
    accept_bound: bool,
) -> Result<Arc<VerifiedToken>, VerifyError> {
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
            if inner.expected(accept_bound).is_expired(entry.exp, inner.now()) {
                return Some(Err(VerifyError::Expired));
            }
            if !accept_bound && entry.verified.claims.cnf.is_some() {
                return Some(Err(VerifyError::SenderConstrained));
            }
            let epoch = inner.revocations.epoch();
            if entry.epoch() != epoch {
                if is_revoked(inner, &entry.verified.claims) {
                    return Some(Err(VerifyError::Revoked));
                }
                entry.set_epoch(epoch);
            }
            Some(Ok(Arc::clone(&entry.verified)))
        })
    {
        return result;
    }
    first_sight(inner, token, cache_key, accept_bound)
}

/// Whether the feed revoked the token's session, or, for a token without
/// one (a service client's own, `client_credentials`), its client.
fn is_revoked(inner: &Inner, claims: &access::AccessClaims) -> bool {
    inner.revocations.is_revoked(&claims.revocation_key())
}

fn first_sight(
    inner: &Inner,
    token: &str,
    cache_key: Option<u64>,
    accept_bound: bool,
) -> Result<Arc<VerifiedToken>, VerifyError> {
    // The removal generation is read before the keys (see `install_keys`).
    let keys_removed = inner.keys_removed.load(Ordering::Acquire);
    let keys = Arc::clone(&*read(&inner.keys));
    let claims = access::verify(token, &*keys, &inner.expected(accept_bound), &*inner.clock)?;

    // Revocation. The epoch is read before the lookup, so the cache entry
    // never claims a check newer than the one made.
    let epoch = inner.revocations.epoch();
    if is_revoked(inner, &claims) {
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
