//! The `jwk` of a proof header: a public key, checked member by member, and
//! its RFC 7638 thumbprint.

use std::borrow::Cow;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256,
    RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};

use super::{DpopAlg, DpopError};
use crate::access::Present;
use crate::b64url;

/// The members we read; others (`alg`, `use`, `kid`, …) are ignored. A
/// duplicated member among these is an error (serde refuses duplicates).
#[derive(Deserialize)]
pub(crate) struct RawJwk<'a> {
    #[serde(borrow, default)]
    kty: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    crv: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    x: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    y: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    n: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    e: Option<Cow<'a, str>>,
    // Private-key members (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2):
    // a proof's key must be public (RFC 9449 §4.3 check 7), and a client
    // that sends its private key has leaked it.
    #[serde(default)]
    d: Present,
    #[serde(default)]
    p: Present,
    #[serde(default)]
    q: Present,
    #[serde(default)]
    dp: Present,
    #[serde(default)]
    dq: Present,
    #[serde(default)]
    qi: Present,
    #[serde(default)]
    oth: Present,
    #[serde(default)]
    k: Present,
}

/// A public JWK whose members are strict base64url of the right length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicJwk {
    /// `kty: EC`, `crv` P-256 or P-384.
    Ec { crv: &'static str, x: String, y: String },
    /// `kty: OKP`, `crv: Ed25519`.
    Okp { x: String },
    /// `kty: RSA`; thumbprints only (no RSA proof algorithm is accepted).
    Rsa { n: String, e: String },
}

fn decoded_len(s: &str, max: usize) -> Option<usize> {
    let mut buf = [0u8; 1024];
    let buf = buf.get_mut(..max.min(1024))?;
    b64url::decode_into(s.as_bytes(), buf).map(<[u8]>::len)
}

impl PublicJwk {
    pub(crate) fn from_raw(raw: &RawJwk<'_>) -> Result<PublicJwk, DpopError> {
        if raw.d.0 || raw.p.0 || raw.q.0 || raw.dp.0 || raw.dq.0 || raw.qi.0 || raw.oth.0 || raw.k.0 {
            return Err(DpopError::Invalid("the jwk holds a private key"));
        }
        let coord = |v: &Option<Cow<'_, str>>, len: usize| -> Result<String, DpopError> {
            match v.as_deref() {
                Some(s) if decoded_len(s, len + 3) == Some(len) => Ok(s.to_owned()),
                _ => Err(DpopError::Invalid(
                    "jwk coordinate is not base64url of the curve's size",
                )),
            }
        };
        match (raw.kty.as_deref(), raw.crv.as_deref()) {
            (Some("EC"), Some("P-256")) => Ok(PublicJwk::Ec {
                crv: "P-256",
                x: coord(&raw.x, 32)?,
                y: coord(&raw.y, 32)?,
            }),
            (Some("EC"), Some("P-384")) => Ok(PublicJwk::Ec {
                crv: "P-384",
                x: coord(&raw.x, 48)?,
                y: coord(&raw.y, 48)?,
            }),
            (Some("OKP"), Some("Ed25519")) => Ok(PublicJwk::Okp {
                x: coord(&raw.x, 32)?,
            }),
            (Some("RSA"), _) => {
                let ok = |v: &Option<Cow<'_, str>>| -> Result<String, DpopError> {
                    match v.as_deref() {
                        Some(s) if decoded_len(s, 1024).is_some_and(|n| n > 0) => Ok(s.to_owned()),
                        _ => Err(DpopError::Invalid("jwk RSA member is not base64url")),
                    }
                };
                Ok(PublicJwk::Rsa {
                    n: ok(&raw.n)?,
                    e: ok(&raw.e)?,
                })
            }
            _ => Err(DpopError::Invalid("unsupported jwk key type or curve")),
        }
    }

    /// Parses a JWK given as JSON text (a client's registered key, a test).
    pub fn from_json(json: &str) -> Result<PublicJwk, DpopError> {
        let raw: RawJwk<'_> =
            serde_json::from_str(json).map_err(|_| DpopError::Invalid("jwk is not a JSON object"))?;
        PublicJwk::from_raw(&raw)
    }

    /// Whether this key can verify `alg` signatures.
    pub(crate) fn fits(&self, alg: DpopAlg) -> bool {
        matches!(
            (alg, self),
            (DpopAlg::Es256, PublicJwk::Ec { crv: "P-256", .. })
                | (DpopAlg::Es384, PublicJwk::Ec { crv: "P-384", .. })
                | (DpopAlg::EdDsa, PublicJwk::Okp { .. })
                | (DpopAlg::Rs256, PublicJwk::Rsa { .. })
        )
    }

    /// Verifies a JWS signature over `input` with this key under `alg`
    /// (which [`fits`](Self::fits) it).
    pub(crate) fn verify(&self, alg: DpopAlg, input: &[u8], signature: &[u8]) -> bool {
        let mut point = [0u8; 1 + 2 * 48 + 6];
        let mut buf = [0u8; 51];
        match (alg, self) {
            (DpopAlg::Es256 | DpopAlg::Es384, PublicJwk::Ec { x, y, .. }) => {
                // SEC 1 uncompressed point: 0x04 ‖ x ‖ y.
                point[0] = 4;
                let Some(xb) = b64url::decode_into(x.as_bytes(), &mut buf) else {
                    return false;
                };
                let xl = xb.len();
                point[1..=xl].copy_from_slice(xb);
                let Some(yb) = b64url::decode_into(y.as_bytes(), &mut buf) else {
                    return false;
                };
                let yl = yb.len();
                point[1 + xl..1 + xl + yl].copy_from_slice(yb);
                let algorithm = if alg == DpopAlg::Es256 {
                    &ECDSA_P256_SHA256_FIXED
                } else {
                    &ECDSA_P384_SHA384_FIXED
                };
                UnparsedPublicKey::new(algorithm, &point[..1 + xl + yl])
                    .verify(input, signature)
                    .is_ok()
            }
            (DpopAlg::EdDsa, PublicJwk::Okp { x }) => {
                let Some(xb) = b64url::decode_into(x.as_bytes(), &mut buf) else {
                    return false;
                };
                UnparsedPublicKey::new(&ED25519, xb)
                    .verify(input, signature)
                    .is_ok()
            }
            (DpopAlg::Rs256, PublicJwk::Rsa { n, e }) => {
                let (mut nb, mut eb) = (vec![0u8; n.len()], vec![0u8; e.len()]);
                let (Some(n), Some(e)) = (
                    b64url::decode_into(n.as_bytes(), &mut nb),
                    b64url::decode_into(e.as_bytes(), &mut eb),
                ) else {
                    return false;
                };
                RsaPublicKeyComponents { n, e }
                    .verify(&RSA_PKCS1_2048_8192_SHA256, input, signature)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// The RFC 7638 canonical members, in lexicographic order; serde_json
/// writes them without whitespace and escapes as JSON requires (the values
/// are already strict base64url, which needs no escaping).
#[derive(Serialize)]
struct CanonicalEc<'a> {
    crv: &'a str,
    kty: &'a str,
    x: &'a str,
    y: &'a str,
}

#[derive(Serialize)]
struct CanonicalOkp<'a> {
    crv: &'a str,
    kty: &'a str,
    x: &'a str,
}

#[derive(Serialize)]
struct CanonicalRsa<'a> {
    e: &'a str,
    kty: &'a str,
    n: &'a str,
}

impl PublicJwk {
    /// The key's canonical JSON (RFC 7638 members only): what a binding
    /// stores to verify later proofs with.
    pub fn to_json(&self) -> String {
        canonical(self)
    }
}

fn canonical(jwk: &PublicJwk) -> String {
    let json = match jwk {
        PublicJwk::Ec { crv, x, y } => serde_json::to_string(&CanonicalEc { crv, kty: "EC", x, y }),
        PublicJwk::Okp { x } => serde_json::to_string(&CanonicalOkp {
            crv: "Ed25519",
            kty: "OKP",
            x,
        }),
        PublicJwk::Rsa { n, e } => serde_json::to_string(&CanonicalRsa { e, kty: "RSA", n }),
    };
    // Serializing a struct of strings cannot fail.
    json.unwrap_or_default()
}

/// The RFC 7638 JWK SHA-256 thumbprint, base64url: a DPoP key's `jkt`.
pub fn jwk_thumbprint(jwk: &PublicJwk) -> String {
    crate::b64url::encode(digest::digest(&digest::SHA256, canonical(jwk).as_bytes()).as_ref())
}
