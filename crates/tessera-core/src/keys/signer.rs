//! [`ActiveSigner`]: one parsed private key that signs raw messages and
//! compact JWSs, with its public JWK.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Serialize;
use serde_json::Value;

use super::KeyError;
use super::pkcs8::{generate_pkcs8, rsa_pkcs1_from_pkcs8};
use crate::model::SigningAlg;

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

    pub(super) fn parse(
        kid: Option<String>,
        alg: SigningAlg,
        pkcs8: &[u8],
    ) -> Result<ActiveSigner, KeyError> {
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
