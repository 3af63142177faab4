//! RFC 9457 problem documents: the one error type of the HTTP edge.
//!
//! Every failure a handler, extractor or middleware produces is an
//! [`ApiError`]; its [`IntoResponse`] writes
//! `{"type": "urn:tessera:error:<code>", "title", "status", "detail", "code"}`
//! as `application/problem+json`. Codes and statuses are pinned in
//! `docs/CONTRACTS.md`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tessera_core::{Error as CoreError, StoreError};

pub const PROBLEM_JSON: &str = "application/problem+json";

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
    /// The store could not answer; verification fails closed.
    #[error("the session store is unavailable; try again later")]
    StoreUnavailable,
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

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::SessionInvalid => "session_invalid",
            ApiError::SessionExpired => "session_expired",
            ApiError::SessionRevoked => "session_revoked",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::HeadersTooLarge(_) => "headers_too_large",
            ApiError::Validation(_) => "validation_failed",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::Internal => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::SessionInvalid
            | ApiError::SessionExpired
            | ApiError::SessionRevoked
            | ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            ApiError::SessionInvalid => "Session token invalid",
            ApiError::SessionExpired => "Session expired",
            ApiError::SessionRevoked => "Session revoked",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound(_) => "Not found",
            ApiError::MethodNotAllowed(_) => "Method not allowed",
            ApiError::Conflict(_) => "Conflict",
            ApiError::PayloadTooLarge(_) => "Payload too large",
            ApiError::UnsupportedMediaType(_) => "Unsupported media type",
            ApiError::HeadersTooLarge(_) => "Request headers too large",
            ApiError::Validation(_) => "Validation failed",
            ApiError::RequestTimeout(_) => "Request timeout",
            ApiError::StoreUnavailable => "Store unavailable",
            ApiError::Internal => "Internal error",
        }
    }
}

#[derive(Debug, Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Problem {
            type_: format!("urn:tessera:error:{}", self.code()),
            title: self.title(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut res = (status, bytes).into_response();
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let ApiError::Unauthorized(_) = self {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::StoreUnavailable = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
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
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::SessionInvalid => ApiError::SessionInvalid,
            CoreError::SessionExpired => ApiError::SessionExpired,
            CoreError::SessionRevoked => ApiError::SessionRevoked,
            CoreError::NotFound => ApiError::not_found("no active session with this handle"),
            CoreError::Validation { field, message } => ApiError::Validation(format!("{field}: {message}")),
            CoreError::DataTooLarge { limit } => ApiError::PayloadTooLarge(format!(
                "data: the session data would be larger than {limit} bytes"
            )),
            CoreError::Conflict => ApiError::Conflict("the session was changed concurrently; retry".into()),
            CoreError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // Store messages name no secret (the store sees only hashes).
        tracing::error!(error = %e, "store error");
        ApiError::StoreUnavailable
    }
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
            let a = ApiError::from(e);
            assert_eq!(a.code(), code);
            assert_eq!(a.status().as_u16(), status);
        }
    }
}
