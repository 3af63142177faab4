//! The OAuth errors of the token endpoints, and how core errors map onto them.

use crate::error::Error;
use crate::store::StoreError;

/// RFC 6749 §5.2 errors (plus RFC 8707 `invalid_target`).
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("client authentication failed")]
    InvalidClient,
    #[error("{0}")]
    InvalidGrant(&'static str),
    #[error("the client may not use this grant")]
    UnauthorizedClient,
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    #[error("{0}")]
    InvalidScope(String),
    #[error("{0}")]
    InvalidTarget(String),
    /// RFC 9449 §5: the DPoP proof is missing where required, or invalid.
    #[error("{0}")]
    InvalidDpopProof(String),
    /// The store (or key material) is unavailable: 503, never a grant.
    #[error("temporarily unavailable")]
    Unavailable(String),
}

impl OAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::InvalidTarget(_) => "invalid_target",
            OAuthError::InvalidDpopProof(_) => "invalid_dpop_proof",
            OAuthError::Unavailable(_) => "temporarily_unavailable",
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        OAuthError::Unavailable(e.to_string())
    }
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(s) => s.into(),
            Error::SessionInvalid | Error::SessionExpired | Error::SessionRevoked | Error::NotFound => {
                OAuthError::InvalidGrant("the session is no longer active")
            }
            other => OAuthError::InvalidRequest(other.to_string()),
        }
    }
}
