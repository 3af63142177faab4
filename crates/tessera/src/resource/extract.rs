//! axum integration: the [`Authenticated`] extractor and its rejections
//! (RFC 6750 §3, RFC 9449 §7), with the `Authorization`/`DPoP` reading and
//! the `WWW-Authenticate` challenges of `tessera_http::bearer`, the ones
//! the service's `/auth/verify` uses.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts, OriginalUri};
use axum::http::header::{CACHE_CONTROL, HOST, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tessera_core::dpop::{PresentationError, Scheme};
use tessera_core::model::Binding;
use tessera_http::bearer::{self, AccessCredential, DPOP_NONCE};

use super::error::{RequestError, VerifyError};
use super::verify::{ResourceRequest, VerifiedToken};
use super::{MAX_TOKEN_BYTES, Verifier};

/// A request that carried a valid access token, presented as what it is
/// bound to: `Authorization: Bearer …` for an unbound token (or a
/// certificate-bound one, over a connection with that
/// [`ClientCertThumbprint`]), `Authorization: DPoP …` with one fresh `DPoP`
/// proof of its key for a DPoP-bound one (see
/// [`Verifier::verify_request`]).
///
/// The token is read from the `Authorization` header only — never from a
/// query parameter or a form body (tokens do not belong in URLs, SPEC §5).
/// The [`Verifier`] comes from the router state (`Verifier: FromRef<S>`).
///
/// Rejections ([`AuthRejection`]): no credentials → 401
/// `WWW-Authenticate: Bearer, DPoP algs="…"`; an unusable token → 401
/// `invalid_token` in the scheme it came with (`Bearer error=…` or `DPoP
/// error=…`); a bad proof → 401 `DPoP error="invalid_dpop_proof"`; a
/// missing or stale server nonce → 401 `DPoP error="use_dpop_nonce"` with
/// a `DPoP-Nonce` header; a malformed `Authorization` (several headers,
/// empty token) → 400 `invalid_request`.
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

/// The TLS client certificate of a request (RFC 8705 §3.1 thumbprint),
/// shared with the service: whatever terminates TLS inserts it as a
/// request extension, or a middleware that takes it from a proxy it trusts
/// and nothing else; the extractor never reads it from a header. A
/// certificate-bound token is accepted only with the same thumbprint.
pub use tessera_http::bearer::ClientCertThumbprint;

/// Refuses with 403 `insufficient_scope` unless the token grants `scope`
/// (RFC 6750 §3.1, checklist JW-17), in the scheme the token was
/// presented with.
pub fn require_scope(token: &VerifiedToken, scope: &str) -> Result<(), AuthRejection> {
    if token.has_scope(scope) {
        return Ok(());
    }
    // The extractor accepted the token, so a DPoP-bound one came with the
    // DPoP scheme and any other as Bearer.
    let scheme = match token.claims.cnf.as_ref().and_then(Binding::from_cnf) {
        Some(Binding::Dpop { .. }) => Scheme::Dpop,
        _ => Scheme::Bearer,
    };
    Err(AuthRejection {
        reason: RejectionReason::InsufficientScope(scope.to_owned()),
        scheme: Some(scheme),
        dpop_algs: Arc::from(""),
        dpop_nonce: None,
    })
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionReason {
    /// No credentials (no `Authorization`, or a scheme other than Bearer
    /// and DPoP): 401, no error code.
    MissingCredentials,
    /// A malformed `Authorization` header: 400 `invalid_request`.
    InvalidRequest(&'static str),
    /// The token was refused: 401 `invalid_token` (or 503 for
    /// [`VerifyError::RevocationStatusUnavailable`]).
    InvalidToken(VerifyError),
    /// The token is valid but not presented as what it is bound to: 401
    /// with [`PresentationError::error_code`], or 503 when the DPoP replay
    /// check is unavailable (the replay cache is full).
    Presentation(PresentationError),
    /// The token lacks a scope: 403 `insufficient_scope`.
    InsufficientScope(String),
}

impl std::fmt::Display for RejectionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingCredentials => f.write_str("no access token"),
            Self::InvalidRequest(d) => f.write_str(d),
            Self::InvalidToken(e) => write!(f, "{e}"),
            Self::Presentation(e) => write!(f, "{e}"),
            Self::InsufficientScope(s) => write!(f, "scope {s} required"),
        }
    }
}

/// A refused request and how to answer it (RFC 6750 §3, RFC 9449 §7): the
/// [`RejectionReason`], the scheme the credentials came with (the
/// challenge answers in it) and what to offer the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRejection {
    reason: RejectionReason,
    /// `None` when no usable credentials were sent.
    scheme: Option<Scheme>,
    /// The proof algorithms to offer in a `DPoP algs=` challenge; empty
    /// offers none.
    dpop_algs: Arc<str>,
    /// A fresh nonce for `DPoP-Nonce` (with `use_dpop_nonce`).
    dpop_nonce: Option<String>,
}

impl AuthRejection {
    pub fn reason(&self) -> &RejectionReason {
        &self.reason
    }

    /// The scheme the refused credentials came with.
    pub fn scheme(&self) -> Option<Scheme> {
        self.scheme
    }

    /// The status of the answer.
    pub fn status(&self) -> StatusCode {
        match &self.reason {
            RejectionReason::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            RejectionReason::InvalidToken(VerifyError::RevocationStatusUnavailable)
            | RejectionReason::Presentation(PresentationError::Unavailable(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            RejectionReason::InsufficientScope(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// A Bearer token refused by [`Verifier::verify`]: answered as before DPoP
/// existed, with a `Bearer` challenge only (no verifier at hand to say
/// which proof algorithms it accepts).
impl From<VerifyError> for AuthRejection {
    fn from(e: VerifyError) -> Self {
        Self {
            reason: RejectionReason::InvalidToken(e),
            scheme: Some(Scheme::Bearer),
            dpop_algs: Arc::from(""),
            dpop_nonce: None,
        }
    }
}

impl std::fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.reason.fmt(f)
    }
}

impl std::error::Error for AuthRejection {}

impl Verifier {
    /// The answer to a request that [`Verifier::verify_request`] refused,
    /// as the [`Authenticated`] extractor gives it: `scheme` is the one the
    /// token came with; a `use_dpop_nonce` carries a fresh nonce.
    pub fn rejection(&self, scheme: Scheme, error: RequestError) -> AuthRejection {
        let reason = match error {
            RequestError::Token(e) => RejectionReason::InvalidToken(e),
            RequestError::Presentation(e) => RejectionReason::Presentation(e),
        };
        self.reject(Some(scheme), reason)
    }

    fn reject(&self, scheme: Option<Scheme>, reason: RejectionReason) -> AuthRejection {
        let dpop_nonce = match reason {
            RejectionReason::Presentation(PresentationError::UseNonce) => self.fresh_dpop_nonce(),
            _ => None,
        };
        AuthRejection {
            reason,
            scheme,
            dpop_algs: Arc::clone(&self.inner.dpop_algs),
            dpop_nonce,
        }
    }
}

/// Keeps only RFC 6750 `scope-token` characters, so a developer-supplied
/// scope can never break the quoted string.
fn scope_token(scope: &str) -> String {
    scope
        .chars()
        .filter(|c| matches!(*c, '\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e'))
        .collect()
}

/// 503: an outage, not a bad token, so clients retry rather than discard
/// their tokens.
fn unavailable(description: &str) -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({"error": "temporarily_unavailable", "error_description": description})),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let status = self.status();
        let algs = &*self.dpop_algs;
        let (error, description, challenge): (Option<&str>, Cow<'_, str>, String) = match &self.reason {
            RejectionReason::MissingCredentials => (
                None,
                Cow::Borrowed("An access token is required"),
                bearer::challenge(None, None, algs),
            ),
            RejectionReason::InvalidRequest(d) => (
                Some("invalid_request"),
                Cow::Borrowed(*d),
                bearer::challenge(self.scheme, Some(("invalid_request", d)), algs),
            ),
            RejectionReason::InvalidToken(VerifyError::RevocationStatusUnavailable) => {
                return unavailable(VerifyError::RevocationStatusUnavailable.description());
            }
            RejectionReason::Presentation(PresentationError::Unavailable(_)) => {
                return unavailable("The DPoP replay check is unavailable");
            }
            RejectionReason::InvalidToken(e) => {
                let d = e.description();
                (
                    Some("invalid_token"),
                    Cow::Borrowed(d),
                    bearer::challenge(self.scheme, Some(("invalid_token", d)), algs),
                )
            }
            RejectionReason::Presentation(e) => {
                let (code, d) = (e.error_code(), e.to_string());
                let challenge = bearer::challenge(self.scheme, Some((code, &d)), algs);
                (Some(code), Cow::Owned(d), challenge)
            }
            RejectionReason::InsufficientScope(scope) => {
                // `bearer::challenge` has no `scope` parameter.
                let d = "The access token lacks a required scope";
                let scheme = match self.scheme {
                    Some(Scheme::Dpop) => "DPoP",
                    _ => "Bearer",
                };
                let challenge = format!(
                    "{scheme} error=\"insufficient_scope\", error_description=\"{d}\", scope=\"{}\"",
                    scope_token(scope)
                );
                (Some("insufficient_scope"), Cow::Borrowed(d), challenge)
            }
        };
        let body = match error {
            Some(error) => serde_json::json!({"error": error, "error_description": description}),
            None => serde_json::json!({"error": "unauthorized", "error_description": description}),
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        let challenge =
            HeaderValue::from_str(&challenge).unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        headers.insert(WWW_AUTHENTICATE, challenge);
        if let Some(nonce) = self
            .dpop_nonce
            .as_deref()
            .and_then(|n| HeaderValue::from_str(n).ok())
        {
            headers.insert(DPOP_NONCE, nonce);
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// Reads and verifies the request's credentials: `Ok(None)` when there are
/// none (no `Authorization`, or a scheme other than Bearer and DPoP).
async fn authenticate(
    parts: &Parts,
    verifier: &Verifier,
) -> Result<Option<Arc<VerifiedToken>>, AuthRejection> {
    let (scheme, token) = match bearer::access_credential(&parts.headers) {
        AccessCredential::None => return Ok(None),
        AccessCredential::Malformed(why) => {
            return Err(verifier.reject(None, RejectionReason::InvalidRequest(why)));
        }
        AccessCredential::Token(scheme, token) => (scheme, token),
    };
    if token.len() > MAX_TOKEN_BYTES {
        return Err(verifier.reject(Some(scheme), RejectionReason::InvalidToken(VerifyError::TooLong)));
    }
    // In a nested router `parts.uri` lost its prefix; `htu` names the
    // whole path.
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |original| &original.0);
    let host = match uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => parts.headers.get(HOST).and_then(|h| h.to_str().ok()),
    };
    // The connection's certificate (a TLS acceptor's extension), else the
    // one a configured proxy header forwards.
    let forwarded = match (
        parts.extensions.get::<ClientCertThumbprint>(),
        &verifier.inner.client_cert_header,
    ) {
        (None, Some(name)) => bearer::forwarded_client_cert(&parts.headers, name),
        _ => None,
    };
    let request = ResourceRequest {
        scheme,
        proof: bearer::dpop_proof(&parts.headers),
        method: parts.method.as_str(),
        path: uri.path(),
        host,
        client_cert: parts
            .extensions
            .get::<ClientCertThumbprint>()
            .or(forwarded.as_ref())
            .map(|c| c.0.as_str()),
    };
    verifier
        .verify_request(token, &request)
        .await
        .map(Some)
        .map_err(|e| verifier.rejection(scheme, e))
}

impl<S> FromRequestParts<S> for Authenticated
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Verifier::from_ref(state);
        match authenticate(parts, &verifier).await? {
            Some(token) => Ok(Authenticated(token)),
            None => Err(verifier.reject(None, RejectionReason::MissingCredentials)),
        }
    }
}

impl<S> OptionalFromRequestParts<S> for Authenticated
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let verifier = Verifier::from_ref(state);
        Ok(authenticate(parts, &verifier).await?.map(Authenticated))
    }
}
