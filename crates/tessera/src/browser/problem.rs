//! Errors of the browser face and their RFC 9457 problem responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// What a [`Session`](super::Session) operation can fail with. Its
/// [`IntoResponse`] answers an `application/problem+json` document with the
/// service's codes (SPEC §3), so handlers can use `?`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operation needs a signed-in session and the request has none.
    #[error("not signed in")]
    NotAuthenticated,
    /// No such session of this subject (another subject's handle is
    /// reported the same way, so handles cannot be probed).
    #[error("no such session")]
    NotFound,
    /// The request did not pass through [`SessionLayer`](super::SessionLayer).
    #[error("the session layer is not installed on this route")]
    LayerMissing,
    #[error(transparent)]
    Core(#[from] tessera_core::Error),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The stable problem `code`.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        use tessera_core::Error as C;
        match self {
            Error::NotAuthenticated => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Error::LayerMissing => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Error::Core(C::SessionInvalid) => (StatusCode::UNAUTHORIZED, "session_invalid"),
            Error::Core(C::SessionExpired) => (StatusCode::UNAUTHORIZED, "session_expired"),
            Error::Core(C::SessionRevoked) => (StatusCode::UNAUTHORIZED, "session_revoked"),
            Error::Core(C::NotFound) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Core(C::Validation { .. }) => (StatusCode::BAD_REQUEST, "validation_failed"),
            Error::Core(C::DataTooLarge { .. }) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::Core(C::Conflict) => (StatusCode::CONFLICT, "conflict"),
            Error::Core(C::Store(_)) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let detail = match &self {
            // Store errors may name files or hosts: not for clients.
            Error::Core(tessera_core::Error::Store(e)) => {
                tracing::error!(error = %e, "session store failed");
                "the session store is unavailable; try again later".to_owned()
            }
            Error::LayerMissing => {
                tracing::error!("a session extractor ran on a route without SessionLayer");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        problem(status, code, &detail)
    }
}

/// An `application/problem+json` response with `Cache-Control: no-store`.
pub(crate) fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = serde_json::json!({
        "type": format!("urn:tessera:error:{code}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub(crate) fn csrf_rejected(detail: &str) -> Response {
    problem(StatusCode::FORBIDDEN, "csrf_rejected", detail)
}
