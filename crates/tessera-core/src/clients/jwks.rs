//! A client's registered public keys (`jwks` in its `[[clients]]` entry or
//! its stored registration): what `private_key_jwt` assertions are verified
//! with (RFC 7523 §2.2, OIDC Core §9).

use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::b64url;

/// Most keys one client may register (rotation needs two; a handful covers
/// several algorithms).
pub const MAX_CLIENT_KEYS: usize = 10;
/// Largest `jwks` text accepted.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// The assertion algorithms a client may sign with: asymmetric only (a MAC
/// would need a shared secret, which `private_key_jwt` exists to avoid).
pub const ASSERTION_ALGS: [Algorithm; 4] = [
    Algorithm::ES256,
    Algorithm::EdDSA,
    Algorithm::PS256,
    Algorithm::RS256,
];

/// The JOSE names of [`ASSERTION_ALGS`]
/// (`token_endpoint_auth_signing_alg_values_supported`).
pub fn assertion_alg_names() -> Vec<&'static str> {
    ASSERTION_ALGS.iter().copied().map(alg_name).collect()
}

pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::PS256 => "PS256",
        Algorithm::RS256 => "RS256",
        _ => "other",
    }
}

/// The key families an assertion key may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    Ed25519,
}

impl Family {
    fn fits(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (Family::Rsa, Algorithm::RS256 | Algorithm::PS256)
                | (Family::P256, Algorithm::ES256)
                | (Family::Ed25519, Algorithm::EdDSA)
        )
    }
}

/// One registered public key.
pub(crate) struct ClientKey {
    pub(crate) kid: Option<String>,
    /// The JWK's `alg`, when it names one: then only that algorithm.
    alg: Option<Algorithm>,
    family: Family,
    pub(crate) key: DecodingKey,
}

impl ClientKey {
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        self.family.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// A client's public keys, checked when the registration is read: public
/// keys only, of a supported family, at most [`MAX_CLIENT_KEYS`], `kid`s
/// unique.
#[derive(Clone)]
pub struct ClientJwks {
    keys: Arc<[ClientKey]>,
    /// The set as registered (compact JSON), for equality and display.
    json: Arc<str>,
}

impl std::fmt::Debug for ClientJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientJwks")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl PartialEq for ClientJwks {
    fn eq(&self, other: &Self) -> bool {
        self.json == other.json
    }
}

impl Eq for ClientJwks {}

/// Why a registered JWK Set was refused (a configuration or CLI error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("jwks: {0}")]
pub struct JwksError(pub String);

fn err(s: impl Into<String>) -> JwksError {
    JwksError(s.into())
}

const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl ClientJwks {
    /// Parses a JWK Set given as JSON text (`{"keys":[…]}`).
    pub fn from_json(text: &str) -> Result<ClientJwks, JwksError> {
        if text.len() > MAX_JWKS_BYTES {
            return Err(err(format!("larger than {MAX_JWKS_BYTES} bytes")));
        }
        let value: Value = serde_json::from_str(text).map_err(|e| err(format!("not JSON: {e}")))?;
        ClientJwks::from_value(&value)
    }

    /// Parses a JWK Set given as a JSON value (a TOML table converted).
    pub fn from_value(value: &Value) -> Result<ClientJwks, JwksError> {
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| err("must be a JWK Set: an object with a \"keys\" array"))?;
        if keys.is_empty() || keys.len() > MAX_CLIENT_KEYS {
            return Err(err(format!("must hold 1 to {MAX_CLIENT_KEYS} keys")));
        }
        let mut parsed = Vec::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            let key = parse_key(k).map_err(|e| err(format!("key {i}: {}", e.0)))?;
            if let Some(kid) = &key.kid
                && parsed.iter().any(|p: &ClientKey| p.kid.as_deref() == Some(kid))
            {
                return Err(err(format!("key {i}: kid {kid:?} is used twice")));
            }
            parsed.push(key);
        }
        let json = serde_json::to_string(value).map_err(|e| err(e.to_string()))?;
        Ok(ClientJwks {
            keys: parsed.into(),
            json: json.into(),
        })
    }

    /// The set as registered, compact JSON.
    pub fn to_json(&self) -> &str {
        &self.json
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys an assertion with this header may be verified with: the one
    /// its `kid` names (if it fits `alg`), or without a `kid` every key that
    /// fits `alg`.
    pub(crate) fn candidates<'s>(
        &'s self,
        kid: Option<&'s str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'s ClientKey> + 's {
        self.keys.iter().filter(move |k| {
            k.fits(alg)
                && match kid {
                    Some(kid) => k.kid.as_deref() == Some(kid),
                    None => true,
                }
        })
    }
}

fn parse_key(k: &Value) -> Result<ClientKey, JwksError> {
    let obj = k.as_object().ok_or_else(|| err("not a JSON object"))?;
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
        return Err(err(format!(
            "holds the private member {m:?}: register the public key only"
        )));
    }
    if let Some(u) = obj.get("use")
        && u.as_str() != Some("sig")
    {
        return Err(err("\"use\" must be \"sig\" when present"));
    }
    let jwk: Jwk = serde_json::from_value(k.clone()).map_err(|e| err(format!("not a JWK: {e}")))?;
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let mut buf = vec![0u8; p.n.len()];
            let n = b64url::decode_into(p.n.as_bytes(), &mut buf).ok_or_else(|| err("n is not base64url"))?;
            let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
            if bits < 2048 {
                return Err(err("RSA keys must have at least 2048 bits"));
            }
            Family::Rsa
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            coordinate(&p.x, 32)?;
            coordinate(&p.y, 32)?;
            Family::P256
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            coordinate(&p.x, 32)?;
            Family::Ed25519
        }
        _ => {
            return Err(err(
                "unsupported key: use RSA (RS256/PS256), EC P-256 (ES256) or OKP Ed25519 (EdDSA)",
            ));
        }
    };
    let alg = match obj.get("alg") {
        None => None,
        Some(a) => {
            let name = a.as_str().ok_or_else(|| err("alg must be a string"))?;
            let alg = ASSERTION_ALGS
                .iter()
                .copied()
                .find(|x| alg_name(*x) == name)
                .ok_or_else(|| {
                    err(format!(
                        "alg {name:?} is not one of {}",
                        assertion_alg_names().join(", ")
                    ))
                })?;
            if !family.fits(alg) {
                return Err(err(format!("alg {name:?} does not fit the key type")));
            }
            Some(alg)
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| err(format!("unusable key: {e}")))?;
    Ok(ClientKey {
        kid: jwk.common.key_id.clone(),
        alg,
        family,
        key,
    })
}

fn coordinate(s: &str, len: usize) -> Result<(), JwksError> {
    let mut buf = [0u8; 64];
    match b64url::decode_into(s.as_bytes(), &mut buf) {
        Some(b) if b.len() == len => Ok(()),
        _ => Err(err("a coordinate is not base64url of the curve's size")),
    }
}
