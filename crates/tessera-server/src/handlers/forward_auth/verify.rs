//! `GET|HEAD /auth/verify[?level=N]`: a proxy's sub-request about the
//! request it holds (nginx `auth_request`, Traefik ForwardAuth, Envoy
//! ext_authz HTTP). 200 with `X-Tessera-Subject`, `X-Tessera-Session` and
//! `X-Tessera-Auth-Level`, 401 without a live session, 403 for a refused
//! state-changing request (`csrf_rejected`) or too low an authentication
//! level (`?level=N`, RFC 9470 challenge). The session token is read only
//! from the session cookie, never from the query (SPEC §5).
//!
//! The proxied request's method comes from `X-Forwarded-Method` /
//! `X-Original-Method` (the sub-request itself is a GET); without either it
//! is judged state-changing. Its `Origin`, `Sec-Fetch-Site`, `Referer` and
//! host arrive as the proxy forwards them, and `tessera_http::csrf` judges
//! them as the library judges its own requests.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::{Error as CoreError, SessionRecord};
use tessera_http::cookies::{self, SessionValue};
use tessera_http::csrf::{FetchContext, Verdict, is_safe_method, judge};

use super::no_store;
use crate::app::AppState;
use crate::metrics::{forward_auth_counter, record_verify};
use crate::problem::ApiError;

/// The authenticated subject (the session's, as the application chose it).
pub const X_TESSERA_SUBJECT: HeaderName = HeaderName::from_static("x-tessera-subject");
/// The session handle (`ses_…`), public and stable.
pub const X_TESSERA_SESSION: HeaderName = HeaderName::from_static("x-tessera-session");
/// The session's authentication level (decimal).
pub const X_TESSERA_AUTH_LEVEL: HeaderName = HeaderName::from_static("x-tessera-auth-level");

const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");

/// Who the request is, however it proved it. A session cookie keeps the
/// record the store answered with, so a verify copies no string before
/// the answer's headers.
#[derive(Debug)]
enum Identity {
    Session(Arc<SessionRecord>),
    AccessToken {
        subject: String,
        handle: String,
        level: u8,
    },
}

impl Identity {
    fn subject(&self) -> &str {
        match self {
            Identity::Session(rec) => &rec.subject,
            Identity::AccessToken { subject, .. } => subject,
        }
    }

    fn handle(&self) -> &str {
        match self {
            Identity::Session(rec) => &rec.handle,
            Identity::AccessToken { handle, .. } => handle,
        }
    }

    fn level(&self) -> u8 {
        match self {
            Identity::Session(rec) => rec.auth.level,
            Identity::AccessToken { level, .. } => *level,
        }
    }
}

/// Why a verification did not succeed; each maps to an answer and a
/// metrics outcome.
#[derive(Debug)]
enum Refusal {
    /// A 4xx/5xx problem document.
    Api(ApiError, &'static str),
    /// 403 `csrf_rejected`.
    Csrf(&'static str),
    /// 403 with the RFC 9470 step-up challenge.
    StepUp { required: u8, actual: u8 },
    /// 401 for a presented access token that is not (or no longer) valid,
    /// with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1).
    InvalidToken(&'static str),
}

impl Refusal {
    fn outcome(&self) -> &'static str {
        match self {
            Refusal::Api(_, outcome) => outcome,
            Refusal::Csrf(_) => "csrf_rejected",
            Refusal::StepUp { .. } => "insufficient_level",
            Refusal::InvalidToken(_) => "invalid_token",
        }
    }

    fn into_response(self) -> Response {
        match self {
            Refusal::Api(e, _) => e.into_response(),
            Refusal::Csrf(detail) => ApiError::CsrfRejected(detail).into_response(),
            Refusal::InvalidToken(detail) => {
                let mut res = ApiError::Unauthorized(detail).into_response();
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                res
            }
            Refusal::StepUp { required, actual } => {
                let mut res = ApiError::Forbidden(format!(
                    "this resource requires authentication level {required}; the session has level {actual}"
                ))
                .into_response();
                let challenge = format!(
                    "Bearer error=\"insufficient_user_authentication\", \
                     error_description=\"authentication level {required} is required\", \
                     acr_values=\"{required}\""
                );
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                res
            }
        }
    }
}

fn core_refusal(e: CoreError) -> Refusal {
    let outcome = match &e {
        CoreError::SessionInvalid => "invalid",
        CoreError::SessionExpired => "expired",
        CoreError::SessionRevoked => "revoked",
        _ => "error",
    };
    Refusal::Api(ApiError::from(e), outcome)
}

/// What a forward-auth request presents. The session cookie wins when
/// there is one.
#[derive(Debug, PartialEq, Eq)]
enum Credential<'h> {
    None,
    Cookie(&'h str),
    /// A session cookie that cannot be one of our tokens, or several
    /// different values of it (`tessera_http::cookies::SessionValue`).
    InvalidCookie,
    /// `Authorization: Bearer|DPoP <token>` and no session cookie.
    AccessToken {
        scheme: &'static str,
        token: &'h str,
    },
}

impl<'h> Credential<'h> {
    fn of(headers: &'h HeaderMap, cookie_name: &str) -> Self {
        match cookies::session_value(headers, cookie_name) {
            SessionValue::Absent => {}
            SessionValue::One(v) => return Credential::Cookie(v),
            SessionValue::Invalid | SessionValue::Conflicting => return Credential::InvalidCookie,
        }
        match access_token(headers) {
            Some((scheme, token)) => Credential::AccessToken { scheme, token },
            None => Credential::None,
        }
    }
}

/// `Authorization: Bearer <token>` or `DPoP <token>` (scheme
/// case-insensitive).
fn access_token(headers: &HeaderMap) -> Option<(&'static str, &str)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        "Bearer"
    } else if scheme.eq_ignore_ascii_case("dpop") {
        "DPoP"
    } else {
        return None;
    };
    Some((scheme, token.trim()))
}

/// `GET|HEAD /auth/verify[?level=N]`, and any method at `/auth/verify/…`
/// (Envoy's ext_authz check: the proxied method at `path_prefix` + the
/// proxied path, whose query is the proxied request's, not ours).
pub async fn verify(State(state): State<AppState>, req: axum::extract::Request) -> Response {
    // The request itself rather than `HeaderMap` and `RawQuery` extractors,
    // which would copy the headers and the query on every call.
    let query = if req.uri().path() == "/auth/verify" {
        req.uri().query()
    } else {
        None
    };
    let authority = req.uri().authority().map(|a| a.as_str());
    let (outcome, res) = match check(&state, query, req.headers(), authority).await {
        Ok(id) => ("ok", identity_response(&id)),
        Err(refusal) => (refusal.outcome(), refusal.into_response()),
    };
    forward_auth_counter("verify", outcome).increment(1);
    no_store(res)
}

async fn check(
    state: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
    authority: Option<&str>,
) -> Result<Identity, Refusal> {
    let required = required_level(query).map_err(|e| Refusal::Api(e, "bad_request"))?;
    let credential = Credential::of(headers, state.config.cookie.effective_name());
    // Browsers attach cookies, never an `Authorization` header, on their
    // own. Every other request is judged before its cookie is looked at,
    // as the library's layer judges it: a forged request does not even
    // slide the idle expiry, and both faces refuse it for the same reason.
    if !matches!(credential, Credential::AccessToken { .. }) {
        let method = proxied_method(headers);
        // A safe method needs nothing else read.
        if !method.is_some_and(is_safe_method) {
            let ctx = FetchContext::from_headers(headers, method, authority);
            if let Verdict::Refuse(why) = judge(&ctx, &state.config.forward_auth.policy()) {
                return Err(Refusal::Csrf(why.detail()));
            }
        }
    }
    let identity = match credential {
        Credential::None => {
            return Err(Refusal::Api(
                ApiError::Unauthorized("no session cookie was presented"),
                "no_credential",
            ));
        }
        Credential::InvalidCookie => {
            return Err(Refusal::Api(ApiError::SessionInvalid, "invalid"));
        }
        Credential::Cookie(token) => verify_cookie(state, token).await?,
        Credential::AccessToken { scheme, token } => verify_access_token(state, scheme, token).await?,
    };
    if let Some(required) = required
        && identity.level() < required
    {
        return Err(Refusal::StepUp {
            required,
            actual: identity.level(),
        });
    }
    Ok(identity)
}

/// The proxied request's method, from `X-Forwarded-Method` (Traefik,
/// Envoy as configured) and `X-Original-Method` (nginx). If they disagree,
/// any state-changing value wins, so a header the client added cannot pass
/// a POST off as a GET. Neither present: `None`, judged state-changing
/// (SPEC §4.2) — the sub-request's own GET says nothing about the request
/// the proxy holds.
fn proxied_method(headers: &HeaderMap) -> Option<&[u8]> {
    let mut named = None;
    for name in [X_FORWARDED_METHOD, X_ORIGINAL_METHOD] {
        for v in headers.get_all(name) {
            let m = v.as_bytes();
            if !is_safe_method(m) {
                return Some(m);
            }
            named = Some(m);
        }
    }
    named
}

async fn verify_cookie(state: &AppState, token: &str) -> Result<Identity, Refusal> {
    let result = state.sessions.verify(token).await;
    record_verify(&result);
    result.map(Identity::Session).map_err(core_refusal)
}

/// The access-token branch: one of our RFC 9068 access tokens as a Bearer
/// token, checked by the verifier every face shares (`access::verify`: the
/// published signing keys, `iss`, `aud` = `[oauth] default_audience`,
/// expiry without leeway, no `cnf`), whose session (`sid`) is still active
/// in the store. `acr` is the level. No CSRF check applies (browsers never
/// attach these headers on their own). Sender-constrained (DPoP) tokens are
/// not accepted here yet.
async fn verify_access_token(
    state: &AppState,
    scheme: &'static str,
    token: &str,
) -> Result<Identity, Refusal> {
    if scheme != "Bearer" {
        return Err(Refusal::InvalidToken(
            "DPoP-bound access tokens are not accepted on /auth/verify yet",
        ));
    }
    let tokens = &state.oauth.tokens;
    let expected = tessera_core::access::Expected {
        audience: tessera_core::access::AudienceRule::Contains(&state.config.oauth.default_audience),
        accept_sender_constrained: false,
        ..tokens.own_token_rules()
    };
    let claims = tokens
        .verify_access_token(token, &expected)
        .map_err(|e| Refusal::InvalidToken(e.description()))?;
    let session = state
        .sessions
        .lookup(&claims.sid)
        .await
        .map_err(|e| Refusal::Api(ApiError::from(e), "error"))?;
    match session {
        Some(s) if s.is_active(state.sessions.now()) && s.subject == claims.sub => {}
        _ => {
            return Err(Refusal::InvalidToken(
                tessera_core::access::VerifyError::Revoked.description(),
            ));
        }
    }
    let level = claims
        .acr
        .as_deref()
        .and_then(|a| a.parse::<u8>().ok())
        .unwrap_or(1);
    Ok(Identity::AccessToken {
        subject: claims.sub,
        handle: claims.sid,
        level,
    })
}

/// `?level=N` (1–255); any other parameter is ignored, so a token put in the
/// query is never looked at.
fn required_level(query: Option<&str>) -> Result<Option<u8>, ApiError> {
    let Some(query) = query else {
        return Ok(None);
    };
    let mut level = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != "level" {
            continue;
        }
        if level.is_some() {
            return Err(ApiError::validation("level: given more than once"));
        }
        let n = v
            .parse::<u8>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| ApiError::validation("level: must be an integer from 1 to 255"))?;
        level = Some(n);
    }
    Ok(level)
}

fn identity_response(id: &Identity) -> Response {
    let mut res = StatusCode::OK.into_response();
    let h = res.headers_mut();
    // Subjects are UTF-8 without control characters (the core refuses them),
    // so their bytes always make a valid header value.
    match HeaderValue::from_bytes(id.subject().as_bytes()) {
        Ok(v) => h.insert(X_TESSERA_SUBJECT, v),
        Err(_) => return ApiError::Internal.into_response(),
    };
    match HeaderValue::from_str(id.handle()) {
        Ok(v) => h.insert(X_TESSERA_SESSION, v),
        Err(_) => return ApiError::Internal.into_response(),
    };
    h.insert(X_TESSERA_AUTH_LEVEL, HeaderValue::from(u16::from(id.level())));
    res
}
