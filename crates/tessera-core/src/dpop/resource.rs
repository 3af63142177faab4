//! The resource-server side of sender-constrained tokens: after the access
//! token itself verified ([`crate::access::verify`], accepting `cnf`), how
//! it was presented must match what it is bound to. The library's verifier
//! and `/auth/verify` both call [`check_presentation`].
//!
//! - A DPoP-bound token (`cnf.jkt`) only with `Authorization: DPoP` and
//!   exactly one `DPoP` proof whose key is the bound one, `ath` its hash
//!   (RFC 9449 §7.1; a `Bearer` presentation is a downgrade, §7.2).
//! - A certificate-bound token (`cnf.x5t#S256`) only over a connection
//!   with that client certificate (RFC 8705 §3).
//! - An unbound token only as `Bearer`.

use super::{DpopError, DpopVerifier, ProofRequest};
use crate::access::AccessClaims;
use crate::model::Binding;

/// The `Authorization` scheme the token came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    Dpop,
}

/// The request's `DPoP` header(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofHeader<'a> {
    None,
    One(&'a str),
    /// More than one (RFC 9449 §4.3 check 1: refused).
    Many,
}

/// What a resource request presents besides the token.
#[derive(Debug, Clone, Copy)]
pub struct Presentation<'a> {
    pub scheme: Scheme,
    pub proof: ProofHeader<'a>,
    pub method: &'a str,
    /// The request's absolute URI as the client addressed it.
    pub uri: &'a str,
    /// base64url(SHA-256(DER)) of the TLS client certificate, if any.
    pub client_cert: Option<&'a str>,
}

/// Why a presentation does not fit the token; each maps onto an RFC 6750 /
/// RFC 9449 error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresentationError {
    /// 401 `invalid_token`.
    #[error("{0}")]
    InvalidToken(&'static str),
    /// 401 `invalid_dpop_proof`.
    #[error("invalid DPoP proof: {0}")]
    InvalidProof(&'static str),
    /// 401 `use_dpop_nonce` with a fresh `DPoP-Nonce`.
    #[error("a fresh DPoP nonce is required")]
    UseNonce,
    /// The replay check could not be made: 503.
    #[error("DPoP replay check unavailable: {0}")]
    Unavailable(String),
}

impl From<DpopError> for PresentationError {
    fn from(e: DpopError) -> Self {
        match e {
            DpopError::UseNonce => PresentationError::UseNonce,
            DpopError::Unavailable(why) => PresentationError::Unavailable(why),
            DpopError::Invalid(why) => PresentationError::InvalidProof(why),
            DpopError::Replayed => PresentationError::InvalidProof("the proof was used before"),
        }
    }
}

impl PresentationError {
    /// The error code of the challenge.
    pub fn error_code(&self) -> &'static str {
        match self {
            PresentationError::InvalidToken(_) => "invalid_token",
            PresentationError::InvalidProof(_) => "invalid_dpop_proof",
            PresentationError::UseNonce => "use_dpop_nonce",
            PresentationError::Unavailable(_) => "temporarily_unavailable",
        }
    }
}

/// Checks that `token` (whose `claims` verified) is presented as what it is
/// bound to. A DPoP proof's `jti` is recorded only once everything else
/// holds, so a proof for another key or token cannot fill the replay cache.
pub async fn check_presentation(
    dpop: &DpopVerifier,
    claims: &AccessClaims,
    token: &str,
    p: &Presentation<'_>,
) -> Result<(), PresentationError> {
    let bound = claims.cnf.as_ref().map(|c| Binding::from_cnf(c).ok_or(()));
    match (bound, p.scheme) {
        (Some(Err(())), _) => Err(PresentationError::InvalidToken(
            "the token is bound to a confirmation method this server does not know",
        )),
        (Some(Ok(Binding::Dpop { jkt })), Scheme::Dpop) => {
            let proof = match p.proof {
                ProofHeader::One(proof) => proof,
                ProofHeader::None => {
                    return Err(PresentationError::InvalidProof(
                        "a DPoP-bound token needs a DPoP proof",
                    ));
                }
                ProofHeader::Many => {
                    return Err(PresentationError::InvalidProof("more than one DPoP header"));
                }
            };
            let req = ProofRequest {
                method: p.method,
                uri: p.uri,
                access_token: Some(token),
            };
            let checked = dpop.check(proof, &req)?;
            if checked.jkt != jkt {
                return Err(PresentationError::InvalidToken("Invalid DPoP key binding"));
            }
            dpop.record(&checked).await?;
            Ok(())
        }
        (Some(Ok(Binding::Dpop { .. })), Scheme::Bearer) => Err(PresentationError::InvalidToken(
            "a DPoP-bound token must be sent with the DPoP scheme",
        )),
        (Some(Ok(Binding::Mtls { x5t_s256 })), Scheme::Bearer) => match p.client_cert {
            Some(presented) if presented == x5t_s256 => Ok(()),
            _ => Err(PresentationError::InvalidToken(
                "the token is bound to another client certificate",
            )),
        },
        (Some(Ok(_)), _) => Err(PresentationError::InvalidToken(
            "the token is not bound to a DPoP key",
        )),
        (None, Scheme::Bearer) => Ok(()),
        (None, Scheme::Dpop) => Err(PresentationError::InvalidToken(
            "the token is not bound to a DPoP key",
        )),
    }
}
