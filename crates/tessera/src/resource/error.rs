//! Errors of the resource-server verifier. No message ever contains the token
//! or any part of it. Why a token was refused is core's [`VerifyError`], the
//! same for every face.

use tessera_core::access::KeySetError;
pub use tessera_core::access::VerifyError;
use tessera_core::dpop::PresentationError;

/// Why [`Verifier::verify_request`](super::Verifier::verify_request)
/// refused a request: the token itself, or how the request presented it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The token was refused (or the revocation status is unknown).
    #[error(transparent)]
    Token(#[from] VerifyError),
    /// The token is valid but not presented as what it is bound to: the
    /// scheme, the DPoP proof or the client certificate.
    #[error(transparent)]
    Presentation(#[from] PresentationError),
}

/// Fetching or reading a JWKS failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The request failed (connection, timeout, …).
    #[error("JWKS request failed: {0}")]
    Http(String),
    /// The server answered with a non-200 status.
    #[error("JWKS request answered {0}")]
    Status(u16),
    /// The document is larger than the limit.
    #[error("JWKS document too large")]
    TooLarge,
    /// Not a JSON object with a `keys` array.
    #[error("JWKS document is malformed: {0}")]
    Malformed(String),
    /// No key in the document is usable for verifying access tokens.
    #[error("JWKS has no usable signing key")]
    NoUsableKeys,
}

impl From<KeySetError> for JwksError {
    fn from(e: KeySetError) -> Self {
        match e {
            KeySetError::Malformed(m) => JwksError::Malformed(m.to_owned()),
            KeySetError::NoUsableKeys => JwksError::NoUsableKeys,
        }
    }
}

/// A [`VerifierConfig`](super::VerifierConfig) that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `leeway_secs` above 60.
    #[error("leeway_secs = {0} is above the maximum of 60")]
    LeewayTooLarge(u64),
    /// A required field is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// Another invalid value.
    #[error("{0}")]
    Invalid(&'static str),
    /// The static JWKS is unusable.
    #[error(transparent)]
    Jwks(#[from] JwksError),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(String),
}
