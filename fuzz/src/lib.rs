//! Fixtures shared by the fuzz targets: fixed signing keys, so committed
//! seeds signed with them stay valid, and the key set a resource server
//! would have fetched. No parsing logic lives here: every target calls the
//! crates' own functions.

use serde_json::json;
use tessera_core::SigningAlg;
use tessera_core::access::KeySet;
use tessera_core::keys::ActiveSigner;

/// PKCS#8 v1 of the Ed25519 key whose seed is the bytes 0..32.
const ED25519_PKCS8: &str =
    "302e020100300506032b657004220420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// PKCS#8 of a fixed P-256 key (with its public key).
const P256_PKCS8: &str = "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b02010104201234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdefa14403420004471c3e758c4904285bba7e53118ed0f524adeb0757d25bd2f8e7b0d76dfa714cdd520f7aca8a8b917acc37f51de8f0c9bbe3ad858382e702dc25a12d09f7a858";

/// The issuer and audience the access-token targets expect.
pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "tessera";
/// The targets' fixed "now" (Unix seconds): 2026-12-01T00:00:00Z.
pub const NOW: i64 = 1_796_083_200;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
        .collect()
}

/// The Ed25519 signer (`kid` "ed") and the P-256 one (`kid` "ec").
pub fn signers() -> (ActiveSigner, ActiveSigner) {
    let ed =
        ActiveSigner::from_pkcs8("ed", SigningAlg::EdDSA, &hex(ED25519_PKCS8)).expect("fixed Ed25519 key");
    let ec = ActiveSigner::from_pkcs8("ec", SigningAlg::ES256, &hex(P256_PKCS8)).expect("fixed P-256 key");
    (ed, ec)
}

/// Both signers' public keys, imported as the library imports a fetched JWKS.
pub fn key_set(ed: &ActiveSigner, ec: &ActiveSigner) -> KeySet {
    KeySet::from_jwks(&json!({"keys": [ed.public_jwk_json(), ec.public_jwk_json()]})).expect("fixed JWKS")
}
