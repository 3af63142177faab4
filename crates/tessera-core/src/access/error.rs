//! Why an access token was refused: one enum for every face (the library's
//! resource layer, `/auth/verify`, introspection and revocation). No message
//! ever contains the token or any part of it.

/// Why an access token was refused. [`verify`](super::verify) returns every
/// variant but the last two, which the callers' revocation checks return
/// (the library's revocation feed, the service's session lookup), so a
/// refusal reads the same whoever made it. Every variant except
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
    /// The protected header is not base64url JSON of the expected shape, or
    /// longer than [`MAX_HEADER_B64`](super::MAX_HEADER_B64).
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
    /// No key with this `kid`.
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
    /// `iss` is not exactly the expected issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// `aud` does not contain the expected audience (or, where any audience
    /// is accepted, names none).
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
    /// The token's session (`sid`) was revoked or has ended.
    #[error("token revoked")]
    Revoked,
    /// Fail-closed mode: the revocation status is not known well enough to
    /// accept anything (the library's feed has been out of sync too long).
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
            Self::SenderConstrained => "A sender-constrained access token needs its proof of possession",
            Self::RevocationStatusUnavailable => "Token revocation status is unavailable",
            _ => "The access token is invalid",
        }
    }
}
