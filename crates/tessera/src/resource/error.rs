//! Errors of the resource-server verifier. No message ever contains the token
//! or any part of it.

/// Why a token was refused. Every variant except
/// [`VerifyError::RevocationStatusUnavailable`] is an RFC 6750
/// `invalid_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Longer than [`MAX_TOKEN_BYTES`](super::MAX_TOKEN_BYTES).
    #[error("token too long")]
    TooLong,
    /// Not a compact JWS: not exactly three non-empty base64url segments,
    /// padding, whitespace or other characters.
    #[error("token is not a compact JWS")]
    Malformed,
    /// The protected header is not base64url JSON of the expected shape.
    #[error("token header is malformed")]
    BadHeader,
    /// `typ` is not `at+jwt` / `application/at+jwt`.
    #[error("token is not an access token (typ)")]
    WrongType,
    /// The header has `crit`: no extension is understood.
    #[error("token header has critical extensions")]
    CriticalExtension,
    /// The header carries key material or a key location (`jwk`, `jku`,
    /// `x5u`, `x5c`) or is a JWE header (`enc`, `zip`).
    #[error("token header names keys or encryption")]
    UnsupportedHeader,
    /// No `kid`, or a `kid` longer than [`MAX_KID_BYTES`](super::MAX_KID_BYTES).
    #[error("token key id is missing or invalid")]
    BadKid,
    /// No key with this `kid` (after the allowed refetch).
    #[error("token key id is unknown")]
    UnknownKid,
    /// `alg` missing, `none` in any spelling, or not exactly the key's algorithm.
    #[error("token algorithm does not match the key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// The claims are not JSON of the expected shape, or a required claim
    /// (`iss sub aud exp iat jti client_id sid`) is missing or empty.
    #[error("token claims are malformed or incomplete")]
    InvalidClaims,
    /// `iss` is not exactly the configured issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// `aud` does not contain this resource server.
    #[error("token audience does not include this resource server")]
    WrongAudience,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The token is bound to a key or certificate (`cnf`) and cannot be used
    /// as a plain Bearer token.
    #[error("token is sender-constrained")]
    SenderConstrained,
    /// The token's session (`sid`) was revoked.
    #[error("token revoked")]
    Revoked,
    /// Fail-closed mode: the revocation feed has been out of sync too long.
    #[error("revocation status unavailable")]
    RevocationStatusUnavailable,
}

impl VerifyError {
    /// The RFC 6750 `error_description`: a fixed text, never token content.
    pub fn description(self) -> &'static str {
        match self {
            Self::Expired => "The access token expired",
            Self::Revoked => "The access token was revoked",
            Self::NotYetValid => "The access token is not valid yet",
            Self::WrongAudience => "The access token is not meant for this resource server",
            Self::RevocationStatusUnavailable => "Token revocation status is unavailable",
            _ => "The access token is invalid",
        }
    }
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
