//! Where access-token verification gets its keys: public JWKs imported once
//! (via `jsonwebtoken`'s `Jwk` and `DecodingKey::from_jwk`) into aws-lc-rs
//! public keys, and the [`KeySource`] the verifier looks them up in — the
//! service's own signing keys or a resource server's JWKS.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};

use super::MAX_KID_BYTES;

/// The keys the verifier may use, by `kid`. Keys come only from here, never
/// from the token (RFC 8725 §3.10).
pub trait KeySource {
    /// The key named `kid`, if it may verify access tokens now.
    fn key(&self, kid: &str) -> Option<&Arc<VerifyKey>>;

    /// The key selected by a byte-identical encoded protected header that
    /// passed every header check with this source before; `None` when the
    /// source remembers no headers.
    fn known_header(&self, _header_b64: &str) -> Option<&Arc<VerifyKey>> {
        None
    }

    /// Called after a token with this header verified with `key`.
    fn remember_header(&self, _header_b64: &str, _key: &Arc<VerifyKey>) {}
}

/// The JWS algorithms access tokens may be signed with. Symmetric (`HS*`)
/// algorithms are deliberately absent: a MAC is never verified with a public
/// key (checklist JW-03).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    EdDSA,
    ES256,
    ES384,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
}

impl KeyAlg {
    /// The `alg` value, compared byte for byte with the token header's `alg`.
    pub fn name(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
        }
    }

    fn from_jwk_alg(alg: KeyAlgorithm) -> Option<Self> {
        Some(match alg {
            KeyAlgorithm::EdDSA => Self::EdDSA,
            KeyAlgorithm::ES256 => Self::ES256,
            KeyAlgorithm::ES384 => Self::ES384,
            KeyAlgorithm::RS256 => Self::RS256,
            KeyAlgorithm::RS384 => Self::RS384,
            KeyAlgorithm::RS512 => Self::RS512,
            KeyAlgorithm::PS256 => Self::PS256,
            KeyAlgorithm::PS384 => Self::PS384,
            KeyAlgorithm::PS512 => Self::PS512,
            _ => return None,
        })
    }

    fn rsa_params(self) -> Option<&'static RsaParameters> {
        Some(match self {
            Self::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Self::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Self::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Self::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Self::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }
}

/// One verification key: its algorithm (the only one it verifies) and the
/// public key, parsed once, so a verification parses no key material.
pub struct VerifyKey {
    alg: KeyAlg,
    key: ParsedPublicKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Members that only a private or symmetric JWK has.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

impl VerifyKey {
    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    /// Whether `signature` is valid over `message` with this key.
    #[inline]
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }

    /// Same algorithm and key material.
    pub fn same_key(&self, other: &VerifyKey) -> bool {
        self.alg == other.alg && self.key.as_ref() == other.key.as_ref()
    }

    /// Imports one public JWK and returns its `kid` and key. Refused: private
    /// or symmetric members, `use` other than `sig`, unknown algorithms, an
    /// `alg` that does not fit the key type, RSA keys without `alg`, keys
    /// without `kid` or with one longer than [`MAX_KID_BYTES`].
    pub fn from_jwk(raw: &serde_json::Value) -> Result<(String, VerifyKey), &'static str> {
        let obj = raw.as_object().ok_or("not a JSON object")?;
        if PRIVATE_MEMBERS.iter().any(|m| obj.contains_key(*m)) {
            return Err("private or symmetric key material in a JWKS");
        }
        let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|_| "not a JWK")?;
        let kid = jwk.common.key_id.clone().ok_or("no kid")?;
        if kid.is_empty() || kid.len() > MAX_KID_BYTES {
            return Err("kid empty or too long");
        }
        if let Some(usage) = &jwk.common.public_key_use
            && *usage != PublicKeyUse::Signature
        {
            return Err("use is not sig");
        }
        let declared = match jwk.common.key_algorithm {
            Some(alg) => Some(KeyAlg::from_jwk_alg(alg).ok_or("alg not an accepted signature algorithm")?),
            None => None,
        };
        // The key's algorithm must agree with its type; without `alg` only the
        // unambiguous cases (OKP Ed25519, EC P-256/P-384) are inferred.
        let alg = match (&jwk.algorithm, declared) {
            (AlgorithmParameters::OctetKeyPair(p), alg) => {
                if p.curve != EllipticCurve::Ed25519 {
                    return Err("OKP curve is not Ed25519");
                }
                match alg {
                    None | Some(KeyAlg::EdDSA) => KeyAlg::EdDSA,
                    Some(_) => return Err("alg does not match an Ed25519 key"),
                }
            }
            (AlgorithmParameters::EllipticCurve(p), alg) => match (&p.curve, alg) {
                (EllipticCurve::P256, None | Some(KeyAlg::ES256)) => KeyAlg::ES256,
                (EllipticCurve::P384, None | Some(KeyAlg::ES384)) => KeyAlg::ES384,
                _ => return Err("alg does not match the EC curve"),
            },
            (AlgorithmParameters::RSA(_), Some(alg)) if alg.rsa_params().is_some() => alg,
            (AlgorithmParameters::RSA(_), _) => return Err("RSA key without an RS*/PS* alg"),
            _ => return Err("unsupported key type"),
        };
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| "invalid key parameters")?;
        let key = match alg {
            KeyAlg::EdDSA => {
                let bytes = decoding.try_get_as_bytes().map_err(|_| "invalid Ed25519 key")?;
                ParsedPublicKey::new(&signature::ED25519, bytes).map_err(|_| "invalid Ed25519 key")?
            }
            KeyAlg::ES256 | KeyAlg::ES384 => {
                let bytes = decoding.try_get_as_bytes().map_err(|_| "invalid EC key")?;
                let expected = if alg == KeyAlg::ES256 { 65 } else { 97 };
                if bytes.len() != expected {
                    return Err("EC coordinates of the wrong length");
                }
                let algorithm = if alg == KeyAlg::ES256 {
                    &signature::ECDSA_P256_SHA256_FIXED
                } else {
                    &signature::ECDSA_P384_SHA384_FIXED
                };
                ParsedPublicKey::new(algorithm, bytes).map_err(|_| "invalid EC key")?
            }
            _ => {
                let params = alg.rsa_params().ok_or("unsupported RSA alg")?;
                let jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, e } = decoding.kind() else {
                    return Err("invalid RSA key");
                };
                let components = RsaPublicKeyComponents {
                    n: strip_leading_zeros(n),
                    e: strip_leading_zeros(e),
                };
                components
                    .to_parsed_public_key(params)
                    .map_err(|_| "invalid RSA key")?
            }
        };
        Ok((kid, VerifyKey { alg, key }))
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// A JWKS document that cannot serve as a key source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    /// Not a JSON object with a `keys` array.
    #[error("JWKS document is malformed: {0}")]
    Malformed(&'static str),
    /// No key in the document is usable for verifying access tokens.
    #[error("JWKS has no usable signing key")]
    NoUsableKeys,
}

/// Protected headers (base64url, as in the token) remembered per key set.
const HEADER_MEMO_SLOTS: usize = 4;

/// The keys of one JWKS document by `kid`: a resource server's key source.
/// Immutable once built; a new document makes a new set.
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<Box<str>, Arc<VerifyKey>>,
    /// Encoded protected headers of tokens that verified completely with this
    /// key set, and the key each one selected. Every issuer-minted token
    /// carries one of a handful of byte-identical headers, and the header
    /// checks depend only on those bytes and on this (immutable) key set, so
    /// a byte-equal header needs neither decoding nor parsing again. Filled
    /// only after a signature verified, so forged headers cannot take the
    /// slots; a new key set starts empty.
    header_memo: [OnceLock<(Box<str>, Arc<VerifyKey>)>; HEADER_MEMO_SLOTS],
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// Imports a JWKS document. Keys that cannot verify access tokens are
    /// skipped with a warning (see [`VerifyKey::from_jwk`]; duplicate `kid`s
    /// after the first too). A document without any usable key is an error.
    pub fn from_jwks(doc: &serde_json::Value) -> Result<Self, KeySetError> {
        let keys = doc
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or(KeySetError::Malformed("no `keys` array"))?;
        let mut set = KeySet::default();
        for (index, raw) in keys.iter().enumerate() {
            match VerifyKey::from_jwk(raw) {
                Ok((kid, key)) => {
                    if set.keys.contains_key(kid.as_str()) {
                        tracing::warn!(index, "JWKS: duplicate kid; keeping the first key with it");
                        continue;
                    }
                    set.keys.insert(kid.into_boxed_str(), Arc::new(key));
                }
                Err(reason) => tracing::warn!(index, reason, "JWKS: skipping a key"),
            }
        }
        if set.keys.is_empty() {
            return Err(KeySetError::NoUsableKeys);
        }
        Ok(set)
    }

    /// Whether `other` has every key of `self` with the same algorithm and
    /// key material (so nothing verified with `self` needs re-checking).
    pub fn is_subset_of(&self, other: &KeySet) -> bool {
        self.keys
            .iter()
            .all(|(kid, key)| other.keys.get(kid).is_some_and(|k| k.same_key(key)))
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(|k| &**k)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl KeySource for KeySet {
    #[inline]
    fn key(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.keys.get(kid)
    }

    #[inline]
    fn known_header(&self, header_b64: &str) -> Option<&Arc<VerifyKey>> {
        self.header_memo
            .iter()
            .filter_map(OnceLock::get)
            .find(|(h, _)| **h == *header_b64)
            .map(|(_, key)| key)
    }

    /// A full memo stays as it is.
    fn remember_header(&self, header_b64: &str, key: &Arc<VerifyKey>) {
        if self.known_header(header_b64).is_some() {
            return;
        }
        if let Some(slot) = self.header_memo.iter().find(|slot| slot.get().is_none()) {
            // Losing a race to another thread only leaves this header out.
            let _ = slot.set((header_b64.into(), Arc::clone(key)));
        }
    }
}
