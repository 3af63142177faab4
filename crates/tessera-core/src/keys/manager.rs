//! [`KeyManager`]: the signing keys of one issuer over a shared store —
//! first start, rotation, revocation, reload, publication and pruning.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::Value;
use zeroize::Zeroizing;

use super::pkcs8::generate_pkcs8;
use super::schedule::{LoadedKey, Schedule, Snapshot, key_order};
use super::{ActiveSigner, KeyError, KeyInfo, KeyPolicy, KeyState, PublishedKeys};
use crate::access::VerifyKey;
use crate::model::SigningKeyRecord;
use crate::seal::Sealer;
use crate::store::SigningKeyStore;
use crate::time::{Clock, Timestamp};

/// Attempts of [`KeyManager::rotate`] against concurrent rotations.
const ROTATE_ATTEMPTS: usize = 5;

/// Signing keys of one issuer over a shared store.
pub struct KeyManager {
    store: Arc<dyn SigningKeyStore>,
    clock: Arc<dyn Clock>,
    sealer: Arc<Sealer>,
    policy: KeyPolicy,
    snapshot: RwLock<Arc<Snapshot>>,
    reloads: AtomicU64,
}

impl fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager")
            .field("policy", &self.policy)
            .field("keys", &self.snapshot().keys.len())
            .finish_non_exhaustive()
    }
}

impl KeyManager {
    /// A manager with an empty snapshot: call [`ensure_key`](Self::ensure_key)
    /// (or [`reload`](Self::reload)) before signing. `policy` should have
    /// passed [`KeyPolicy::validate`].
    pub fn new(
        store: Arc<dyn SigningKeyStore>,
        clock: Arc<dyn Clock>,
        sealer: Arc<Sealer>,
        policy: KeyPolicy,
    ) -> KeyManager {
        KeyManager {
            store,
            clock,
            sealer,
            policy,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            reloads: AtomicU64::new(0),
        }
    }

    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn schedule<'a>(&self, activates: &'a [Timestamp], now: Timestamp) -> Schedule<'a> {
        Schedule {
            activates,
            now,
            keep_secs: self.policy.retired_key_publish_secs(),
        }
    }

    /// First start: loads the keys and, if the store has none, adds one that
    /// signs from now. Another process winning that race is fine: its key is
    /// loaded instead. Returns the `kid` this call created, if any. Fails
    /// (rather than adding a key) when stored keys do not decrypt.
    pub async fn ensure_key(&self) -> Result<Option<String>, KeyError> {
        self.reload().await?;
        let snap = self.snapshot();
        if !snap.keys.is_empty() {
            return Ok(None);
        }
        if !snap.revoked.is_empty() {
            // Every stored key was revoked: the compare-and-set below
            // (only into an empty store) cannot add one.
            return self.replace_revoked().await;
        }
        let now = self.clock.now();
        let record = self.new_record(now, now)?;
        let added = self.store.insert_signing_key(&record, None).await?;
        self.reload().await?;
        Ok(added.then_some(record.kid))
    }

    /// Adds the next key when the newest one is due for succession (see the
    /// module docs), and refreshes the snapshot either way. Returns the new
    /// `kid` if this call added it; `None` when not due or another process
    /// added it first.
    pub async fn rotate_if_due(&self) -> Result<Option<String>, KeyError> {
        let seq = self.next_seq();
        let records = self.store.signing_keys().await?;
        // The schedule follows the usable keys; the compare-and-set names
        // the newest stored key, revoked or not, and the new key is ordered
        // after it, so concurrent rotations still add exactly one.
        let Some(newest) = records.iter().max_by(|a, b| key_order(a, b)) else {
            return self.ensure_key().await;
        };
        let Some(newest_usable) = records
            .iter()
            .filter(|r| r.revoked_at.is_none())
            .max_by(|a, b| key_order(a, b))
        else {
            // Only revoked keys: sign with a fresh one at once.
            self.install(seq, records)?;
            return self.replace_revoked().await;
        };
        let now = self.clock.now();
        let lead = self
            .policy
            .rotation_interval_secs
            .saturating_sub(self.policy.prepublish_secs);
        if now < newest_usable.activates_at.plus_secs(lead) {
            self.install(seq, records)?;
            return Ok(None);
        }
        let activates = newest_usable
            .activates_at
            .plus_secs(self.policy.rotation_interval_secs)
            .max(now.plus_secs(self.policy.prepublish_secs))
            .max(newest.activates_at.plus_millis(1));
        let record = self.new_record(now, activates)?;
        let added = self.store.insert_signing_key(&record, Some(&newest.kid)).await?;
        self.reload().await?;
        if added {
            tracing::info!(kid = %record.kid, alg = record.alg.as_str(), activates_at = %activates, "signing key rotated");
        }
        Ok(added.then_some(record.kid))
    }

    /// Adds a key that signs at once when every stored key is revoked,
    /// unless another process sharing the store did so first: one
    /// compare-and-set naming the newest revoked key, ordered after it, so
    /// nodes starting together on such a store add one key between them
    /// (`rotate` would retry and add one each). Returns the `kid` this call
    /// added, if any.
    async fn replace_revoked(&self) -> Result<Option<String>, KeyError> {
        for _ in 0..ROTATE_ATTEMPTS {
            let seq = self.next_seq();
            let records = self.store.signing_keys().await?;
            if records.iter().any(|r| r.revoked_at.is_none()) {
                self.install(seq, records)?;
                return Ok(None);
            }
            let newest = records.iter().max_by(|a, b| key_order(a, b));
            let now = self.clock.now();
            let activates = newest.map_or(now, |n| now.max(n.activates_at.plus_millis(1)));
            let record = self.new_record(now, activates)?;
            if self
                .store
                .insert_signing_key(&record, newest.map(|n| n.kid.as_str()))
                .await?
            {
                tracing::warn!(kid = %record.kid, alg = record.alg.as_str(), "every signing key was revoked; added one that signs at once");
                self.reload().await?;
                return Ok(Some(record.kid));
            }
        }
        Err(KeyError::Conflict)
    }

    /// Operator rotation: adds a key of the configured algorithm that signs
    /// `activate_in_secs` from now (0: at once — an emergency, when the
    /// current key may be compromised; verifiers with a cached JWKS then
    /// meet an unknown `kid` and must refetch). Returns its `kid`.
    pub async fn rotate(&self, activate_in_secs: i64) -> Result<String, KeyError> {
        self.rotate_replacing(activate_in_secs, None).await
    }

    /// [`rotate`](Self::rotate) for the replacement of `replacing`, which
    /// is about to be revoked: a tie with it does not count (it leaves the
    /// schedule), so a replacement due at once signs at once even in the
    /// millisecond `replacing` activated.
    async fn rotate_replacing(
        &self,
        activate_in_secs: i64,
        replacing: Option<&str>,
    ) -> Result<String, KeyError> {
        if activate_in_secs < 0 {
            return Err(KeyError::InvalidPolicy(String::from(
                "a key cannot activate in the past",
            )));
        }
        let now = self.clock.now();
        let target = now.plus_secs(activate_in_secs);
        let mut record = self.new_record(now, target)?;
        for _ in 0..ROTATE_ATTEMPTS {
            let records = self.store.signing_keys().await?;
            // A key activating in the same millisecond as another would be
            // ordered against it by `kid` alone; step past it so the new
            // key does sign from its activation. Revoked keys (and the one
            // being replaced) are outside the schedule: a tie with them
            // orders nothing.
            record.activates_at = target;
            while records.iter().any(|r| {
                r.activates_at == record.activates_at
                    && r.revoked_at.is_none()
                    && Some(r.kid.as_str()) != replacing
            }) {
                record.activates_at = record.activates_at.plus_millis(1);
            }
            let newest = records
                .iter()
                .max_by(|a, b| key_order(a, b))
                .map(|r| r.kid.as_str());
            if self.store.insert_signing_key(&record, newest).await? {
                tracing::info!(kid = %record.kid, alg = record.alg.as_str(), activates_at = %record.activates_at, "signing key rotated by operator");
                self.reload().await?;
                return Ok(record.kid);
            }
        }
        Err(KeyError::Conflict)
    }

    /// Emergency withdrawal of a compromised key (`tessera keys revoke`): see
    /// the module docs. When `kid` signs now, a fresh key that signs at once
    /// is added *before* the revocation, so no process sharing the store is
    /// ever left without a key to sign with; its `kid` is returned. The
    /// snapshot of this process is reloaded before returning.
    pub async fn revoke(&self, kid: &str) -> Result<Option<String>, KeyError> {
        self.reload().await?;
        let record = self
            .store
            .signing_keys()
            .await?
            .into_iter()
            .find(|r| r.kid == kid)
            .ok_or_else(|| KeyError::UnknownKey(kid.to_owned()))?;
        if record.revoked_at.is_some() {
            return Err(KeyError::AlreadyRevoked(kid.to_owned()));
        }
        let signs_now = self.signer().is_ok_and(|s| s.kid == kid);
        let replacement = if signs_now {
            Some(self.rotate_replacing(0, Some(kid)).await?)
        } else {
            None
        };
        let revoked = self.store.revoke_signing_key(kid, self.clock.now()).await?;
        self.reload().await?;
        if !revoked {
            return Err(KeyError::AlreadyRevoked(kid.to_owned()));
        }
        tracing::warn!(%kid, replaced_by = replacement.as_deref(), "signing key revoked");
        Ok(replacement)
    }

    /// Re-reads the keys from the store into the snapshot. Keys already in
    /// the snapshot are reused; new ones are decrypted and parsed once here.
    /// On error the previous snapshot stays in place.
    pub async fn reload(&self) -> Result<(), KeyError> {
        let seq = self.next_seq();
        let records = self.store.signing_keys().await?;
        self.install(seq, records)
    }

    fn next_seq(&self) -> u64 {
        self.reloads.fetch_add(1, Ordering::SeqCst).saturating_add(1)
    }

    /// Builds a snapshot from `records` (read after ticket `seq` was taken)
    /// and installs it unless a later read has been installed meanwhile.
    fn install(&self, seq: u64, mut records: Vec<SigningKeyRecord>) -> Result<(), KeyError> {
        records.sort_by(key_order);
        let (mut revoked, records): (Vec<_>, Vec<_>) =
            records.into_iter().partition(|r| r.revoked_at.is_some());
        for r in &mut revoked {
            r.private_sealed = Vec::new();
        }
        let old = self.snapshot();
        let mut keys = Vec::with_capacity(records.len());
        for record in records {
            let reuse = old.keys.iter().find(|k| {
                k.signer.kid == record.kid
                    && k.signer.alg == record.alg
                    && k.activates_at == record.activates_at
                    && k.sealed == record.private_sealed
            });
            match reuse {
                Some(k) => keys.push(Arc::clone(k)),
                None => keys.push(Arc::new(self.load(record)?)),
            }
        }
        let mut slot = self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.seq < seq {
            *slot = Arc::new(Snapshot { seq, keys, revoked });
        }
        Ok(())
    }

    fn load(&self, record: SigningKeyRecord) -> Result<LoadedKey, KeyError> {
        let pkcs8 = Zeroizing::new(
            self.sealer
                .open(&record.private_sealed, record.kid.as_bytes())
                .map_err(|_| KeyError::Seal {
                    kid: record.kid.clone(),
                })?,
        );
        let signer = ActiveSigner::from_pkcs8(record.kid, record.alg, &pkcs8)?;
        let jwk = signer.public_jwk_json();
        let (_, verify) = VerifyKey::from_jwk(&jwk).map_err(|reason| KeyError::BadKey {
            kid: signer.kid.clone(),
            reason: reason.to_owned(),
        })?;
        Ok(LoadedKey {
            created_at: record.created_at,
            activates_at: record.activates_at,
            sealed: record.private_sealed,
            signer: Arc::new(signer),
            jwk,
            verify: Arc::new(verify),
        })
    }

    /// A new key of the policy's algorithm, sealed, as a store record.
    fn new_record(
        &self,
        created_at: Timestamp,
        activates_at: Timestamp,
    ) -> Result<SigningKeyRecord, KeyError> {
        let alg = self.policy.alg;
        let pkcs8 = generate_pkcs8(alg)?;
        let signer = ActiveSigner::parse(None, alg, &pkcs8)?;
        let public_jwk = serde_json::to_string(signer.public_jwk()).map_err(|e| KeyError::BadKey {
            kid: signer.kid.clone(),
            reason: e.to_string(),
        })?;
        Ok(SigningKeyRecord {
            private_sealed: self.sealer.seal(&pkcs8, signer.kid.as_bytes()),
            kid: signer.kid.clone(),
            alg,
            created_at,
            activates_at,
            public_jwk,
            revoked_at: None,
        })
    }

    /// The key to sign with now: the newest key with `activates_at <= now`
    /// in the snapshot. No store I/O.
    pub fn signer(&self) -> Result<Arc<ActiveSigner>, KeyError> {
        let snap = self.snapshot();
        let now = self.clock.now();
        snap.keys
            .iter()
            .rev()
            .find(|k| k.activates_at <= now)
            .map(|k| Arc::clone(&k.signer))
            .ok_or(KeyError::NoActiveKey)
    }

    /// Published keys in snapshot order with the index of the active one.
    fn published(&self) -> Vec<Arc<LoadedKey>> {
        let snap = self.snapshot();
        let activates: Vec<Timestamp> = snap.keys.iter().map(|k| k.activates_at).collect();
        let sched = self.schedule(&activates, self.clock.now());
        let active = sched.active();
        // The signing key first (for verifiers that take the first key),
        // then the rest newest first.
        active
            .into_iter()
            .chain((0..snap.keys.len()).rev().filter(|&i| Some(i) != active))
            .filter(|&i| sched.published(i))
            .filter_map(|i| snap.keys.get(i).cloned())
            .collect()
    }

    /// The JWKS document, `{"keys":[…]}`: pending, active, and retired keys
    /// whose tokens may still be valid. Public members only.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.published().iter().map(|k| k.jwk.clone()).collect();
        serde_json::json!({ "keys": keys })
    }

    /// The same keys as [`jwks`](Self::jwks), as the access-token verifier's
    /// key source (`access::verify`). No store I/O, no allocation.
    pub fn verification_keys(&self) -> PublishedKeys {
        PublishedKeys {
            snapshot: self.snapshot(),
            now: self.clock.now(),
            keep_secs: self.policy.retired_key_publish_secs(),
        }
    }

    /// Deletes the keys the JWKS no longer lists (from a fresh read of the
    /// store) and returns the `kid`s this call deleted. The newest key is
    /// never among them.
    pub async fn prune(&self) -> Result<Vec<String>, KeyError> {
        let mut records = self.store.signing_keys().await?;
        // Revoked keys stay as a record of the withdrawal.
        records.retain(|r| r.revoked_at.is_none());
        records.sort_by(key_order);
        let activates: Vec<Timestamp> = records.iter().map(|r| r.activates_at).collect();
        let sched = self.schedule(&activates, self.clock.now());
        let mut deleted = Vec::new();
        for (i, record) in records.iter().enumerate() {
            if !sched.published(i) && self.store.delete_signing_key(&record.kid).await? {
                tracing::info!(kid = %record.kid, "retired signing key deleted");
                deleted.push(record.kid.clone());
            }
        }
        self.reload().await?;
        Ok(deleted)
    }

    /// Every key in the snapshot, revoked ones included, oldest
    /// (`activates_at`, `kid`) first, with its state now.
    pub fn list(&self) -> Vec<KeyInfo> {
        let snap = self.snapshot();
        let activates: Vec<Timestamp> = snap.keys.iter().map(|k| k.activates_at).collect();
        let sched = self.schedule(&activates, self.clock.now());
        let mut out: Vec<KeyInfo> = snap
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| KeyInfo {
                kid: k.signer.kid.clone(),
                alg: k.signer.alg,
                created_at: k.created_at,
                activates_at: k.activates_at,
                retires_at: sched.retires_at(i),
                state: sched.state(i),
                published: sched.published(i),
                revoked_at: None,
            })
            .chain(snap.revoked.iter().map(|r| KeyInfo {
                kid: r.kid.clone(),
                alg: r.alg,
                created_at: r.created_at,
                activates_at: r.activates_at,
                retires_at: None,
                state: KeyState::Revoked,
                published: false,
                revoked_at: r.revoked_at,
            }))
            .collect();
        out.sort_by(|a, b| (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid)));
        out
    }
}
