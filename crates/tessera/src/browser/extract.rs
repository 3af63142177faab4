//! Extractors: `MaybeSession`, `RequireSession`, `RequireLevel<N>`,
//! `RequireRecentAuth<N, SECS>`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use tessera_http::problem::Code;

use super::problem::{Error, problem};
use super::session::Session;

/// The session if the request is signed in, else `None`. Never rejects
/// (except when the layer is missing, a programming error).
#[derive(Debug, Clone)]
pub struct MaybeSession(pub Option<Session>);

/// A signed-in session. Otherwise 401 problem `unauthorized`, or a 303
/// redirect to the layer's
/// [`login_redirect`](super::SessionLayer::login_redirect).
#[derive(Debug, Clone)]
pub struct RequireSession(pub Session);

/// A signed-in session with `auth.level >= N`. Signed out: as
/// [`RequireSession`]. Too low: 403 with `WWW-Authenticate: Bearer
/// error="insufficient_user_authentication", acr_values="N"` (RFC 9470), or a
/// 303 redirect to the layer's
/// [`step_up_redirect`](super::SessionLayer::step_up_redirect).
#[derive(Debug, Clone)]
pub struct RequireLevel<const N: u8>(pub Session);

/// Like [`RequireLevel`], and the last authentication at most `MAX_AGE_SECS`
/// seconds ago (EX-14: sensitive changes need recent authentication). The
/// 403 adds `max_age` to `WWW-Authenticate`.
#[derive(Debug, Clone)]
pub struct RequireRecentAuth<const N: u8, const MAX_AGE_SECS: u32>(pub Session);

/// Why a session extractor refused the request.
#[derive(Debug)]
pub enum Rejection {
    LayerMissing,
    /// No signed-in session; `redirect` is the login URL if configured.
    NotAuthenticated {
        redirect: Option<String>,
    },
    /// Signed in, but not with the required level or recently enough.
    InsufficientAuth {
        level: u8,
        max_age_secs: Option<u32>,
        redirect: Option<String>,
    },
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::LayerMissing => Error::LayerMissing.into_response(),
            Rejection::NotAuthenticated { redirect: Some(to) }
            | Rejection::InsufficientAuth {
                redirect: Some(to), ..
            } => {
                let mut r = Redirect::to(&to).into_response();
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            Rejection::NotAuthenticated { redirect: None } => problem(Code::Unauthorized, "sign in first"),
            Rejection::InsufficientAuth {
                level, max_age_secs, ..
            } => {
                let mut challenge = format!(
                    "Bearer error=\"insufficient_user_authentication\", error_description=\"A higher or more recent authentication is required\", acr_values=\"{level}\""
                );
                if let Some(m) = max_age_secs {
                    challenge.push_str(&format!(", max_age={m}"));
                }
                let mut r = problem(
                    Code::InsufficientUserAuthentication,
                    "step-up authentication required",
                );
                if let Ok(v) = HeaderValue::try_from(challenge) {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                r
            }
        }
    }
}

fn session_of(parts: &Parts) -> Result<Session, Rejection> {
    parts
        .extensions
        .get::<Session>()
        .cloned()
        .ok_or(Rejection::LayerMissing)
}

fn require_session(parts: &Parts) -> Result<Session, Rejection> {
    let s = session_of(parts)?;
    if s.is_authenticated() {
        Ok(s)
    } else {
        Err(Rejection::NotAuthenticated {
            redirect: s.login_redirect_for(parts),
        })
    }
}

fn require(parts: &Parts, level: u8, max_age_secs: Option<u32>) -> Result<Session, Rejection> {
    let s = require_session(parts)?;
    let ok = match max_age_secs {
        Some(m) => s.auth_is_recent(level, i64::from(m)),
        None => s.auth_level() >= level,
    };
    if ok {
        Ok(s)
    } else {
        Err(Rejection::InsufficientAuth {
            level,
            max_age_secs,
            redirect: s.step_up_redirect_for(parts),
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MaybeSession {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let s = session_of(parts)?;
        Ok(MaybeSession(s.is_authenticated().then_some(s)))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequireSession {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        require_session(parts).map(RequireSession)
    }
}

impl<S: Send + Sync, const N: u8> FromRequestParts<S> for RequireLevel<N> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        require(parts, N, None).map(RequireLevel)
    }
}

impl<S: Send + Sync, const N: u8, const MAX_AGE_SECS: u32> FromRequestParts<S>
    for RequireRecentAuth<N, MAX_AGE_SECS>
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        require(parts, N, Some(MAX_AGE_SECS)).map(RequireRecentAuth)
    }
}

/// Percent-encodes a path-and-query for a `next` query parameter, keeping
/// `/` readable (`/reauth?next=/account/password`).
pub(crate) fn encode_next(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$'()*,;:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
