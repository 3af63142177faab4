//! axum integration: the [`Authenticated`] extractor and RFC 6750 rejections.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::VerifyError;
use super::verify::VerifiedToken;
use super::{MAX_TOKEN_BYTES, Verifier};

/// A request that carried a valid access token in `Authorization: Bearer …`.
///
/// The token is read from the `Authorization` header only — never from a
/// query parameter or a form body (tokens do not belong in URLs, SPEC §5).
/// The [`Verifier`] comes from the router state (`Verifier: FromRef<S>`).
///
/// Rejections ([`AuthRejection`], RFC 6750 §3): no Bearer credentials → 401
/// `WWW-Authenticate: Bearer`; an unusable token → 401
/// `WWW-Authenticate: Bearer error="invalid_token"`; a malformed
/// `Authorization` (several headers, empty token) → 400 `invalid_request`.
///
/// `Option<Authenticated>` is `None` when no credentials were sent and still
/// rejects a bad token.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Arc<VerifiedToken>);

impl std::ops::Deref for Authenticated {
    type Target = VerifiedToken;
    fn deref(&self) -> &VerifiedToken {
        &self.0
    }
}

/// Refuses with 403 `insufficient_scope` unless the token grants `scope`
/// (RFC 6750 §3.1, checklist JW-17).
pub fn require_scope(token: &VerifiedToken, scope: &str) -> Result<(), AuthRejection> {
    if token.has_scope(scope) {
        Ok(())
    } else {
        Err(AuthRejection::InsufficientScope(scope.to_owned()))
    }
}

/// Why a request was not authenticated; answers per RFC 6750.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthRejection {
    /// No Bearer credentials: 401 `WWW-Authenticate: Bearer`, no error code.
    MissingCredentials,
    /// A malformed `Authorization` header: 400 `invalid_request`.
    InvalidRequest(&'static str),
    /// The token was refused: 401 `invalid_token` (or 503 for
    /// [`VerifyError::RevocationStatusUnavailable`]).
    InvalidToken(VerifyError),
    /// The token lacks a scope: 403 `insufficient_scope`.
    InsufficientScope(String),
}

impl From<VerifyError> for AuthRejection {
    fn from(e: VerifyError) -> Self {
        Self::InvalidToken(e)
    }
}

impl std::fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingCredentials => f.write_str("no bearer token"),
            Self::InvalidRequest(d) => f.write_str(d),
            Self::InvalidToken(e) => write!(f, "{e}"),
            Self::InsufficientScope(s) => write!(f, "scope {s} required"),
        }
    }
}

impl std::error::Error for AuthRejection {}

/// Keeps only RFC 6750 `scope-token` characters, so a developer-supplied
/// scope can never break the quoted string.
fn scope_token(scope: &str) -> String {
    scope
        .chars()
        .filter(|c| matches!(*c, '\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e'))
        .collect()
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let (status, challenge, error, description): (StatusCode, String, Option<&str>, &str) = match &self {
            Self::MissingCredentials => (StatusCode::UNAUTHORIZED, "Bearer".to_owned(), None, ""),
            Self::InvalidRequest(d) => (
                StatusCode::BAD_REQUEST,
                format!("Bearer error=\"invalid_request\", error_description=\"{d}\""),
                Some("invalid_request"),
                d,
            ),
            Self::InvalidToken(VerifyError::RevocationStatusUnavailable) => {
                let d = VerifyError::RevocationStatusUnavailable.description();
                let mut response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(
                        serde_json::json!({"error": "temporarily_unavailable", "error_description": d}),
                    ),
                )
                    .into_response();
                let headers = response.headers_mut();
                headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("5"));
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return response;
            }
            Self::InvalidToken(e) => {
                let d = e.description();
                (
                    StatusCode::UNAUTHORIZED,
                    format!("Bearer error=\"invalid_token\", error_description=\"{d}\""),
                    Some("invalid_token"),
                    d,
                )
            }
            Self::InsufficientScope(scope) => {
                let scope = scope_token(scope);
                (
                    StatusCode::FORBIDDEN,
                    format!(
                        "Bearer error=\"insufficient_scope\", error_description=\"The access token lacks a required scope\", scope=\"{scope}\""
                    ),
                    Some("insufficient_scope"),
                    "The access token lacks a required scope",
                )
            }
        };
        let body = match error {
            Some(error) => serde_json::json!({"error": error, "error_description": description}),
            None => {
                serde_json::json!({"error": "unauthorized", "error_description": "A bearer access token is required"})
            }
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            headers.insert(WWW_AUTHENTICATE, value);
        } else {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// The Bearer token of the request: `Ok(None)` when there are no Bearer
/// credentials (no `Authorization`, or another scheme).
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthRejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthRejection::InvalidRequest(
            "More than one Authorization header",
        ));
    }
    let bytes = value.as_bytes();
    // "Bearer" (case-insensitive, RFC 9110 §11.1) then one or more spaces.
    let Some(scheme) = bytes.get(..6) else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    let rest = &bytes[6..];
    if rest.is_empty() {
        return Err(AuthRejection::InvalidRequest("Empty bearer token"));
    }
    if rest[0] != b' ' {
        // e.g. "BearerX …": another scheme.
        return Ok(None);
    }
    let token = rest.trim_ascii_start();
    if token.is_empty() {
        return Err(AuthRejection::InvalidRequest("Empty bearer token"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthRejection::InvalidToken(VerifyError::TooLong));
    }
    // Header values are visible ASCII here; the verifier checks the charset.
    std::str::from_utf8(token)
        .map(Some)
        .map_err(|_| AuthRejection::InvalidToken(VerifyError::Malformed))
}

impl<S> FromRequestParts<S> for Authenticated
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?.ok_or(AuthRejection::MissingCredentials)?;
        let verifier = Verifier::from_ref(state);
        verifier
            .verify(token)
            .await
            .map(Authenticated)
            .map_err(AuthRejection::from)
    }
}

impl<S> OptionalFromRequestParts<S> for Authenticated
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let Some(token) = bearer_token(&parts.headers)? else {
            return Ok(None);
        };
        let verifier = Verifier::from_ref(state);
        verifier
            .verify(token)
            .await
            .map(|t| Some(Authenticated(t)))
            .map_err(AuthRejection::from)
    }
}
