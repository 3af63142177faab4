use crate::store::StoreError;

/// Everything the core can refuse or fail with. The HTTP edge maps each
/// variant to one RFC 9457 problem `code` (SPEC §3).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed, unknown, or no longer current token.
    #[error("the session token is not valid")]
    SessionInvalid,
    #[error("the session has expired")]
    SessionExpired,
    #[error("the session has been revoked")]
    SessionRevoked,
    #[error("no such session")]
    NotFound,
    /// Input that breaks a rule; `field` names the offending JSON member.
    #[error("{field}: {message}")]
    Validation { field: &'static str, message: String },
    #[error("session data is larger than {limit} bytes")]
    DataTooLarge { limit: usize },
    /// Lost a compare-and-swap race too many times; the caller may retry.
    #[error("the session was changed concurrently; retry")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::Validation {
            field,
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
