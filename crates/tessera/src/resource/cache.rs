//! The cache of already-verified tokens.
//!
//! Sharded `RwLock<HashMap>`s. The map key is a keyed (per-process random)
//! SipHash of the token's length and its last 64 bytes — the signature, so
//! cheap to hash and well spread — and every hit compares the **whole** token
//! byte for byte, so two tokens that share a tail (e.g. a forged payload with
//! a copied signature) never share an entry. A hit allocates nothing: it
//! clones an `Arc`.
//!
//! Eviction is deliberately simple: a full shard first drops expired entries
//! (at most once a second), then one arbitrary entry.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::verify::VerifiedToken;
use super::{read, write};

const SHARDS: usize = 16;
/// Bytes of the token's tail that are hashed.
const HASHED_TAIL: usize = 64;

pub(crate) struct Entry {
    token: Box<str>,
    pub(crate) verified: Arc<VerifiedToken>,
    pub(crate) exp: i64,
    /// The revocation-set epoch at which `sid` was last found not revoked.
    pub(crate) checked_epoch: AtomicU64,
    /// `Inner::keys_removed` when the signature was verified.
    pub(crate) keys_removed: u64,
}

/// What a verification checked its token against.
pub(crate) struct Checked {
    /// The revocation-set epoch.
    pub(crate) epoch: u64,
    /// `Inner::keys_removed` when the key set was read.
    pub(crate) keys_removed: u64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<u64, Entry, BuildHasherDefault<IdentityHasher>>,
    last_purge: i64,
}

pub(crate) struct TokenCache {
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        let shards = if capacity == 0 {
            Box::default()
        } else {
            (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect()
        };
        Self {
            shards,
            per_shard,
            hasher: RandomState::new(),
        }
    }

    /// The map key of `token`; `None` when the cache is disabled. Computed
    /// once per verification and passed to both the lookup and the insert.
    #[inline]
    pub(crate) fn key(&self, token: &str) -> Option<u64> {
        if self.shards.is_empty() {
            return None;
        }
        let bytes = token.as_bytes();
        let mut h = self.hasher.build_hasher();
        h.write_usize(bytes.len());
        h.write(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..]);
        Some(h.finish())
    }

    #[inline]
    fn shard(&self, key: u64) -> Option<&RwLock<Shard>> {
        // Bits the per-shard map does not use for bucket selection (low bits)
        // nor for its control bytes (top 7 bits).
        self.shards.get(((key >> 40) as usize) % SHARDS.max(1))
    }

    /// Runs `f` on the entry for exactly this token, under the shard's read
    /// lock. `key`: [`TokenCache::key`] of `token`.
    #[inline]
    pub(crate) fn with_hit<R>(&self, key: u64, token: &str, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let shard = read(self.shard(key)?);
        let entry = shard.map.get(&key)?;
        if *entry.token != *token {
            return None;
        }
        Some(f(entry))
    }

    /// Caches a verified token. `key`: [`TokenCache::key`] of `token`.
    /// `expired_before`: entries whose `exp` is before this may be dropped.
    pub(crate) fn insert(
        &self,
        key: u64,
        token: &str,
        verified: Arc<VerifiedToken>,
        exp: i64,
        checked: Checked,
        expired_before: i64,
    ) {
        let Some(lock) = self.shard(key) else { return };
        let mut shard = write(lock);
        if shard.map.len() >= self.per_shard && !shard.map.contains_key(&key) {
            if shard.last_purge != expired_before {
                shard.last_purge = expired_before;
                shard.map.retain(|_, e| e.exp >= expired_before);
            }
            if shard.map.len() >= self.per_shard
                && let Some(victim) = shard.map.keys().next().copied()
            {
                shard.map.remove(&victim);
            }
        }
        shard.map.insert(
            key,
            Entry {
                token: token.into(),
                verified,
                exp,
                checked_epoch: AtomicU64::new(checked.epoch),
                keys_removed: checked.keys_removed,
            },
        );
    }

    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            write(shard).map.clear();
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).map.len()).sum()
    }
}

impl Entry {
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.checked_epoch.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn set_epoch(&self, epoch: u64) {
        self.checked_epoch.store(epoch, Ordering::Relaxed);
    }
}

/// The map keys are already keyed SipHash outputs: hashing them again would
/// only cost time.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
