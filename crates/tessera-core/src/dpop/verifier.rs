//! [`DpopVerifier`]: a proof check with its state — the `jti` replay cache
//! and, when the deployment asks for them, server nonces.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use aws_lc_rs::digest;

use super::{CheckedProof, DpopError, DpopPolicy, NonceIssuer, ProofRequest, check_proof};
use crate::store::{ReplayStore, StoreError, StoreResult};
use crate::time::{Clock, Timestamp};

/// Checks proofs for one side (the token endpoint, or a resource server).
#[derive(Clone)]
pub struct DpopVerifier {
    policy: Arc<DpopPolicy>,
    replay: Arc<dyn ReplayStore>,
    nonces: Option<NonceIssuer>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("policy", &self.policy)
            .field("nonces", &self.nonces)
            .finish_non_exhaustive()
    }
}

impl DpopVerifier {
    /// `replay` holds the `jti`s seen: the shared store at the token
    /// endpoint (so a proof is used once across every node), a
    /// [`BoundedReplayCache`] at a resource server.
    pub fn new(policy: DpopPolicy, replay: Arc<dyn ReplayStore>, clock: Arc<dyn Clock>) -> DpopVerifier {
        DpopVerifier {
            policy: Arc::new(policy),
            replay,
            nonces: None,
            clock,
        }
    }

    /// Requires a fresh server nonce in every proof.
    #[must_use]
    pub fn with_nonces(mut self, nonces: NonceIssuer) -> DpopVerifier {
        self.nonces = Some(nonces);
        self
    }

    pub fn policy(&self) -> &DpopPolicy {
        &self.policy
    }

    /// A fresh nonce to send in `DPoP-Nonce`, when nonces are required.
    pub fn fresh_nonce(&self) -> Option<String> {
        self.nonces.as_ref().map(|n| n.issue(self.clock.now()))
    }

    /// The stateless checks ([`check_proof`]) and the nonce. A caller that
    /// has more to check before the proof counts as used (a resource
    /// server comparing `jkt` with the token's `cnf`) does so, then calls
    /// [`record`](Self::record).
    pub fn check(&self, proof: &str, req: &ProofRequest<'_>) -> Result<CheckedProof, DpopError> {
        let now = self.clock.now();
        let checked = check_proof(proof, req, &self.policy, now)?;
        if let Some(nonces) = &self.nonces {
            match checked.nonce.as_deref() {
                Some(n) if nonces.is_fresh(n, now) => {}
                _ => return Err(DpopError::UseNonce),
            }
        }
        Ok(checked)
    }

    /// Records the proof's `jti` as used; [`DpopError::Replayed`] if it was
    /// already (RFC 9449 §11.1). Kept until the proof would be too old
    /// anyway.
    pub async fn record(&self, proof: &CheckedProof) -> Result<(), DpopError> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"tessera dpop jti\0");
        ctx.update(proof.jkt.as_bytes());
        ctx.update(b"\0");
        ctx.update(proof.jti.as_bytes());
        let mut marker = [0u8; 32];
        marker.copy_from_slice(ctx.finish().as_ref());
        let expires = Timestamp::from_unix_millis(
            proof
                .iat
                .saturating_add(self.policy.max_age_secs)
                .saturating_add(1)
                .saturating_mul(1000),
        );
        match self.replay.use_once(&marker, expires, self.clock.now()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(DpopError::Replayed),
            Err(e) => Err(DpopError::Unavailable(e.to_string())),
        }
    }

    /// [`check`](Self::check), then [`record`](Self::record).
    pub async fn verify(&self, proof: &str, req: &ProofRequest<'_>) -> Result<CheckedProof, DpopError> {
        let checked = self.check(proof, req)?;
        self.record(&checked).await?;
        Ok(checked)
    }

    /// Deletes expired `jti`s from the replay store, `batch` at a time
    /// (the sweeper's round).
    pub async fn sweep(&self, batch: u32) -> StoreResult<u64> {
        let batch = batch.max(1);
        let mut total = 0u64;
        loop {
            let n = self.replay.sweep_markers(self.clock.now(), batch).await?;
            total += u64::from(n);
            if n < batch {
                return Ok(total);
            }
        }
    }
}

/// An in-process replay cache with a fixed capacity, for resource servers
/// that have no store (the library) or should not write to it per request.
/// Expired entries are dropped when the cache fills; if it is still full, a
/// proof is refused with [`StoreError::Unavailable`] (a 503 at the edge)
/// rather than accepted unchecked or an unexpired entry forgotten.
#[derive(Debug)]
pub struct BoundedReplayCache {
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    entries: HashMap<[u8; 32], Timestamp>,
    /// When a full cache was last scanned for expired entries: at most once
    /// a second, so a flood against a full cache costs a lookup per proof,
    /// not a scan of a million entries.
    purged_at: Option<Timestamp>,
}

impl BoundedReplayCache {
    /// About 80 bytes per entry: the default 1 000 000 is ~80 MB at most,
    /// and holds 16 000 proofs a second over a 61-second window.
    pub const DEFAULT_CAPACITY: usize = 1_000_000;

    pub fn new(capacity: usize) -> BoundedReplayCache {
        BoundedReplayCache {
            capacity: capacity.max(1),
            seen: Mutex::new(Seen::default()),
        }
    }

    pub fn len(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ReplayStore for BoundedReplayCache {
    async fn use_once(&self, marker: &[u8; 32], expires_at: Timestamp, now: Timestamp) -> StoreResult<bool> {
        let mut guard = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = &mut *guard;
        if seen.entries.get(marker).is_some_and(|until| now < *until) {
            return Ok(false);
        }
        if seen.entries.len() >= self.capacity && !seen.entries.contains_key(marker) {
            if seen.purged_at.is_none_or(|at| now.millis_since(at) >= 1000) {
                seen.purged_at = Some(now);
                seen.entries.retain(|_, until| now < *until);
            }
            if seen.entries.len() >= self.capacity {
                return Err(StoreError::Unavailable(String::from("DPoP replay cache is full")));
            }
        }
        seen.entries.insert(*marker, expires_at);
        Ok(true)
    }

    async fn sweep_markers(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        let mut guard = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = &mut guard.entries;
        let before = seen.len();
        let mut left = batch as usize;
        seen.retain(|_, until| {
            if left > 0 && *until <= now {
                left -= 1;
                false
            } else {
                true
            }
        });
        Ok(u32::try_from(before - seen.len()).unwrap_or(u32::MAX))
    }
}
