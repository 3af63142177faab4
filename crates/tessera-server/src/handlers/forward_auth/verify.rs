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
use tessera_core::dpop::{Presentation, PresentationError, Scheme, check_presentation};
use tessera_core::{Error as CoreError, SessionRecord};
use tessera_http::bearer::{
    AccessCredential, DPOP_NONCE, access_credential, challenge, dpop_proof, forwarded_client_cert,
};
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
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// Who the request is, however it proved it. A session cookie keeps the
/// record the store answered with, so a verify copies no string before
/// the answer's headers.
#[derive(Debug)]
enum Identity {
    Session(Arc<SessionRecord>),
    AccessToken {
        subject: String,
        /// `None` for a client's own (`client_credentials`) token: no
        /// session, so no `X-Tessera-Session`.
        handle: Option<String>,
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

    fn handle(&self) -> Option<&str> {
        match self {
            Identity::Session(rec) => Some(&rec.handle),
            Identity::AccessToken { handle, .. } => handle.as_deref(),
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
    /// A presented access token refused (RFC 6750 §3.1, RFC 9449 §7): 401,
    /// 400 for `invalid_request`, 503 when the DPoP replay check cannot be
    /// made; the challenge names the scheme the token came with.
    Token(TokenRefusal),
}

#[derive(Debug)]
struct TokenRefusal {
    code: &'static str,
    detail: &'static str,
    challenge: String,
    /// A fresh `DPoP-Nonce` (with `use_dpop_nonce`).
    nonce: Option<String>,
}

impl TokenRefusal {
    fn refuse(state: &AppState, scheme: Option<Scheme>, code: &'static str, detail: &'static str) -> Refusal {
        let algs = state.oauth.dpop_resource.policy().algs_list();
        Refusal::Token(TokenRefusal {
            code,
            detail,
            challenge: challenge(scheme, Some((code, detail)), &algs),
            nonce: None,
        })
    }

    fn presentation(state: &AppState, scheme: Scheme, e: &PresentationError) -> Refusal {
        let detail = match e {
            PresentationError::InvalidToken(d) | PresentationError::InvalidProof(d) => d,
            PresentationError::UseNonce => "a fresh DPoP nonce is required",
            PresentationError::Unavailable(why) => {
                tracing::error!(error = %why, "DPoP replay check unavailable");
                "the DPoP replay check is unavailable; try again later"
            }
        };
        let mut r = TokenRefusal::refuse(state, Some(scheme), e.error_code(), detail);
        if let (PresentationError::UseNonce, Refusal::Token(t)) = (e, &mut r) {
            t.nonce = state.oauth.dpop_resource.fresh_nonce();
        }
        r
    }
}

impl Refusal {
    fn outcome(&self) -> &'static str {
        match self {
            Refusal::Api(_, outcome) => outcome,
            Refusal::Csrf(_) => "csrf_rejected",
            Refusal::StepUp { .. } => "insufficient_level",
            Refusal::Token(t) => t.code,
        }
    }

    fn into_response(self) -> Response {
        match self {
            Refusal::Api(e, _) => e.into_response(),
            Refusal::Csrf(detail) => ApiError::CsrfRejected(detail).into_response(),
            Refusal::Token(t) => {
                let mut res = match t.code {
                    "invalid_request" => ApiError::Validation(t.detail.to_owned()).into_response(),
                    "temporarily_unavailable" => ApiError::StoreUnavailable.into_response(),
                    _ => ApiError::Unauthorized(t.detail).into_response(),
                };
                if let Ok(v) = HeaderValue::from_str(&t.challenge) {
                    res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                if let Some(n) = t.nonce.as_deref()
                    && let Ok(v) = HeaderValue::from_str(n)
                {
                    res.headers_mut().insert(DPOP_NONCE, v);
                }
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
        scheme: Scheme,
        token: &'h str,
    },
    /// Several `Authorization` headers or an empty token, and no cookie.
    MalformedAuthorization(&'static str),
}

impl<'h> Credential<'h> {
    fn of(headers: &'h HeaderMap, cookie_name: &str) -> Self {
        match cookies::session_value(headers, cookie_name) {
            SessionValue::Absent => {}
            SessionValue::One(v) => return Credential::Cookie(v),
            SessionValue::Invalid | SessionValue::Conflicting => return Credential::InvalidCookie,
        }
        match access_credential(headers) {
            AccessCredential::Token(scheme, token) => Credential::AccessToken { scheme, token },
            AccessCredential::Malformed(why) => Credential::MalformedAuthorization(why),
            AccessCredential::None => Credential::None,
        }
    }
}

#[utoipa::path(
    method(get, head, post, put, patch, delete, options, trace),
    path = "/auth/verify",
    operation_id = "forward_auth_verify",
    tag = "forward-auth",
    description = "A proxy's sub-request about the request it holds (nginx `auth_request`, Traefik \
ForwardAuth, Envoy ext_authz). The session token comes only from the session cookie; an access \
token may come in `Authorization` (Bearer or DPoP). Every method is answered.",
    params(
        ("level" = Option<u8>, Query, minimum = 1, maximum = 255, description = "The authentication level the resource needs"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "The proxied request's method (else judged state-changing)"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "The proxied request's URI"),
        ("X-Forwarded-Host" = Option<String>, Header, description = "The proxied request's host"),
        ("X-Forwarded-Proto" = Option<String>, Header, description = "The proxied request's scheme"),
    ),
    responses(
        (status = 200, response = crate::openapi::ForwardAuthOk),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::ForwardAuthUnauthorized),
        (status = 403, response = crate::openapi::ForwardAuthForbidden),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
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
    if !matches!(
        credential,
        Credential::AccessToken { .. } | Credential::MalformedAuthorization(_)
    ) {
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
        Credential::MalformedAuthorization(why) => {
            return Err(TokenRefusal::refuse(state, None, "invalid_request", why));
        }
        Credential::InvalidCookie => {
            return Err(Refusal::Api(ApiError::SessionInvalid, "invalid"));
        }
        Credential::Cookie(token) => verify_cookie(state, token, headers).await?,
        Credential::AccessToken { scheme, token } => {
            verify_access_token(state, scheme, token, headers).await?
        }
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

async fn verify_cookie(state: &AppState, token: &str, headers: &HeaderMap) -> Result<Identity, Refusal> {
    let result = state.sessions.verify(token).await;
    record_verify(&result);
    let session = result.map_err(core_refusal)?;
    // A device-bound session needs its short-lived bound cookie as well
    // (SPEC §4.5, checklist DB-09): the long-lived cookie alone, or
    // another session's bound cookie, is not enough.
    if let Some(dbsc) = &state.dbsc
        && session.binding.is_some()
    {
        let bound = match cookies::session_value(headers, &state.config.dbsc.cookie_name) {
            SessionValue::One(v) => Some(v.as_bytes()),
            _ => None,
        };
        if !dbsc.admits(&session, bound) {
            if let Some(skipped) = headers.get(tessera_http::dbsc::SECURE_SESSION_SKIPPED) {
                // DB-16: the browser could not refresh; treated as unbound,
                // which a bound session does not accept.
                tracing::info!(reason = ?skipped, session = %session.handle, "DBSC refresh skipped by the browser");
            }
            return Err(Refusal::Api(
                ApiError::Unauthorized("the device-bound session needs a fresh bound cookie"),
                "unbound",
            ));
        }
    }
    Ok(Identity::Session(session))
}

/// The access-token branch: one of our RFC 9068 access tokens, checked by
/// the verifier every face shares (`access::verify`: the published signing
/// keys, `iss`, `aud` = `[oauth] default_audience`, expiry without leeway),
/// whose session (`sid`) is still active in the store, presented as what
/// it is bound to (`dpop::check_presentation`, the rule the library's
/// verifier applies too): a DPoP-bound token with `Authorization: DPoP`
/// and a proof for the proxied request — `htm` the proxied method, `htu`
/// the proxied URL ([`proxied_uri`]) — an unbound one as `Bearer`. `acr`
/// is the level. No CSRF check applies (browsers never attach these
/// headers on their own).
async fn verify_access_token(
    state: &AppState,
    scheme: Scheme,
    token: &str,
    headers: &HeaderMap,
) -> Result<Identity, Refusal> {
    let tokens = &state.oauth.tokens;
    let expected = tessera_core::access::Expected {
        audience: tessera_core::access::AudienceRule::Contains(&state.config.oauth.default_audience),
        accept_sender_constrained: true,
        ..tokens.own_token_rules()
    };
    let claims = tokens
        .verify_access_token(token, &expected)
        .map_err(|e| TokenRefusal::refuse(state, Some(scheme), "invalid_token", e.description()))?;
    // A session's token stands while its session does; a client's own
    // token while its client is registered.
    let live = match &claims.sid {
        Some(sid) => {
            let session = state
                .sessions
                .lookup(sid)
                .await
                .map_err(|e| Refusal::Api(ApiError::from(e), "error"))?;
            session.is_some_and(|s| s.is_active(state.sessions.now()) && s.subject == claims.sub)
        }
        None => tokens.client_token_live(&claims).await.map_err(|e| {
            tracing::error!(error = %e, "client registry unavailable");
            Refusal::Api(ApiError::StoreUnavailable, "error")
        })?,
    };
    if !live {
        return Err(TokenRefusal::refuse(
            state,
            Some(scheme),
            "invalid_token",
            tessera_core::access::VerifyError::Revoked.description(),
        ));
    }
    // The proxied URL and the forwarded certificate matter only to a bound
    // token; an unbound Bearer token (the common case) skips building them.
    let bound = claims.cnf.is_some();
    let uri = if bound { proxied_uri(headers) } else { None };
    // The client's certificate is the proxy's to forward; this request's
    // own connection is the proxy's.
    let client_cert = state
        .config
        .forward_auth
        .client_cert_header
        .as_deref()
        .filter(|_| bound)
        .and_then(|h| HeaderName::try_from(h).ok())
        .and_then(|h| forwarded_client_cert(headers, &h));
    let method = proxied_method(headers).and_then(|m| std::str::from_utf8(m).ok());
    let presentation = Presentation {
        scheme,
        proof: dpop_proof(headers),
        method: method.unwrap_or(""),
        uri: uri.as_deref().unwrap_or(""),
        client_cert: client_cert.as_ref().map(|c| c.0.as_str()),
    };
    check_presentation(&state.oauth.dpop_resource, &claims, token, &presentation)
        .await
        .map_err(|e| TokenRefusal::presentation(state, scheme, &e))?;
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

/// The URL of the request the proxy holds (SPEC §4.2): nginx's
/// `X-Original-URL`, else Traefik's `X-Forwarded-Proto` +
/// `X-Forwarded-Host` + `X-Forwarded-Uri`. A DPoP proof's `htu` must name
/// it. Forward auth trusts these headers because only the proxy reaches
/// it (the deployment's job: listen on an address clients cannot reach).
fn proxied_uri(headers: &HeaderMap) -> Option<String> {
    let one = |name: &HeaderName| {
        tessera_http::single_header(headers, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(url) = one(&X_ORIGINAL_URL) {
        return Some(url.to_owned());
    }
    let proto = one(&X_FORWARDED_PROTO)?;
    let host = one(&X_FORWARDED_HOST)?;
    let path = one(&X_FORWARDED_URI).unwrap_or("/");
    Some(format!("{proto}://{host}{path}"))
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
    if let Some(handle) = id.handle() {
        match HeaderValue::from_str(handle) {
            Ok(v) => h.insert(X_TESSERA_SESSION, v),
            Err(_) => return ApiError::Internal.into_response(),
        };
    }
    h.insert(X_TESSERA_AUTH_LEVEL, HeaderValue::from(u16::from(id.level())));
    res
}

/// Doc-only twin of [`verify`] at `/auth/verify/` (the same handler).
#[utoipa::path(
    method(get, head, post, put, patch, delete, options, trace),
    path = "/auth/verify/",
    operation_id = "forward_auth_verify_slash",
    tag = "forward-auth",
    params(
        ("X-Forwarded-Method" = Option<String>, Header, description = "The proxied request's method (else judged state-changing)"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "The proxied request's URI"),
        ("X-Forwarded-Host" = Option<String>, Header, description = "The proxied request's host"),
        ("X-Forwarded-Proto" = Option<String>, Header, description = "The proxied request's scheme"),
    ),
    responses(
        (status = 200, response = crate::openapi::ForwardAuthOk),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::ForwardAuthUnauthorized),
        (status = 403, response = crate::openapi::ForwardAuthForbidden),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
#[allow(dead_code)]
pub(crate) fn verify_slash() {}

/// Doc-only twin of [`verify`] at `/auth/verify/{*proxied_path}` (Envoy's
/// ext_authz `path_prefix`; the route is a catch-all).
#[utoipa::path(
    method(get, head, post, put, patch, delete, options, trace),
    path = "/auth/verify/{proxied_path}",
    operation_id = "forward_auth_verify_proxied",
    tag = "forward-auth",
    description = "Envoy's ext_authz check: the proxied request's method at `path_prefix` + its path. \
`proxied_path` may span several segments (the route is a catch-all).",
    params(
        ("proxied_path" = String, Path, description = "The proxied request's path"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "The proxied request's method (else judged state-changing)"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "The proxied request's URI"),
        ("X-Forwarded-Host" = Option<String>, Header, description = "The proxied request's host"),
        ("X-Forwarded-Proto" = Option<String>, Header, description = "The proxied request's scheme"),
    ),
    responses(
        (status = 200, response = crate::openapi::ForwardAuthOk),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::ForwardAuthUnauthorized),
        (status = 403, response = crate::openapi::ForwardAuthForbidden),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
#[allow(dead_code)]
pub(crate) fn verify_proxied() {}

/// The forwarded-header readers as the fuzz targets (`fuzz/`) call them;
/// not an API.
#[doc(hidden)]
pub mod fuzzing {
    use axum::http::HeaderMap;

    /// The proxied request's method (`X-Forwarded-Method`, `X-Original-Method`).
    pub fn proxied_method(headers: &HeaderMap) -> Option<&[u8]> {
        super::proxied_method(headers)
    }

    /// The proxied request's URL (`X-Original-URL`, `X-Forwarded-Proto|Host|Uri`).
    pub fn proxied_uri(headers: &HeaderMap) -> Option<String> {
        super::proxied_uri(headers)
    }

    /// `?level=N` of `/auth/verify`; `Err` is the detail of the 400 the
    /// service answers.
    pub fn required_level(query: Option<&str>) -> Result<Option<u8>, String> {
        super::required_level(query).map_err(|e| e.to_string())
    }
}
