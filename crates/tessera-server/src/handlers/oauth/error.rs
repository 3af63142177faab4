//! RFC 6749 §5.2 errors of the OAuth endpoints, and the `no-store` answers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use tessera_core::OAuthError;

use super::BASIC_CHALLENGE;
use crate::problem::ErrorCode;

/// An RFC 6749 §5.2 error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthFailure {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) description: String,
    pub(super) challenge: Option<&'static str>,
    /// A fresh `DPoP-Nonce` to send (RFC 9449 §8: with `use_dpop_nonce`).
    pub(super) dpop_nonce: Option<String>,
    /// `Retry-After` seconds of a 429.
    pub(super) retry_after: Option<u64>,
}

impl OAuthFailure {
    pub(super) fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        OAuthFailure {
            status,
            code,
            description: clean_description(&description.into()),
            challenge: None,
            dpop_nonce: None,
            retry_after: None,
        }
    }

    /// Over an abuse limit: 429 `slow_down`, the code RFC 8628 registers
    /// for a token-endpoint client that must slow down (RFC 6749 has none
    /// for rate limits), with `Retry-After`.
    pub(super) fn rate_limited(l: crate::limits::Limited) -> Self {
        OAuthFailure {
            retry_after: Some(l.retry_after_secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                format!(
                    "too many requests ({}); retry after {} s",
                    l.limit, l.retry_after_secs
                ),
            )
        }
    }

    pub(super) fn request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 401 `invalid_client`; with the Basic challenge when HTTP Basic was
    /// used (RFC 6749 §5.2).
    pub(super) fn client(basic: bool, description: impl Into<String>) -> Self {
        OAuthFailure {
            challenge: basic.then_some(BASIC_CHALLENGE),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
        }
    }

    pub(super) fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the service is temporarily unavailable; retry",
        )
    }

    pub(super) fn from_core(e: OAuthError, basic: bool) -> Self {
        match e {
            OAuthError::InvalidClient => Self::client(basic, e.to_string()),
            OAuthError::Unavailable(detail) => {
                tracing::error!(error = %detail, "token service unavailable");
                Self::unavailable()
            }
            other => Self::new(StatusCode::BAD_REQUEST, other.code(), other.to_string()),
        }
    }
}

impl From<tessera_core::StoreError> for OAuthFailure {
    fn from(e: tessera_core::StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        Self::unavailable()
    }
}

/// `error_description` allows only `%x20-21 / %x23-5B / %x5D-7E`: the
/// rule the resource-server challenges use too.
fn clean_description(s: &str) -> String {
    tessera_http::bearer::quotable(s)
}

#[derive(Serialize)]
pub(super) struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl IntoResponse for OAuthFailure {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            error_description: &self.description,
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        if let Some(c) = self.challenge {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        if let Some(nonce) = self.dpop_nonce.as_deref()
            && let Ok(v) = HeaderValue::from_str(nonce)
        {
            res.headers_mut().insert(tessera_http::bearer::DPOP_NONCE, v);
        }
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res.extensions_mut().insert(ErrorCode(self.code));
        no_store(res)
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1, EX-13).
pub(super) fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

pub(super) fn answer(r: Result<Response, OAuthFailure>) -> Response {
    match r {
        Ok(res) => no_store(res),
        Err(e) => e.into_response(),
    }
}
