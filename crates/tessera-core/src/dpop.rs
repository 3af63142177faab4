//! RFC 9449 DPoP: the one place a proof is checked, for every face — the
//! token endpoint and session creation (the authorization-server side) and
//! the resource servers (the library's verifier, `/auth/verify`).
//!
//! # What [`check_proof`] checks, in order (RFC 9449 §4.3)
//!
//! 1. Size (at most [`MAX_PROOF_BYTES`]) and form: a compact JWS, three
//!    non-empty canonical base64url segments ([`crate::b64url`]).
//! 2. The protected header, parsed as raw JSON: `typ` exactly `dpop+jwt`;
//!    `alg` on the policy's allow-list ([`DpopAlg`]: asymmetric only, so
//!    `none` and MACs never get here); `jwk` present, a public key of the
//!    family and curve `alg` names, with strict base64url coordinates of the
//!    right length and no private member (`d`, `p`, `q`, `dp`, `dq`, `qi`,
//!    `oth`, `k`); no `crit`.
//! 3. The signature, with aws-lc-rs, by the header's `jwk`.
//! 4. The claims: `jti` (1–[`MAX_JTI_BYTES`] bytes), `htm` equal to the
//!    request's method, `htu` equal to the request's URI after
//!    normalisation ([`htu_matches`]), `iat` inside the window (at most
//!    [`DpopPolicy::max_age_secs`] old, at most
//!    [`DpopPolicy::max_future_secs`] ahead), `ath` equal to
//!    base64url(SHA-256(access token)) when one is presented (and absent
//!    claims refused), `nonce` when the caller requires one.
//!
//! The `jti` replay check and the nonce's freshness need state and live in
//! [`DpopVerifier`], which wraps [`check_proof`].

mod jwk;
mod nonce;
mod proof;
mod resource;
mod verifier;

pub(crate) use jwk::RawJwk;
pub use jwk::{PublicJwk, jwk_thumbprint};
pub use nonce::{NonceIssuer, NonceUse};
pub use proof::{CheckedProof, ProofRequest, check_proof, htu_matches};
pub use resource::{Presentation, PresentationError, ProofHeader, Scheme, check_presentation};
pub use verifier::{BoundedReplayCache, DpopVerifier};

/// A `DPoP` header longer than this is refused before any decoding. RFC
/// 9449 sets no limit; an ES256 or EdDSA proof with a nonce and `ath` is
/// under 1 KB, and an RSA-4096 one under 3 KB.
pub const MAX_PROOF_BYTES: usize = 4096;
/// Longest `jti` accepted (checklist DP-10: an oversized `jti` is refused).
pub const MAX_JTI_BYTES: usize = 256;
/// Longest `nonce` claim accepted.
pub const MAX_NONCE_BYTES: usize = 256;

/// The proof algorithms Tessera can verify: asymmetric only (RFC 9449
/// §4.2: never `none`, never a MAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DpopAlg {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048–8192 bits (DBSC offers
    /// it beside ES256; not in the default DPoP allow-list).
    Rs256,
}

impl DpopAlg {
    pub const ALL: [DpopAlg; 4] = [DpopAlg::Es256, DpopAlg::Es384, DpopAlg::EdDsa, DpopAlg::Rs256];

    /// The JOSE name, as in `alg` and `dpop_signing_alg_values_supported`.
    pub fn name(self) -> &'static str {
        match self {
            DpopAlg::Es256 => "ES256",
            DpopAlg::Es384 => "ES384",
            DpopAlg::EdDsa => "EdDSA",
            DpopAlg::Rs256 => "RS256",
        }
    }

    /// The algorithm of a JOSE name, exactly as registered (case matters).
    pub fn from_name(name: &str) -> Option<DpopAlg> {
        DpopAlg::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// How proofs are judged; the same policy at the token endpoint and at the
/// resource servers of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopPolicy {
    /// Accepted `alg` values (`dpop_signing_alg_values_supported`).
    pub algs: Vec<DpopAlg>,
    /// Oldest `iat` accepted, in seconds before now (RFC 9449 §11.1: a
    /// short window; the `jti` replay cache covers it).
    pub max_age_secs: i64,
    /// Furthest `iat` accepted ahead of now, for client clock skew.
    pub max_future_secs: i64,
}

impl Default for DpopPolicy {
    fn default() -> Self {
        DpopPolicy {
            algs: vec![DpopAlg::Es256, DpopAlg::EdDsa, DpopAlg::Es384],
            max_age_secs: 60,
            max_future_secs: 5,
        }
    }
}

impl DpopPolicy {
    /// The space-separated allow-list, for a `WWW-Authenticate: DPoP algs=`
    /// challenge.
    pub fn algs_list(&self) -> String {
        self.algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(" ")
    }
}

/// Why a proof was refused. [`DpopError::error_code`] gives the OAuth error
/// an edge answers with.
#[derive(Debug, thiserror::Error)]
pub enum DpopError {
    /// Anything wrong with the proof itself (RFC 9449 `invalid_dpop_proof`).
    #[error("invalid DPoP proof: {0}")]
    Invalid(&'static str),
    /// A nonce is required and the proof has none, or a stale or unknown
    /// one (`use_dpop_nonce`); the answer carries a fresh `DPoP-Nonce`.
    #[error("a fresh DPoP nonce is required")]
    UseNonce,
    /// The proof's `jti` was seen before inside its window.
    #[error("invalid DPoP proof: replayed")]
    Replayed,
    /// The replay check could not be made: fail closed (503).
    #[error("DPoP replay check unavailable: {0}")]
    Unavailable(String),
}

impl DpopError {
    /// The RFC 9449 error code (§5, §7.1, §12.2); `None` for
    /// [`DpopError::Unavailable`], which is the edge's 503.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            DpopError::Invalid(_) | DpopError::Replayed => Some("invalid_dpop_proof"),
            DpopError::UseNonce => Some("use_dpop_nonce"),
            DpopError::Unavailable(_) => None,
        }
    }
}

#[cfg(test)]
mod tests;
