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
//!
//! [`SigningKeyRecord`]: crate::model::SigningKeyRecord
//! [`Sealer`]: crate::seal::Sealer

mod manager;
mod pkcs8;
mod policy;
mod schedule;
mod signer;

pub use manager::KeyManager;
pub use policy::KeyPolicy;
pub use schedule::{KeyInfo, KeyState, PublishedKeys};
pub use signer::{ActiveSigner, jwt_algorithm};

use crate::store::StoreError;

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

#[cfg(test)]
mod tests;
