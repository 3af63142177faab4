//! Access-token signing keys: generate, seal, publish, rotate, prune.
//!
//! Keys live in the store ([`SigningKeyRecord`]), private parts sealed with
//! the at-rest [`Sealer`] (AAD = `kid`), so every process sharing a store
//! signs with the same schedule. Each process keeps an in-memory snapshot
//! ([`KeyManager::reload`]); signing and the JWKS read only the snapshot and
//! the clock, never the store.
//!
//! **Schedule.** Keys are ordered by (`activates_at`, `kid`) — the same order
//! the store's compare-and-set uses. At any instant the signing key is the
//! newest one with `activates_at <= now`. A key is *pending* before it
//! activates, *active* while it signs, and *retired* once a newer key has
//! activated. Every key is published in the JWKS from its creation (so a new
//! key is known to verifiers `prepublish_secs` before it signs) until its
//! successor has been active for longer than `access_token_ttl + leeway`: by
//! then every token it signed has expired. After that [`KeyManager::prune`]
//! deletes it.
//!
//! **Rotation.** [`KeyManager::rotate_if_due`] adds one key when the newest
//! key is `rotation_interval - prepublish` old, activating it
//! `rotation_interval` after the newest (or `prepublish` from now, if later).
//! The insert is a compare-and-set on the newest `kid`, so N processes doing
//! this at once add exactly one key. Call it periodically (e.g. every minute):
//! it also refreshes the snapshot. [`KeyManager::rotate`] is the operator's
//! rotation (`tessera keys rotate`).
//!
//! **Revocation.** [`KeyManager::revoke`] is the emergency withdrawal of a
//! compromised key (`tessera keys revoke KID`): the store marks it revoked and
//! erases its private part, and from then on it neither signs nor appears in
//! the JWKS, so the tokens it signed fail every verification that reads the
//! key snapshot. If it was the signing key, a fresh key is added first that
//! signs at once, without pre-publication (verifiers meet an unknown `kid`
//! and refetch the JWKS). Other processes sharing the store follow at their
//! next reload. The revoked record stays in the store, so `keys list` shows
//! it; the schedule above ignores revoked keys.
//!
//! **`kid`** is the RFC 7638 SHA-256 JWK thumbprint, base64url: unique by
//! construction (no coordination between processes), stable, and checkable by
//! anyone holding the public key.
//!
//! **Algorithms.** EdDSA (Ed25519, PKCS#8 v1 — jsonwebtoken's
//! `Jwk::from_encoding_key` rejects v2), ES256 (P-256), RS256 (RSA 2048). The
//! store always holds PKCS#8; for RS256 the `EncodingKey` gets the inner
//! PKCS#1 `RSAPrivateKey`, which is what jsonwebtoken's aws-lc backend parses
//! (`RsaKeyPair::from_der`). Changing the configured algorithm takes effect at
//! the next rotation; existing keys keep theirs.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Serialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::model::{SigningAlg, SigningKeyRecord};
use crate::seal::Sealer;
use crate::store::{SessionStore, StoreError};
use crate::time::{Clock, Timestamp};

/// How signing keys are generated, rotated and published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Algorithm of newly generated keys.
    pub alg: SigningAlg,
    /// How long a key signs before the next one takes over (default 30 days).
    pub rotation_interval_secs: i64,
    /// How long a new key is published before it signs (default 1 day). The
    /// JWKS `Cache-Control: max-age` must be shorter than this.
    pub prepublish_secs: i64,
    /// Lifetime of access tokens (default 300 s): how long a retired key must
    /// stay published.
    pub access_token_ttl_secs: i64,
    /// Clock-skew allowance of verifiers (default 60 s), added to the above.
    pub leeway_secs: i64,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            alg: SigningAlg::EdDSA,
            rotation_interval_secs: 30 * 86_400,
            prepublish_secs: 86_400,
            access_token_ttl_secs: 300,
            leeway_secs: 60,
        }
    }
}

const TEN_YEARS_SECS: i64 = 10 * 366 * 86_400;

impl KeyPolicy {
    /// Checks the numbers make a schedule: `0 <= prepublish < rotation
    /// interval`, a TTL of 1 s – 1 day, a leeway of 0–60 s (JW-09).
    pub fn validate(&self) -> Result<(), KeyError> {
        let bad = |m: &str| Err(KeyError::InvalidPolicy(m.to_owned()));
        if !(60..=TEN_YEARS_SECS).contains(&self.rotation_interval_secs) {
            return bad("rotation_interval_secs must be between 60 and 10 years");
        }
        if self.prepublish_secs < 0 || self.prepublish_secs >= self.rotation_interval_secs {
            return bad("prepublish_secs must be >= 0 and < rotation_interval_secs");
        }
        if !(1..=86_400).contains(&self.access_token_ttl_secs) {
            return bad("access_token_ttl_secs must be between 1 and 86400");
        }
        if !(0..=60).contains(&self.leeway_secs) {
            return bad("leeway_secs must be between 0 and 60");
        }
        Ok(())
    }

    /// How long a retired key stays published after its successor activates.
    pub fn retired_key_publish_secs(&self) -> i64 {
        self.access_token_ttl_secs.saturating_add(self.leeway_secs)
    }
}

/// Failures of key management and signing.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sealed private key did not open: almost always a different
    /// `[keys] encryption_key` than the one the key was stored with.
    #[error("cannot decrypt signing key {kid}: wrong encryption key?")]
    Seal { kid: String },
    #[error("no active signing key")]
    NoActiveKey,
    #[error("no signing key {0}")]
    UnknownKey(String),
    #[error("signing key {0} is already revoked")]
    AlreadyRevoked(String),
    #[error("invalid key policy: {0}")]
    InvalidPolicy(String),
    /// A decrypted key does not parse as a key of its algorithm.
    #[error("signing key {kid} is unusable: {reason}")]
    BadKey { kid: String, reason: String },
    #[error("signing key generation failed")]
    Generate,
    #[error("cannot sign: {0}")]
    Sign(String),
    #[error("invalid claims: {0}")]
    InvalidClaims(&'static str),
    /// Other processes kept rotating while this one tried; try again.
    #[error("signing keys are being rotated concurrently; try again")]
    Conflict,
}

/// The private half, parsed once, ready to sign.
enum Prepared {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A parsed signing key: what signs access tokens.
pub struct ActiveSigner {
    pub kid: String,
    pub alg: SigningAlg,
    /// The key in jsonwebtoken's form (PKCS#8 for EdDSA/ES256, PKCS#1 for
    /// RS256), for callers that sign through `jsonwebtoken::encode`.
    pub key: EncodingKey,
    prepared: Prepared,
    jwk: Jwk,
}

impl fmt::Debug for ActiveSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveSigner")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// jsonwebtoken's name for an algorithm.
pub fn jwt_algorithm(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::EdDSA => Algorithm::EdDSA,
        SigningAlg::ES256 => Algorithm::ES256,
        SigningAlg::RS256 => Algorithm::RS256,
    }
}

#[derive(Serialize)]
struct JwsHeader<'a> {
    typ: &'a str,
    alg: &'static str,
    kid: &'a str,
}

impl ActiveSigner {
    /// A fresh key of `alg` that lives only in memory (tests, benches,
    /// embedded use without a store). `kid` is its JWK thumbprint.
    pub fn generate(alg: SigningAlg) -> Result<ActiveSigner, KeyError> {
        let pkcs8 = generate_pkcs8(alg)?;
        ActiveSigner::parse(None, alg, &pkcs8)
    }

    /// A signer from a PKCS#8 private key (v1 or v2 for Ed25519).
    pub fn from_pkcs8(
        kid: impl Into<String>,
        alg: SigningAlg,
        pkcs8: &[u8],
    ) -> Result<ActiveSigner, KeyError> {
        ActiveSigner::parse(Some(kid.into()), alg, pkcs8)
    }

    fn parse(kid: Option<String>, alg: SigningAlg, pkcs8: &[u8]) -> Result<ActiveSigner, KeyError> {
        let label = kid.clone().unwrap_or_else(|| String::from("(new)"));
        let bad = |reason: &str| KeyError::BadKey {
            kid: label.clone(),
            reason: reason.to_owned(),
        };
        let (prepared, key) = match alg {
            SigningAlg::EdDSA => {
                let kp = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| bad("not an Ed25519 PKCS#8 key"))?;
                // jsonwebtoken infers the curve from a 48-byte (v1) document.
                let v1 = kp
                    .to_pkcs8v1()
                    .map_err(|_| bad("cannot encode Ed25519 PKCS#8 v1"))?;
                let key = EncodingKey::from_ed_der(v1.as_ref());
                (Prepared::Ed(kp), key)
            }
            SigningAlg::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|_| bad("not a P-256 PKCS#8 key"))?;
                (Prepared::Ec(kp), EncodingKey::from_ec_der(pkcs8))
            }
            SigningAlg::RS256 => {
                let kp = RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| bad("not an RSA PKCS#8 key"))?;
                if kp.public_modulus_len() < 256 {
                    return Err(bad("RSA modulus shorter than 2048 bits"));
                }
                let pkcs1 =
                    rsa_pkcs1_from_pkcs8(pkcs8).ok_or_else(|| bad("malformed RSA PKCS#8 document"))?;
                (Prepared::Rsa(kp), EncodingKey::from_rsa_der(pkcs1))
            }
        };
        let mut jwk = Jwk::from_encoding_key(&key, jwt_algorithm(alg)).map_err(|e| bad(&e.to_string()))?;
        let kid = match kid {
            Some(kid) => kid,
            None => jwk
                .thumbprint(ThumbprintHash::SHA256)
                .map_err(|e| bad(&e.to_string()))?,
        };
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(ActiveSigner {
            kid,
            alg,
            key,
            prepared,
            jwk,
        })
    }

    /// jsonwebtoken's name for this key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        jwt_algorithm(self.alg)
    }

    /// The public JWK (`kid`, `alg`, `use: "sig"` and public members only).
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The public JWK as JSON.
    pub fn public_jwk_json(&self) -> Value {
        serde_json::to_value(&self.jwk).unwrap_or(Value::Null)
    }

    /// A raw JWS signature over `message` (Ed25519: 64 bytes; ES256: R‖S,
    /// 64 bytes; RS256: PKCS#1 v1.5, 256 bytes).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.prepared {
            Prepared::Ed(kp) => Ok(kp.sign(message).as_ref().to_vec()),
            Prepared::Ec(kp) => kp
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign(String::from("ECDSA signing failed"))),
            Prepared::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
                    .map_err(|_| KeyError::Sign(String::from("RSA signing failed")))?;
                Ok(sig)
            }
        }
    }

    /// A compact JWS with header `{"typ":typ,"alg":…,"kid":…}` over the JSON
    /// of `payload`. Signs with the key parsed at load time (jsonwebtoken's
    /// `encode` would re-parse the DER on every call).
    pub fn sign_jws<T: Serialize + ?Sized>(&self, typ: &str, payload: &T) -> Result<String, KeyError> {
        let header = serde_json::to_vec(&JwsHeader {
            typ,
            alg: self.alg.as_str(),
            kid: &self.kid,
        })
        .map_err(|e| KeyError::Sign(e.to_string()))?;
        let body = serde_json::to_vec(payload).map_err(|e| KeyError::Sign(e.to_string()))?;
        let mut out = String::with_capacity((header.len() + body.len()) * 4 / 3 + 350);
        URL_SAFE_NO_PAD.encode_string(&header, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&body, &mut out);
        let sig = self.sign(out.as_bytes())?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&sig, &mut out);
        Ok(out)
    }
}

/// A new private key of `alg` as PKCS#8 (v1) DER.
fn generate_pkcs8(alg: SigningAlg) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let rng = SystemRandom::new();
    let der = match alg {
        SigningAlg::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map_err(|_| KeyError::Generate)?
            .as_ref()
            .to_vec(),
        SigningAlg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError::Generate)?
            .as_ref()
            .to_vec(),
        SigningAlg::RS256 => {
            let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
            let der = kp.as_der().map_err(|_| KeyError::Generate)?;
            der.as_ref().to_vec()
        }
    };
    Ok(Zeroizing::new(der))
}

/// One DER TLV: (tag, contents, rest). Definite lengths up to 4 bytes.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (digits, after) = rest.split_at_checked(n)?;
        rest = after;
        digits.iter().fold(0usize, |l, &b| (l << 8) | usize::from(b))
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// `AlgorithmIdentifier` OID of rsaEncryption (1.2.840.113549.1.1.1).
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`
/// (SEQUENCE { INTEGER version, SEQUENCE { OID, NULL }, OCTET STRING }).
fn rsa_pkcs1_from_pkcs8(pkcs8: &[u8]) -> Option<&[u8]> {
    let (0x30, info, _) = der_tlv(pkcs8)? else {
        return None;
    };
    let (0x02, _version, rest) = der_tlv(info)? else {
        return None;
    };
    let (0x30, alg_id, rest) = der_tlv(rest)? else {
        return None;
    };
    let (0x06, oid, _) = der_tlv(alg_id)? else {
        return None;
    };
    if oid != RSA_ENCRYPTION_OID {
        return None;
    }
    let (0x04, key, _) = der_tlv(rest)? else {
        return None;
    };
    Some(key)
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not signing yet.
    Pending,
    /// The key signing now.
    Active,
    /// A newer key signs; published until its tokens have expired.
    Retired,
    /// Withdrawn by `tessera keys revoke`: never signs, never published.
    Revoked,
}

/// What `tessera keys list` shows. No key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: SigningAlg,
    pub created_at: Timestamp,
    pub activates_at: Timestamp,
    /// When the next key takes over (in the future while that key is
    /// pending); `None` for the newest key.
    pub retires_at: Option<Timestamp>,
    pub state: KeyState,
    /// Whether the JWKS lists it; an unpublished key is deleted by `prune`
    /// (a revoked one is kept as a record).
    pub published: bool,
    /// When it was revoked, for a [`KeyState::Revoked`] key.
    pub revoked_at: Option<Timestamp>,
}

struct LoadedKey {
    created_at: Timestamp,
    activates_at: Timestamp,
    sealed: Vec<u8>,
    signer: Arc<ActiveSigner>,
    jwk: Value,
}

/// An immutable view of the stored keys, oldest (`activates_at`, `kid`) first.
#[derive(Default)]
struct Snapshot {
    seq: u64,
    /// The usable keys: the schedule runs over these only.
    keys: Vec<Arc<LoadedKey>>,
    /// Revoked keys, as records without their (erased) private part.
    revoked: Vec<SigningKeyRecord>,
}

/// The schedule over keys sorted by (`activates_at`, `kid`); only their
/// activation instants matter.
struct Schedule<'a> {
    activates: &'a [Timestamp],
    now: Timestamp,
    keep_secs: i64,
}

impl Schedule<'_> {
    fn active(&self) -> Option<usize> {
        self.activates.iter().rposition(|&a| a <= self.now)
    }

    fn retires_at(&self, i: usize) -> Option<Timestamp> {
        self.activates.get(i.saturating_add(1)).copied()
    }

    fn state(&self, i: usize) -> KeyState {
        match (self.activates.get(i), self.retires_at(i)) {
            (Some(&a), _) if a > self.now => KeyState::Pending,
            (_, Some(r)) if r <= self.now => KeyState::Retired,
            _ => KeyState::Active,
        }
    }

    fn published(&self, i: usize) -> bool {
        self.retires_at(i)
            .is_none_or(|r| self.now <= r.plus_secs(self.keep_secs))
    }
}

fn key_order(a: &SigningKeyRecord, b: &SigningKeyRecord) -> std::cmp::Ordering {
    (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid))
}

/// Attempts of [`KeyManager::rotate`] against concurrent rotations.
const ROTATE_ATTEMPTS: usize = 5;

/// Signing keys of one issuer over a shared store.
pub struct KeyManager {
    store: Arc<dyn SessionStore>,
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
        store: Arc<dyn SessionStore>,
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
            return self.rotate(0).await.map(Some);
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
            return self.rotate(0).await.map(Some);
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

    /// Operator rotation: adds a key of the configured algorithm that signs
    /// `activate_in_secs` from now (0: at once — an emergency, when the
    /// current key may be compromised; verifiers with a cached JWKS then
    /// meet an unknown `kid` and must refetch). Returns its `kid`.
    pub async fn rotate(&self, activate_in_secs: i64) -> Result<String, KeyError> {
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
            // key does sign from its activation.
            record.activates_at = target;
            while records.iter().any(|r| r.activates_at == record.activates_at) {
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
            Some(self.rotate(0).await?)
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
        Ok(LoadedKey {
            created_at: record.created_at,
            activates_at: record.activates_at,
            sealed: record.private_sealed,
            signer: Arc::new(signer),
            jwk,
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

    /// The same keys as [`jwks`](Self::jwks), typed, for in-process verifiers.
    pub fn jwk_set(&self) -> JwkSet {
        JwkSet {
            keys: self
                .published()
                .iter()
                .map(|k| k.signer.public_jwk().clone())
                .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{AccessClaims, Audience, mint, new_jti};
    use crate::memory::MemoryStore;
    use crate::time::{ManualClock, SystemClock};
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
    use std::collections::HashSet;

    const ISS: &str = "https://issuer.test";
    const DAY: i64 = 86_400;

    struct Fixture {
        store: Arc<MemoryStore>,
        clock: ManualClock,
        sealer: Arc<Sealer>,
    }

    impl Fixture {
        fn new() -> Self {
            // Start at the real time so tokens pass jsonwebtoken's `exp` check.
            Fixture {
                store: Arc::new(MemoryStore::new()),
                clock: ManualClock::new(SystemClock.now()),
                sealer: Arc::new(Sealer::new(&Sealer::generate_key())),
            }
        }

        fn manager(&self, alg: SigningAlg) -> KeyManager {
            KeyManager::new(
                self.store.clone(),
                Arc::new(self.clock.clone()),
                self.sealer.clone(),
                KeyPolicy {
                    alg,
                    ..KeyPolicy::default()
                },
            )
        }
    }

    /// Claims valid by the real clock (jsonwebtoken checks `exp` against it).
    fn claims() -> AccessClaims {
        let now = SystemClock.now().unix_secs();
        AccessClaims {
            iss: ISS.into(),
            sub: "user-1".into(),
            aud: Audience::one("tessera"),
            exp: now + 300,
            iat: now,
            jti: new_jti(),
            client_id: "default".into(),
            sid: "ses_x".into(),
            scope: Some("read write".into()),
            auth_time: Some(now - 10),
            acr: Some("2".into()),
            amr: Some(vec!["pwd".into(), "otp".into()]),
            cnf: None,
        }
    }

    /// Verifies `token` the way a resource server does: key by `kid` from
    /// the JWKS, algorithm from the key, iss/aud/exp checked.
    fn verify(jwks: &Value, token: &str) -> Result<AccessClaims, String> {
        let header = decode_header(token).map_err(|e| e.to_string())?;
        let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| e.to_string())?;
        let kid = header.kid.ok_or("no kid")?;
        let jwk = set.find(&kid).ok_or("kid not in JWKS")?;
        let alg: Algorithm = match jwk.common.key_algorithm.ok_or("no alg")? {
            jsonwebtoken::jwk::KeyAlgorithm::EdDSA => Algorithm::EdDSA,
            jsonwebtoken::jwk::KeyAlgorithm::ES256 => Algorithm::ES256,
            jsonwebtoken::jwk::KeyAlgorithm::RS256 => Algorithm::RS256,
            other => return Err(format!("unexpected alg {other:?}")),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut v = Validation::new(alg);
        v.set_audience(&["tessera"]);
        v.set_issuer(&[ISS]);
        v.leeway = 60;
        decode::<AccessClaims>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }

    fn kids(jwks: &Value) -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    const ALGS: [SigningAlg; 3] = [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256];

    #[test]
    fn policy_default_is_valid_and_bad_ones_are_refused() {
        let p = KeyPolicy::default();
        p.validate().unwrap();
        assert_eq!(p.rotation_interval_secs, 30 * DAY);
        assert_eq!(p.prepublish_secs, DAY);
        assert_eq!(p.access_token_ttl_secs, 300);
        assert_eq!(p.leeway_secs, 60);
        for bad in [
            KeyPolicy {
                rotation_interval_secs: 0,
                ..p.clone()
            },
            KeyPolicy {
                prepublish_secs: -1,
                ..p.clone()
            },
            KeyPolicy {
                prepublish_secs: 30 * DAY,
                ..p.clone()
            },
            KeyPolicy {
                access_token_ttl_secs: 0,
                ..p.clone()
            },
            KeyPolicy {
                leeway_secs: 61,
                ..p.clone()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(KeyError::InvalidPolicy(_))),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn jw_14_every_alg_signs_at_jwt_that_verifies_with_its_jwks_key() {
        for alg in ALGS {
            let f = Fixture::new();
            let m = f.manager(alg);
            let kid = m.ensure_key().await.unwrap().expect("first start creates a key");
            let signer = m.signer().unwrap();
            assert_eq!(signer.kid, kid);
            assert_eq!(signer.alg, alg);
            let c = claims();
            let token = mint(&signer, &c).unwrap();
            let header = decode_header(&token).unwrap();
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(header.alg, jwt_algorithm(alg));
            assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
            // Raw header: exactly typ, alg, kid in that order.
            let raw = URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap();
            assert_eq!(
                String::from_utf8(raw).unwrap(),
                format!(r#"{{"typ":"at+jwt","alg":"{}","kid":"{kid}"}}"#, alg.as_str())
            );
            let jwks = m.jwks();
            assert_eq!(kids(&jwks), vec![kid.clone()]);
            assert_eq!(verify(&jwks, &token).unwrap(), c, "{alg:?}");
            // A flipped signature byte fails.
            let mut bad = token.clone().into_bytes();
            let last = bad.len() - 2;
            bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
            assert!(verify(&jwks, &String::from_utf8(bad).unwrap()).is_err());
            // The jsonwebtoken-form key signs too and verifies with the JWK
            // (RS256: proves the PKCS#8 → PKCS#1 conversion).
            let mut h = jsonwebtoken::Header::new(jwt_algorithm(alg));
            h.kid = Some(kid.clone());
            h.typ = Some("at+jwt".into());
            let via_lib = jsonwebtoken::encode(&h, &c, &signer.key).unwrap();
            assert_eq!(
                verify(&jwks, &via_lib).unwrap(),
                c,
                "{alg:?} via jsonwebtoken::encode"
            );
        }
    }

    #[tokio::test]
    async fn jw_19_jwks_has_public_members_only_and_unique_kids() {
        // One store, keys of all three algorithms (an operator who changed
        // `[keys] alg` twice).
        let f = Fixture::new();
        let mut seen = Vec::new();
        for (i, alg) in ALGS.into_iter().enumerate() {
            let m = f.manager(alg);
            if i == 0 {
                seen.push(m.ensure_key().await.unwrap().unwrap());
            } else {
                seen.push(m.rotate(3600).await.unwrap());
            }
        }
        let m = f.manager(SigningAlg::EdDSA);
        m.reload().await.unwrap();
        let jwks = m.jwks();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 3);
        let mut unique = HashSet::new();
        for k in keys {
            let obj = k.as_object().unwrap();
            for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
                assert!(!obj.contains_key(private), "private member {private} in {k}");
            }
            assert_eq!(k["use"], "sig");
            assert!(
                ["EdDSA", "ES256", "RS256"].contains(&k["alg"].as_str().unwrap()),
                "{k}"
            );
            let kid = k["kid"].as_str().unwrap();
            assert!(unique.insert(kid.to_owned()), "duplicate kid {kid}");
            // kid = RFC 7638 thumbprint of the public key.
            let jwk: Jwk = serde_json::from_value(k.clone()).unwrap();
            assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256).unwrap(), kid);
            let kty = k["kty"].as_str().unwrap();
            let expected: &[&str] = match kty {
                "OKP" => &["kty", "crv", "x", "kid", "alg", "use"],
                "EC" => &["kty", "crv", "x", "y", "kid", "alg", "use"],
                "RSA" => &["kty", "n", "e", "kid", "alg", "use"],
                other => panic!("kty {other}"),
            };
            let mut got: Vec<&str> = obj.keys().map(String::as_str).collect();
            let mut want = expected.to_vec();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{k}");
        }
        seen.sort();
        let mut listed: Vec<String> = unique.into_iter().collect();
        listed.sort();
        assert_eq!(listed, seen);
        // The stored public JWK is the published one.
        for r in f.store.signing_keys().await.unwrap() {
            let stored: Value = serde_json::from_str(&r.public_jwk).unwrap();
            assert!(keys.contains(&stored), "{stored}");
        }
    }

    #[tokio::test]
    async fn jw_20_rotation_schedule_prepublish_switch_retire_prune() {
        let f = Fixture::new();
        let m = f.manager(SigningAlg::EdDSA);
        let t0 = f.clock.now();
        let k1 = m.ensure_key().await.unwrap().unwrap();
        assert_eq!(m.ensure_key().await.unwrap(), None, "idempotent");
        assert_eq!(m.rotate_if_due().await.unwrap(), None);

        // Not due one second before rotation_interval - prepublish.
        f.clock.set(t0.plus_secs(29 * DAY - 1));
        assert_eq!(m.rotate_if_due().await.unwrap(), None);
        f.clock.set(t0.plus_secs(29 * DAY));
        let k2 = m.rotate_if_due().await.unwrap().expect("due");
        assert_eq!(m.rotate_if_due().await.unwrap(), None, "one rotation per period");
        let k1_token = mint(&m.signer().unwrap(), &claims()).unwrap();

        // Pre-publication: K2 is in the JWKS a day before it signs.
        assert_eq!(m.signer().unwrap().kid, k1);
        assert_eq!(kids(&m.jwks()), vec![k1.clone(), k2.clone()], "active key first");
        let list = m.list();
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[0].kid.as_str(), list[0].state),
            (k1.as_str(), KeyState::Active)
        );
        assert_eq!(list[0].retires_at, Some(t0.plus_secs(30 * DAY)));
        assert_eq!(
            (list[1].kid.as_str(), list[1].state),
            (k2.as_str(), KeyState::Pending)
        );
        assert_eq!(list[1].activates_at, t0.plus_secs(30 * DAY));
        assert_eq!(list[1].retires_at, None);

        // Switch exactly at activation.
        f.clock.set(t0.plus_secs(30 * DAY).plus_millis(-1));
        assert_eq!(m.signer().unwrap().kid, k1);
        f.clock.set(t0.plus_secs(30 * DAY));
        assert_eq!(m.signer().unwrap().kid, k2);
        let k2_token = mint(&m.signer().unwrap(), &claims()).unwrap();
        let jwks = m.jwks();
        assert_eq!(kids(&jwks), vec![k2.clone(), k1.clone()]);
        verify(&jwks, &k1_token).unwrap();
        verify(&jwks, &k2_token).unwrap();
        assert_eq!(m.list()[0].state, KeyState::Retired);
        assert_eq!(m.list()[1].state, KeyState::Active);

        // The retired key stays published for ttl + leeway after the switch.
        f.clock.set(t0.plus_secs(30 * DAY + 360));
        assert_eq!(kids(&m.jwks()).len(), 2);
        assert!(m.list()[0].published);
        assert_eq!(m.prune().await.unwrap(), Vec::<String>::new());
        f.clock.set(t0.plus_secs(30 * DAY + 360).plus_millis(1));
        let jwks = m.jwks();
        assert_eq!(kids(&jwks), vec![k2.clone()]);
        assert!(verify(&jwks, &k1_token).unwrap_err().contains("kid not in JWKS"));
        assert!(!m.list()[0].published);
        assert_eq!(m.prune().await.unwrap(), vec![k1.clone()]);
        assert_eq!(m.prune().await.unwrap(), Vec::<String>::new());
        let stored: Vec<String> = f
            .store
            .signing_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.kid)
            .collect();
        assert_eq!(stored, vec![k2.clone()]);
        assert_eq!(m.list().len(), 1);

        // The next period: due at K2 + 29 d, activating at K2 + 30 d.
        f.clock.set(t0.plus_secs(59 * DAY));
        let k3 = m.rotate_if_due().await.unwrap().unwrap();
        assert_eq!(m.list()[1].kid, k3);
        assert_eq!(m.list()[1].activates_at, t0.plus_secs(60 * DAY));
    }

    #[tokio::test]
    async fn late_rotation_still_prepublishes() {
        // A service that was down past the due date: the new key still
        // waits `prepublish` before signing.
        let f = Fixture::new();
        let m = f.manager(SigningAlg::EdDSA);
        let t0 = f.clock.now();
        let k1 = m.ensure_key().await.unwrap().unwrap();
        f.clock.set(t0.plus_secs(45 * DAY));
        m.rotate_if_due().await.unwrap().unwrap();
        assert_eq!(m.list()[1].activates_at, t0.plus_secs(46 * DAY));
        assert_eq!(m.signer().unwrap().kid, k1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jw_20_concurrent_rotate_if_due_adds_exactly_one_key() {
        let f = Fixture::new();
        let t0 = f.clock.now();
        f.manager(SigningAlg::EdDSA).ensure_key().await.unwrap().unwrap();
        f.clock.set(t0.plus_secs(29 * DAY + 5));
        // Eight "processes" (managers) on one store, all due at once.
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let m = f.manager(SigningAlg::EdDSA);
                let b = barrier.clone();
                tokio::spawn(async move {
                    m.reload().await.unwrap();
                    b.wait().await;
                    m.rotate_if_due().await.unwrap()
                })
            })
            .collect();
        let mut added = Vec::new();
        for t in tasks {
            if let Some(kid) = t.await.unwrap() {
                added.push(kid);
            }
        }
        assert_eq!(added.len(), 1, "{added:?}");
        assert_eq!(f.store.signing_keys().await.unwrap().len(), 2);
        // And eight tasks sharing one manager, a period later.
        f.clock.set(t0.plus_secs(59 * DAY + 5));
        let m = Arc::new(f.manager(SigningAlg::EdDSA));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                tokio::spawn(async move { m.rotate_if_due().await.unwrap() })
            })
            .collect();
        let mut n = 0;
        for t in tasks {
            n += usize::from(t.await.unwrap().is_some());
        }
        assert_eq!(n, 1);
        assert_eq!(f.store.signing_keys().await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn second_manager_sees_rotation_after_reload() {
        let f = Fixture::new();
        let a = f.manager(SigningAlg::EdDSA);
        let b = f.manager(SigningAlg::EdDSA);
        let k1 = a.ensure_key().await.unwrap().unwrap();
        assert_eq!(b.ensure_key().await.unwrap(), None, "b loads a's key");
        assert_eq!(b.signer().unwrap().kid, k1);
        f.clock.advance_secs(1);
        let k2 = a.rotate(0).await.unwrap();
        assert_eq!(a.signer().unwrap().kid, k2);
        assert_eq!(
            b.signer().unwrap().kid,
            k1,
            "b's snapshot is unchanged until reload"
        );
        b.reload().await.unwrap();
        assert_eq!(b.signer().unwrap().kid, k2);
        assert_eq!(kids(&b.jwks()), vec![k2.clone(), k1.clone()]);
        // Tokens from either manager verify with the other's JWKS.
        let t = mint(&a.signer().unwrap(), &claims()).unwrap();
        verify(&b.jwks(), &t).unwrap();
    }

    #[tokio::test]
    async fn emergency_rotation_activates_now_even_with_a_pending_key() {
        let f = Fixture::new();
        let m = f.manager(SigningAlg::ES256);
        let t0 = f.clock.now();
        let k1 = m.ensure_key().await.unwrap().unwrap();
        f.clock.set(t0.plus_secs(29 * DAY));
        let pending = m.rotate_if_due().await.unwrap().unwrap();
        f.clock.advance_secs(10);
        let k3 = m.rotate(0).await.unwrap();
        assert_eq!(m.signer().unwrap().kid, k3);
        let states: Vec<(String, KeyState)> = m.list().into_iter().map(|k| (k.kid, k.state)).collect();
        assert_eq!(
            states,
            vec![
                (k1.clone(), KeyState::Retired),
                (k3.clone(), KeyState::Active),
                (pending.clone(), KeyState::Pending)
            ]
        );
        // The pending key still takes over on schedule.
        f.clock.set(t0.plus_secs(30 * DAY));
        assert_eq!(m.signer().unwrap().kid, pending);
        assert!(matches!(m.rotate(-1).await, Err(KeyError::InvalidPolicy(_))));
    }

    #[tokio::test]
    async fn revoked_key_stops_signing_leaves_the_jwks_and_its_tokens_fail() {
        let f = Fixture::new();
        let m = f.manager(SigningAlg::EdDSA);
        let other_process = f.manager(SigningAlg::EdDSA);
        let t0 = f.clock.now();
        let compromised = m.ensure_key().await.unwrap().unwrap();
        other_process.reload().await.unwrap();
        let pending = m.rotate(3600).await.unwrap();
        f.clock.advance_secs(5);
        let token = mint(&m.signer().unwrap(), &claims()).unwrap();
        verify(&m.jwks(), &token).unwrap();

        // The signing key is revoked: a fresh key signs at once, the pending
        // key stays pending, and the revoked one is gone from the JWKS.
        let fresh = m.revoke(&compromised).await.unwrap().expect("a replacement");
        assert_ne!(fresh, compromised);
        assert_eq!(m.signer().unwrap().kid, fresh);
        assert_eq!(kids(&m.jwks()), vec![fresh.clone(), pending.clone()]);
        assert!(verify(&m.jwks(), &token).is_err(), "its tokens no longer verify");
        assert!(
            !m.jwk_set()
                .keys
                .iter()
                .any(|k| k.common.key_id.as_deref() == Some(&*compromised))
        );
        // The record stays, without its private part, and `list` shows it.
        let stored = f.store.signing_keys().await.unwrap();
        let rec = stored.iter().find(|r| r.kid == compromised).unwrap();
        assert!(rec.private_sealed.is_empty());
        assert_eq!(rec.revoked_at, Some(t0.plus_secs(5)));
        let listed = m.list();
        let info = listed.iter().find(|k| k.kid == compromised).unwrap();
        assert_eq!(info.state, KeyState::Revoked);
        assert!(!info.published);
        assert_eq!(info.revoked_at, Some(t0.plus_secs(5)));
        assert_eq!(listed.len(), 3);

        // Another process signs with the revoked key until its next reload
        // (the service's key maintenance), then with the fresh one.
        assert_eq!(other_process.signer().unwrap().kid, compromised);
        other_process.reload().await.unwrap();
        assert_eq!(other_process.signer().unwrap().kid, fresh);
        assert!(verify(&other_process.jwks(), &token).is_err());

        // Twice, or an unknown kid: clear errors, nothing changes.
        assert!(matches!(
            m.revoke(&compromised).await,
            Err(KeyError::AlreadyRevoked(_))
        ));
        assert!(matches!(
            m.revoke("no-such-kid").await,
            Err(KeyError::UnknownKey(_))
        ));

        // A key that does not sign (here the pending one) is withdrawn
        // without a replacement; the schedule goes on without it.
        assert_eq!(m.revoke(&pending).await.unwrap(), None);
        assert_eq!(m.signer().unwrap().kid, fresh);
        assert_eq!(kids(&m.jwks()), vec![fresh.clone()]);
        f.clock.set(t0.plus_secs(2 * 3600));
        assert_eq!(
            m.signer().unwrap().kid,
            fresh,
            "the revoked pending key never signs"
        );

        // Revoked records survive pruning and rotation keeps working.
        f.clock.set(t0.plus_secs(40 * DAY));
        let next = m.rotate_if_due().await.unwrap().expect("due");
        f.clock.set(t0.plus_secs(80 * DAY));
        m.prune().await.unwrap();
        let states: Vec<KeyState> = m.list().into_iter().map(|k| k.state).collect();
        assert_eq!(states.iter().filter(|s| **s == KeyState::Revoked).count(), 2);
        assert_eq!(m.signer().unwrap().kid, next);
    }

    #[tokio::test]
    async fn only_revoked_keys_left_means_a_fresh_key_on_start() {
        let f = Fixture::new();
        let m = f.manager(SigningAlg::EdDSA);
        let k1 = m.ensure_key().await.unwrap().unwrap();
        f.clock.advance_secs(1);
        // Withdrawn through the store alone (e.g. by an older build's CLI
        // that crashed before adding the replacement).
        assert!(f.store.revoke_signing_key(&k1, f.clock.now()).await.unwrap());
        let fresh = f.manager(SigningAlg::EdDSA);
        let k2 = fresh.ensure_key().await.unwrap().expect("a fresh key");
        assert_ne!(k2, k1);
        assert_eq!(fresh.signer().unwrap().kid, k2);
    }

    #[tokio::test]
    async fn rotation_in_the_same_millisecond_steps_past_the_current_key() {
        // Same activation instant would leave the order to the kids; the new
        // key activates a millisecond later instead, and then signs.
        let f = Fixture::new();
        let m = f.manager(SigningAlg::EdDSA);
        let t0 = f.clock.now();
        m.ensure_key().await.unwrap().unwrap();
        let k2 = m.rotate(0).await.unwrap();
        assert_eq!(m.list()[1].kid, k2);
        assert_eq!(m.list()[1].activates_at, t0.plus_millis(1));
        f.clock.advance_millis(1);
        assert_eq!(m.signer().unwrap().kid, k2);
    }

    #[tokio::test]
    async fn wrong_encryption_key_is_a_clear_error() {
        let f = Fixture::new();
        let kid = f.manager(SigningAlg::EdDSA).ensure_key().await.unwrap().unwrap();
        let other = KeyManager::new(
            f.store.clone(),
            Arc::new(f.clock.clone()),
            Arc::new(Sealer::new(&Sealer::generate_key())),
            KeyPolicy::default(),
        );
        let err = other.ensure_key().await.unwrap_err();
        assert!(matches!(&err, KeyError::Seal { kid: k } if *k == kid), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("cannot decrypt signing key {kid}: wrong encryption key?")
        );
        assert!(matches!(other.reload().await, Err(KeyError::Seal { .. })));
        assert!(matches!(other.signer(), Err(KeyError::NoActiveKey)));
        assert_eq!(
            f.store.signing_keys().await.unwrap().len(),
            1,
            "no key added over it"
        );
    }

    #[tokio::test]
    async fn no_key_means_no_signer_and_empty_jwks() {
        let f = Fixture::new();
        let m = f.manager(SigningAlg::EdDSA);
        assert!(matches!(m.signer(), Err(KeyError::NoActiveKey)));
        assert_eq!(m.jwks(), serde_json::json!({"keys": []}));
        assert!(m.list().is_empty());
        // rotate_if_due on an empty store acts as first start.
        let kid = m.rotate_if_due().await.unwrap().unwrap();
        assert_eq!(m.signer().unwrap().kid, kid);
    }

    #[tokio::test]
    async fn sealed_private_key_is_bound_to_its_kid() {
        let f = Fixture::new();
        let a = f.manager(SigningAlg::EdDSA);
        a.ensure_key().await.unwrap();
        let mut rec = f.store.signing_keys().await.unwrap().remove(0);
        // Same sealed bytes under another kid: does not open (AAD = kid).
        rec.kid = "other".into();
        rec.activates_at = rec.activates_at.plus_secs(1);
        let newest = f.store.signing_keys().await.unwrap()[0].kid.clone();
        assert!(f.store.insert_signing_key(&rec, Some(&newest)).await.unwrap());
        let b = f.manager(SigningAlg::EdDSA);
        assert!(matches!(b.reload().await, Err(KeyError::Seal { kid }) if kid == "other"));
    }

    #[test]
    fn rsa_pkcs1_extraction_and_garbage() {
        let pkcs8 = generate_pkcs8(SigningAlg::RS256).unwrap();
        let pkcs1 = rsa_pkcs1_from_pkcs8(&pkcs8).unwrap();
        assert!(RsaKeyPair::from_der(pkcs1).is_ok());
        assert!(rsa_pkcs1_from_pkcs8(&[]).is_none());
        assert!(rsa_pkcs1_from_pkcs8(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        let ec = generate_pkcs8(SigningAlg::ES256).unwrap();
        assert!(rsa_pkcs1_from_pkcs8(&ec).is_none(), "not RSA");
        for n in 0..pkcs8.len() {
            let _ = rsa_pkcs1_from_pkcs8(&pkcs8[..n]);
        }
        assert!(matches!(
            ActiveSigner::from_pkcs8("k", SigningAlg::RS256, &ec),
            Err(KeyError::BadKey { .. })
        ));
        assert!(matches!(
            ActiveSigner::from_pkcs8("k", SigningAlg::EdDSA, &pkcs8),
            Err(KeyError::BadKey { .. })
        ));
    }

    #[test]
    fn ed25519_v2_documents_are_accepted_and_normalised() {
        let v2 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let s = ActiveSigner::from_pkcs8("k", SigningAlg::EdDSA, v2.as_ref()).unwrap();
        assert_eq!(s.key.as_bytes().len(), 48, "v1 for jsonwebtoken");
        assert_eq!(s.public_jwk_json()["kid"], "k");
    }

    #[test]
    fn debug_shows_no_key_material() {
        let s = ActiveSigner::generate(SigningAlg::EdDSA).unwrap();
        let dbg = format!("{s:?}");
        assert!(dbg.contains(&s.kid) && !dbg.contains("content"), "{dbg}");
    }
}
