//! The one error type of the HTTP edge.
//!
//! Every failure a handler, extractor or middleware produces is an
//! [`ApiError`]; its [`IntoResponse`] writes the RFC 9457 problem document
//! of [`tessera_http::problem`], whose [`Code`] table (shared with the
//! library) gives each code its status and title. Codes and statuses are
//! pinned in `docs/CONTRACTS.md`.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::{Error as CoreError, StoreError};
pub use tessera_http::problem::PROBLEM_JSON;
use tessera_http::problem::{Code, Problem, core_detail};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("the session token is not valid")]
    SessionInvalid,
    #[error("the session has expired")]
    SessionExpired,
    #[error("the session has been revoked")]
    SessionRevoked,
    /// Missing, malformed, unknown or revoked API key.
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    /// A state-changing cookie request from where it may not come.
    #[error("{0}")]
    CsrfRejected(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    HeadersTooLarge(String),
    /// Malformed JSON, wrong types, unknown fields, rule violations; the
    /// detail names the field.
    #[error("{0}")]
    Validation(String),
    #[error("the request took longer than {0} s")]
    RequestTimeout(u64),
    /// Over an abuse limit (`[rate_limits]`); `Retry-After` says when to
    /// try again.
    #[error("too many requests ({limit}); retry after {retry_after_secs} s")]
    RateLimited {
        limit: &'static str,
        retry_after_secs: u64,
    },
    /// The store could not answer; verification fails closed.
    #[error("the session store is unavailable; try again later")]
    StoreUnavailable,
    /// More requests in progress than `[http] max_in_flight` (shed at once).
    #[error("the service is handling {0} requests, its limit; try again shortly")]
    Overloaded(usize),
    /// A bug. The detail never carries internals.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn validation(detail: impl Into<String>) -> Self {
        ApiError::Validation(detail.into())
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::NotFound(detail.into())
    }

    pub fn kind(&self) -> Code {
        match self {
            ApiError::SessionInvalid => Code::SessionInvalid,
            ApiError::SessionExpired => Code::SessionExpired,
            ApiError::SessionRevoked => Code::SessionRevoked,
            ApiError::Unauthorized(_) => Code::Unauthorized,
            ApiError::Forbidden(_) => Code::Forbidden,
            ApiError::CsrfRejected(_) => Code::CsrfRejected,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::MethodNotAllowed(_) => Code::MethodNotAllowed,
            ApiError::Conflict(_) => Code::Conflict,
            ApiError::PayloadTooLarge(_) => Code::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => Code::UnsupportedMediaType,
            ApiError::HeadersTooLarge(_) => Code::HeadersTooLarge,
            ApiError::Validation(_) => Code::ValidationFailed,
            ApiError::RequestTimeout(_) => Code::RequestTimeout,
            ApiError::RateLimited { .. } => Code::RateLimited,
            ApiError::StoreUnavailable => Code::StoreUnavailable,
            ApiError::Overloaded(_) => Code::Overloaded,
            ApiError::Internal => Code::Internal,
        }
    }

    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    pub fn status(&self) -> StatusCode {
        self.kind().status()
    }

    pub fn title(&self) -> &'static str {
        self.kind().title()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        let mut res = Problem::new(self.kind(), &detail).to_response().map(Body::from);
        let headers = res.headers_mut();
        if let ApiError::Unauthorized(_) = self {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::StoreUnavailable | ApiError::Overloaded(_) = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::RateLimited { retry_after_secs, .. } = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        // Lets the metrics/trace layers see the code without parsing the body.
        res.extensions_mut().insert(ErrorCode(self.code()));
        res
    }
}

/// The problem `code` of an error response, as a response extension.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl From<CoreError> for ApiError {
    /// The code is `Code::of` (a test holds the two together); the detail
    /// is `core_detail`, as the library words it.
    fn from(e: CoreError) -> Self {
        let detail = || core_detail(&e).into_owned();
        match &e {
            CoreError::SessionInvalid => ApiError::SessionInvalid,
            CoreError::SessionExpired => ApiError::SessionExpired,
            CoreError::SessionRevoked => ApiError::SessionRevoked,
            CoreError::NotFound => ApiError::NotFound(detail()),
            CoreError::Validation { .. } => ApiError::Validation(detail()),
            CoreError::DataTooLarge { .. } => ApiError::PayloadTooLarge(detail()),
            CoreError::Conflict => ApiError::Conflict(detail()),
            CoreError::Store(e) => store_unavailable(e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        store_unavailable(&e)
    }
}

fn store_unavailable(e: &StoreError) -> ApiError {
    // Store messages name no secret (the store sees only hashes).
    tracing::error!(error = %e, "store error");
    ApiError::StoreUnavailable
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_rfc9457() {
        let res = ApiError::validation("subject: must be 1 to 256 bytes").into_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "urn:tessera:error:validation_failed");
        assert_eq!(v["code"], "validation_failed");
        assert_eq!(v["status"], 400);
        assert_eq!(v["title"], "Validation failed");
        assert_eq!(v["detail"], "subject: must be 1 to 256 bytes");
    }

    #[test]
    fn unauthorized_challenges_and_core_errors_map() {
        let res = ApiError::Unauthorized("missing API key").into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let cases: [(CoreError, &str, u16); 7] = [
            (CoreError::SessionInvalid, "session_invalid", 401),
            (CoreError::SessionExpired, "session_expired", 401),
            (CoreError::SessionRevoked, "session_revoked", 401),
            (CoreError::NotFound, "not_found", 404),
            (CoreError::Conflict, "conflict", 409),
            (CoreError::DataTooLarge { limit: 2 }, "payload_too_large", 413),
            (
                CoreError::Store(StoreError::Unavailable("down".into())),
                "store_unavailable",
                503,
            ),
        ];
        for (e, code, status) in cases {
            let shared = Code::of(&e);
            let a = ApiError::from(e);
            assert_eq!(a.code(), code);
            assert_eq!(a.status().as_u16(), status);
            assert_eq!(a.kind(), shared, "the service maps {code} as the library does");
        }
    }
}
