//! Errors of the browser face and their RFC 9457 problem responses,
//! rendered by [`tessera_http::problem`] as the service renders its own.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_http::problem::{Code, Problem, core_detail};

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
    /// Step-up to this level needs a device-bound session (DBSC
    /// `required_level`).
    #[error("authentication level {0} needs a device-bound session (DBSC)")]
    DeviceBindingRequired(u8),
    #[error(transparent)]
    Core(#[from] tessera_core::Error),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        self.kind().status()
    }

    /// The stable problem `code`.
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    fn kind(&self) -> Code {
        match self {
            Error::NotAuthenticated => Code::Unauthorized,
            Error::NotFound => Code::NotFound,
            Error::LayerMissing => Code::Internal,
            Error::DeviceBindingRequired(_) => Code::Forbidden,
            Error::Core(e) => Code::of(e),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let detail = match &self {
            Error::Core(e) => {
                if let tessera_core::Error::Store(e) = e {
                    tracing::error!(error = %e, "session store failed");
                }
                core_detail(e)
            }
            Error::LayerMissing => {
                tracing::error!("a session extractor ran on a route without SessionLayer");
                "internal error".into()
            }
            other => other.to_string().into(),
        };
        problem(self.kind(), &detail)
    }
}

/// An `application/problem+json` response with `Cache-Control: no-store`.
pub(crate) fn problem(code: Code, detail: &str) -> Response {
    let mut resp = Problem::new(code, detail).to_response().map(Body::from);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
