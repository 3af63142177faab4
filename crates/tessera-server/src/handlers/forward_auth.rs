//! Forward auth for reverse proxies (SPEC §4.2): `GET|HEAD /auth/verify`
//! and `POST /auth/logout`.
//!
//! `/auth/verify` answers a proxy's sub-request (nginx `auth_request`,
//! Traefik ForwardAuth, Envoy ext_authz HTTP) about the request the proxy is
//! holding: 200 with `X-Tessera-Subject`, `X-Tessera-Session` and
//! `X-Tessera-Auth-Level`, 401 without a live session, 403 for a cross-site
//! state-changing request (`csrf_rejected`) or too low an authentication level
//! (`?level=N`, RFC 9470 challenge). The session token is read only from the
//! session cookie, never from the query (SPEC §5).
//!
//! The proxied request's method comes from `X-Forwarded-Method` /
//! `X-Original-Method` (the sub-request itself is a GET); without either it
//! is judged state-changing. Its `Origin`, `Sec-Fetch-Site` and `Host`
//! arrive as the proxy forwards them.
//!
//! Every answer has `Cache-Control: no-store` and is counted in
//! `tessera_forward_auth_total{endpoint, outcome}`.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use serde::Serialize;
use tessera_core::cookie_header::{self, SessionCookie};
use tessera_core::{Error as CoreError, RevokeReason};

use crate::app::AppState;
use crate::config::{CookieConfig, ForwardAuthConfig, SameSiteConfig};
use crate::metrics::{forward_auth_counter, record_verify};
use crate::problem::{ApiError, ErrorCode, PROBLEM_JSON};

/// The authenticated subject (the session's, as the application chose it).
pub const X_TESSERA_SUBJECT: HeaderName = HeaderName::from_static("x-tessera-subject");
/// The session handle (`ses_…`), public and stable.
pub const X_TESSERA_SESSION: HeaderName = HeaderName::from_static("x-tessera-session");
/// The session's authentication level (decimal).
pub const X_TESSERA_AUTH_LEVEL: HeaderName = HeaderName::from_static("x-tessera-auth-level");

const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
const CLEAR_SITE_DATA: HeaderName = HeaderName::from_static("clear-site-data");
const CLEAR_SITE_DATA_VALUE: &str = "\"cache\", \"cookies\", \"storage\"";

/// Distinct session-cookie values a logout revokes at most.
const MAX_LOGOUT_COOKIES: usize = 4;
/// Longest `?next=` a logout redirects to.
const MAX_NEXT_BYTES: usize = 2048;

// ------------------------------------------------------------------ verify

/// Who the request is, however it proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    subject: String,
    handle: String,
    level: u8,
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
            Refusal::Csrf(detail) => csrf_rejected(detail),
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
    /// Several different values for the session cookie: someone planted
    /// one (cookie tossing from a sibling domain). Refused, never guessed.
    ConflictingCookies,
    /// `Authorization: Bearer|DPoP <token>` and no session cookie.
    AccessToken {
        scheme: &'static str,
        token: &'h str,
    },
}

impl<'h> Credential<'h> {
    fn of(headers: &'h HeaderMap, cookie_name: &str) -> Self {
        match cookie_header::session_cookie(cookie_headers(headers), cookie_name.as_bytes()) {
            SessionCookie::Absent => {}
            // A value that is not even UTF-8 is no token of ours: it goes to
            // verification as an empty one, which is `session_invalid`.
            SessionCookie::One(v) => return Credential::Cookie(std::str::from_utf8(v).unwrap_or("")),
            SessionCookie::Conflicting => return Credential::ConflictingCookies,
        }
        match access_token(headers) {
            Some((scheme, token)) => Credential::AccessToken { scheme, token },
            None => Credential::None,
        }
    }
}

/// The raw bytes of every `Cookie` header (HTTP/2 may split the cookies
/// over several): the only source of session tokens. Read as bytes, so
/// another cookie's non-ASCII byte hides nothing (`tessera_core::cookie_header`).
fn cookie_headers(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::COOKIE)
        .into_iter()
        .map(HeaderValue::as_bytes)
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
    let (outcome, res) = match check(&state, query, req.headers()).await {
        Ok(id) => ("ok", identity_response(&id)),
        Err(refusal) => (refusal.outcome(), refusal.into_response()),
    };
    forward_auth_counter("verify", outcome).increment(1);
    no_store(res)
}

async fn check(state: &AppState, query: Option<&str>, headers: &HeaderMap) -> Result<Identity, Refusal> {
    let required = required_level(query).map_err(|e| Refusal::Api(e, "bad_request"))?;
    let identity = match Credential::of(headers, state.config.cookie.effective_name()) {
        Credential::None => {
            return Err(Refusal::Api(
                ApiError::Unauthorized("no session cookie was presented"),
                "no_credential",
            ));
        }
        Credential::ConflictingCookies => {
            return Err(Refusal::Api(ApiError::SessionInvalid, "invalid"));
        }
        Credential::Cookie(token) => {
            // Only cookies ride along on cross-site requests: CSRF first,
            // so a forged request does not even slide the idle expiry.
            let state_changing = proxied_method_changes_state(headers);
            check_csrf(
                &FetchContext::of(headers, state_changing),
                &state.config.forward_auth,
            )
            .map_err(Refusal::Csrf)?;
            verify_cookie(state, token).await?
        }
        Credential::AccessToken { scheme, token } => verify_access_token(state, scheme, token).await?,
    };
    if let Some(required) = required
        && identity.level < required
    {
        return Err(Refusal::StepUp {
            required,
            actual: identity.level,
        });
    }
    Ok(identity)
}

async fn verify_cookie(state: &AppState, token: &str) -> Result<Identity, Refusal> {
    let result = state.sessions.verify(token).await;
    record_verify(&result);
    let rec = result.map_err(core_refusal)?;
    Ok(Identity {
        subject: rec.subject.clone(),
        handle: rec.handle.clone(),
        level: rec.auth.level,
    })
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
        .store
        .get(&claims.sid)
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
    Ok(Identity {
        subject: claims.sub,
        handle: claims.sid,
        level,
    })
}

/// `?level=N` (1–255); any other parameter is ignored, so a token put in the
/// query is never looked at.
fn required_level(query: Option<&str>) -> Result<Option<u8>, ApiError> {
    let mut level = None;
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
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
    match HeaderValue::from_bytes(id.subject.as_bytes()) {
        Ok(v) => h.insert(X_TESSERA_SUBJECT, v),
        Err(_) => return ApiError::Internal.into_response(),
    };
    match HeaderValue::from_str(&id.handle) {
        Ok(v) => h.insert(X_TESSERA_SESSION, v),
        Err(_) => return ApiError::Internal.into_response(),
    };
    h.insert(X_TESSERA_AUTH_LEVEL, HeaderValue::from(u16::from(id.level)));
    res
}

// ------------------------------------------------------------------ CSRF

/// `GET`, `HEAD` and `OPTIONS` change nothing (methods are case-sensitive).
fn is_safe_method(m: &str) -> bool {
    matches!(m, "GET" | "HEAD" | "OPTIONS")
}

/// The proxied request's method, from `X-Forwarded-Method` (Traefik,
/// Envoy as configured) and `X-Original-Method` (nginx). If they disagree,
/// any state-changing value wins, so a header the client added cannot pass
/// a POST off as a GET. Neither present: the method is unknown and judged
/// state-changing (SPEC §4.2) — the sub-request's own GET says nothing
/// about the request the proxy holds.
fn proxied_method_changes_state(headers: &HeaderMap) -> bool {
    let mut named = false;
    for name in [X_FORWARDED_METHOD, X_ORIGINAL_METHOD] {
        for v in &headers.get_all(name) {
            named = true;
            if !is_safe_method(v.to_str().unwrap_or("").trim()) {
                return true;
            }
        }
    }
    !named
}

/// The facts the CSRF check reads. A header that is present but not
/// visible ASCII reads as `Some("")`, which nothing trusts.
#[derive(Debug, Clone, Copy)]
struct FetchContext<'h> {
    state_changing: bool,
    sec_fetch_site: Option<&'h str>,
    origin: Option<&'h str>,
    host: Option<&'h str>,
    forwarded_proto: Option<&'h str>,
}

impl<'h> FetchContext<'h> {
    fn of(headers: &'h HeaderMap, state_changing: bool) -> Self {
        let get = |name: &HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("").trim());
        FetchContext {
            state_changing,
            sec_fetch_site: get(&SEC_FETCH_SITE),
            origin: get(&header::ORIGIN),
            // Traefik's ForwardAuth sub-request carries Tessera's own `Host`
            // and the public one in `X-Forwarded-Host`. A browser cannot
            // set it on a cross-site request without a CORS preflight, and
            // the proxy (trusted, SPEC §4.2) replaces a client's copy.
            host: get(&X_FORWARDED_HOST).or_else(|| get(&header::HOST)),
            forwarded_proto: get(&X_FORWARDED_PROTO),
        }
    }
}

/// OWASP CSRF cheat sheet, Fetch Metadata first and `Origin` as the
/// fallback:
///
/// - safe methods pass;
/// - `Sec-Fetch-Site: same-origin` or `none` (typed URL, bookmark) passes;
///   `same-site` passes only with `allow_same_site` or a listed `Origin`;
///   `cross-site` and anything unknown are refused;
/// - without `Sec-Fetch-Site`, an `Origin` must be the request's own
///   (`Host`, and `X-Forwarded-Proto` when present) or listed in
///   `allowed_origins`;
/// - with neither header the client is not a browser (browsers send
///   `Origin` on every state-changing request), so it passes.
fn check_csrf(ctx: &FetchContext<'_>, cfg: &ForwardAuthConfig) -> Result<(), &'static str> {
    if !ctx.state_changing {
        return Ok(());
    }
    let origin_trusted = ctx
        .origin
        .is_some_and(|o| cfg.is_allowed_origin(o) || is_own_origin(o, ctx.host, ctx.forwarded_proto));
    match ctx.sec_fetch_site {
        Some(site) if site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none") => Ok(()),
        Some(site) if site.eq_ignore_ascii_case("same-site") => {
            if cfg.allow_same_site || origin_trusted {
                Ok(())
            } else {
                Err("a same-site request may not change state here (Sec-Fetch-Site: same-site)")
            }
        }
        Some(site) if site.eq_ignore_ascii_case("cross-site") => {
            Err("a cross-site request may not change state (Sec-Fetch-Site: cross-site)")
        }
        Some(_) => Err("the Sec-Fetch-Site header has an unknown value"),
        None => match ctx.origin {
            None => Ok(()),
            Some(_) if origin_trusted => Ok(()),
            Some(_) => Err("the request's Origin is neither its own nor an allowed origin"),
        },
    }
}

/// Whether `origin` is `scheme://host` of the request itself. The scheme
/// must match `X-Forwarded-Proto` when the proxy sends it; a default port
/// in `Host` is ignored.
fn is_own_origin(origin: &str, host: Option<&str>, proto: Option<&str>) -> bool {
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let scheme_ok = match proto.and_then(|p| p.split(',').next()).map(str::trim) {
        Some(p) => scheme.eq_ignore_ascii_case(p),
        None => scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http"),
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    let host = host.strip_suffix(default_port).unwrap_or(host);
    scheme_ok && !authority.is_empty() && authority.eq_ignore_ascii_case(host)
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
}

/// 403 `csrf_rejected` as an RFC 9457 problem document.
fn csrf_rejected(detail: &str) -> Response {
    const CODE: &str = "csrf_rejected";
    let body = Problem {
        type_: "urn:tessera:error:csrf_rejected",
        title: "Cross-site request rejected",
        status: 403,
        detail,
        code: CODE,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        bytes,
    )
        .into_response();
    res.extensions_mut().insert(ErrorCode(CODE));
    res
}

// ------------------------------------------------------------------ logout

/// `POST /auth/logout[?next=/relative/path]`: revokes the cookie's session
/// (every distinct session-cookie value presented), expires the cookie with
/// the attributes it was set with and sends `Clear-Site-Data`. 204, or 303
/// to `next`. A missing, unknown or dead cookie gets the same clearing
/// answer. A cross-site request is refused (403 `csrf_rejected`) and changes
/// nothing; a store failure is 503 and clears nothing, so the user can
/// retry with the cookie still in place.
pub async fn logout(
    State(state): State<AppState>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (outcome, res) = logout_inner(&state, &method, query.as_deref(), &headers).await;
    forward_auth_counter("logout", outcome).increment(1);
    no_store(res)
}

async fn logout_inner(
    state: &AppState,
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
) -> (&'static str, Response) {
    // The browser reaches this through the proxy: its own method, Origin
    // and Sec-Fetch-Site are the ones to check. X-Forwarded-Method and
    // X-Original-Method are deliberately ignored here.
    let ctx = FetchContext::of(headers, !is_safe_method(method.as_str()));
    if let Err(detail) = check_csrf(&ctx, &state.config.forward_auth) {
        return ("csrf_rejected", csrf_rejected(detail));
    }
    let next = match logout_next(query) {
        Ok(n) => n,
        Err(e) => return ("bad_request", e.into_response()),
    };
    let cookie = &state.config.cookie;
    let mut revoked = false;
    let presented = cookie_header::distinct_values(
        cookie_headers(headers),
        cookie.effective_name().as_bytes(),
        MAX_LOGOUT_COOKIES,
    );
    // A value that is not UTF-8 was never issued: nothing to revoke.
    for token in presented.into_iter().filter_map(|v| std::str::from_utf8(v).ok()) {
        match state.sessions.revoke_token(token, RevokeReason::Logout).await {
            Ok(()) => revoked = true,
            Err(CoreError::SessionInvalid | CoreError::SessionExpired | CoreError::SessionRevoked) => {}
            Err(e) => return ("error", ApiError::from(e).into_response()),
        }
    }
    let mut res = match next {
        Some(next) => match HeaderValue::from_str(&next) {
            Ok(loc) => (StatusCode::SEE_OTHER, [(header::LOCATION, loc)]).into_response(),
            Err(_) => return ("bad_request", bad_next().into_response()),
        },
        None => StatusCode::NO_CONTENT.into_response(),
    };
    let h = res.headers_mut();
    match HeaderValue::from_str(&removal_cookie(cookie)) {
        Ok(v) => h.insert(header::SET_COOKIE, v),
        Err(_) => return ("error", ApiError::Internal.into_response()),
    };
    h.insert(CLEAR_SITE_DATA, HeaderValue::from_static(CLEAR_SITE_DATA_VALUE));
    (if revoked { "ok" } else { "no_session" }, res)
}

fn bad_next() -> ApiError {
    ApiError::validation("next: must be a path on this site, starting with a single '/'")
}

/// `?next=`: a percent-decoded relative path (`/…`, not `//…`, no `\`,
/// visible ASCII only), so the redirect never leaves the site.
fn logout_next(query: Option<&str>) -> Result<Option<String>, ApiError> {
    let mut next = None;
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "next" {
            continue;
        }
        if next.is_some() {
            return Err(ApiError::validation("next: given more than once"));
        }
        let path = percent_decode(v).ok_or_else(bad_next)?;
        let ok = path.len() <= MAX_NEXT_BYTES
            && path.starts_with('/')
            && !path.starts_with("//")
            && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
        if !ok {
            return Err(bad_next());
        }
        next = Some(path);
    }
    Ok(next)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The session cookie's `Set-Cookie` for deletion: the same name, `Path`,
/// `Secure`, `HttpOnly` and `SameSite` as [`crate::cookie::session_cookie`],
/// no `Domain`, an empty value and `Max-Age=0`.
pub fn removal_cookie(cfg: &CookieConfig) -> String {
    let mut c = Cookie::build((cfg.effective_name().to_owned(), String::new()))
        .path("/")
        .http_only(true)
        .same_site(match cfg.same_site {
            SameSiteConfig::Lax => SameSite::Lax,
            SameSiteConfig::Strict => SameSite::Strict,
        })
        .max_age(cookie::time::Duration::ZERO);
    if cfg.secure {
        c = c.secure(true);
    }
    c.build().to_string()
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    //! In-process tests (`oneshot`) over `memory://`, named after the
    //! standards-checklist items they pin.

    use std::ffi::OsString;
    use std::sync::Arc;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::Value;
    use tessera_core::{AuthInput, CreateSession, ManualClock, MemoryStore, SessionStore, Timestamp};
    use tower::ServiceExt;

    use super::*;
    use crate::app::build_with_clock;
    use crate::config::{Config, Overrides};
    use crate::cookie::session_cookie;

    const HOST: &str = "app.example";
    const OWN_ORIGIN: &str = "https://app.example";

    struct H {
        router: Router,
        state: AppState,
        clock: ManualClock,
    }

    struct Resp {
        status: StatusCode,
        headers: HeaderMap,
        body: Value,
    }

    impl Resp {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).map(|v| v.to_str().unwrap())
        }

        #[track_caller]
        fn assert_problem(&self, status: u16, code: &str) {
            assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
            assert_eq!(self.header("content-type"), Some(PROBLEM_JSON));
            assert_eq!(self.body["code"], code, "{:?}", self.body);
            assert_eq!(self.body["type"], format!("urn:tessera:error:{code}"));
            assert_eq!(self.body["status"], status);
            assert!(self.body["title"].is_string() && self.body["detail"].is_string());
        }

        #[track_caller]
        fn assert_no_store(&self) {
            assert_eq!(
                self.header("cache-control"),
                Some("no-store"),
                "status {}",
                self.status
            );
        }
    }

    fn config() -> Config {
        Config {
            store: Some("memory://".into()),
            ..Config::default()
        }
    }

    fn harness_with(config: Config) -> H {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
        let app = build_with_clock(config, store, Arc::new(clock.clone()));
        H {
            router: app.router,
            state: app.state,
            clock,
        }
    }

    fn harness() -> H {
        harness_with(config())
    }

    impl H {
        fn cookie_name(&self) -> String {
            self.state.config.cookie.effective_name().to_owned()
        }

        fn cookie(&self, token: &str) -> String {
            format!("{}={token}", self.cookie_name())
        }

        async fn login(&self, subject: &str, level: u8) -> (String, String) {
            let issued = self
                .state
                .sessions
                .create(CreateSession {
                    subject: subject.into(),
                    auth: Some(AuthInput {
                        level: Some(level),
                        methods: if level > 1 {
                            vec!["pwd".into(), "otp".into()]
                        } else {
                            vec!["pwd".into()]
                        },
                    }),
                    ..CreateSession::default()
                })
                .await
                .unwrap();
            (issued.token.expose().to_owned(), issued.session.handle.clone())
        }

        async fn send(&self, method: Method, uri: &str, headers: &[(&str, &str)]) -> Resp {
            let mut b = Request::builder().method(method).uri(uri);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            let res = self
                .router
                .clone()
                .oneshot(b.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = res.status();
            let headers = res.headers().clone();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            Resp {
                status,
                headers,
                body,
            }
        }

        /// `GET /auth/verify` as a proxy asks it about a `method` request.
        async fn verify_as(&self, uri: &str, method: &str, headers: &[(&str, &str)]) -> Resp {
            let mut all = vec![("x-original-method", method), ("host", HOST)];
            all.extend_from_slice(headers);
            self.send(Method::GET, uri, &all).await
        }

        async fn logout(&self, uri: &str, headers: &[(&str, &str)]) -> Resp {
            let mut all = vec![("host", HOST)];
            all.extend_from_slice(headers);
            self.send(Method::POST, uri, &all).await
        }

        async fn is_live(&self, token: &str) -> bool {
            self.state.sessions.verify(token).await.is_ok()
        }
    }

    #[tokio::test]
    async fn verify_answers_the_identity_headers() {
        let h = harness();
        let (tok, handle) = h.login("user-42", 1).await;
        let c = h.cookie(&tok);
        for method in [Method::GET, Method::HEAD] {
            let r = h.send(method.clone(), "/auth/verify", &[("cookie", &c)]).await;
            assert_eq!(r.status, StatusCode::OK, "{method}: {:?}", r.body);
            assert_eq!(r.header("x-tessera-subject"), Some("user-42"));
            assert_eq!(r.header("x-tessera-session"), Some(handle.as_str()));
            assert_eq!(r.header("x-tessera-auth-level"), Some("1"));
            r.assert_no_store();
        }
        // The cookie among others, and in a second Cookie header (HTTP/2).
        let r = h
            .send(
                Method::GET,
                "/auth/verify",
                &[
                    ("cookie", "theme=dark; lang=en"),
                    ("cookie", &format!("a=b; {c}; z=1")),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        // A UTF-8 subject goes out as its bytes.
        let (tok, _) = h.login("jos\u{e9}", 1).await;
        let r = h
            .send(Method::GET, "/auth/verify", &[("cookie", &h.cookie(&tok))])
            .await;
        assert_eq!(r.headers["x-tessera-subject"].as_bytes(), "jos\u{e9}".as_bytes());
    }

    #[tokio::test]
    async fn verify_slides_the_idle_expiry() {
        let h = harness();
        let (tok, _) = h.login("u", 1).await;
        let c = h.cookie(&tok);
        let idle = h.state.config.session.idle_timeout_secs;
        for _ in 0..4 {
            h.clock.advance_secs(idle - 60);
            let r = h.send(Method::GET, "/auth/verify", &[("cookie", &c)]).await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        }
        h.clock.advance_secs(idle + 1);
        h.send(Method::GET, "/auth/verify", &[("cookie", &c)])
            .await
            .assert_problem(401, "session_expired");
    }

    #[tokio::test]
    async fn verify_refuses_without_a_live_session() {
        let h = harness();
        let r = h.send(Method::GET, "/auth/verify", &[]).await;
        r.assert_problem(401, "unauthorized");
        r.assert_no_store();
        for bad in ["", "tss_short", "nonsense", &"tss_".repeat(40)] {
            h.send(Method::GET, "/auth/verify", &[("cookie", &h.cookie(bad))])
                .await
                .assert_problem(401, "session_invalid");
        }
        let (tok, handle) = h.login("u", 1).await;
        // The right token under another cookie name is not the session cookie.
        let r = h
            .send(
                Method::GET,
                "/auth/verify",
                &[("cookie", &format!("tessera={tok}"))],
            )
            .await;
        r.assert_problem(401, "unauthorized");
        // Two different values for the session cookie: refused, not guessed.
        let (other, _) = h.login("attacker", 1).await;
        let two = format!("{}; {}", h.cookie(&other), h.cookie(&tok));
        h.send(Method::GET, "/auth/verify", &[("cookie", &two)])
            .await
            .assert_problem(401, "session_invalid");
        // The same value twice is fine.
        let same = format!("{}; {}", h.cookie(&tok), h.cookie(&tok));
        let r = h.send(Method::GET, "/auth/verify", &[("cookie", &same)]).await;
        assert_eq!(r.status, StatusCode::OK);
        h.state
            .sessions
            .revoke(&handle, RevokeReason::Revoked)
            .await
            .unwrap();
        let r = h
            .send(Method::GET, "/auth/verify", &[("cookie", &h.cookie(&tok))])
            .await;
        r.assert_problem(401, "session_revoked");
        r.assert_no_store();
    }

    /// Another application's cookie with a byte outside visible ASCII
    /// (`x=é`) once voided the whole `Cookie` header: verify answered 401
    /// and logout cleared the browser but left the session live.
    #[tokio::test]
    async fn a_non_ascii_neighbour_cookie_hides_nothing() {
        let h = harness();
        let (tok, _) = h.login("u", 1).await;
        for cookie in [
            format!("{}; x=\u{e9}", h.cookie(&tok)),
            format!("x=\u{e9}; {}; y=\u{e9}t\u{e9}", h.cookie(&tok)),
        ] {
            let r = h.send(Method::GET, "/auth/verify", &[("cookie", &cookie)]).await;
            assert_eq!(r.status, StatusCode::OK, "{cookie}: {:?}", r.body);
            assert_eq!(r.header("x-tessera-subject"), Some("u"));
        }
        // A non-ASCII value of the session cookie itself is simply invalid.
        h.send(
            Method::GET,
            "/auth/verify",
            &[("cookie", &h.cookie("tss_\u{e9}"))],
        )
        .await
        .assert_problem(401, "session_invalid");
    }

    #[tokio::test]
    async fn logout_revokes_despite_a_non_ascii_neighbour_cookie() {
        let h = harness();
        let (tok, _) = h.login("u", 1).await;
        let cookie = format!("{}; x=\u{e9}", h.cookie(&tok));
        let r = h
            .logout(
                "/auth/logout",
                &[("cookie", &cookie), ("sec-fetch-site", "same-origin")],
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert!(r.header("clear-site-data").is_some());
        assert!(
            !h.is_live(&tok).await,
            "logout cleared the browser but left the session live"
        );
        h.send(Method::GET, "/auth/verify", &[("cookie", &cookie)])
            .await
            .assert_problem(401, "session_revoked");
    }

    #[tokio::test]
    async fn sc_04_a_token_in_the_query_is_ignored() {
        let h = harness();
        let (tok, _) = h.login("u", 1).await;
        let name = h.cookie_name();
        for q in [
            format!("session_token={tok}"),
            format!("{name}={tok}"),
            format!("tessera={tok}"),
            format!("token={tok}&level=1"),
        ] {
            let r = h.send(Method::GET, &format!("/auth/verify?{q}"), &[]).await;
            r.assert_problem(401, "unauthorized");
            assert!(r.header("x-tessera-subject").is_none());
        }
        // Nor is a token in a header other than Cookie.
        let r = h
            .send(Method::GET, "/auth/verify", &[("x-session-token", &tok)])
            .await;
        r.assert_problem(401, "unauthorized");
    }

    #[tokio::test]
    async fn a_bearer_only_request_is_refused_for_now() {
        let h = harness();
        let (tok, _) = h.login("u", 1).await;
        for auth in [format!("Bearer {tok}"), "DPoP eyJhbGciOi.x.y".to_owned()] {
            let r = h
                .send(Method::GET, "/auth/verify", &[("authorization", &auth)])
                .await;
            r.assert_problem(401, "unauthorized");
            r.assert_no_store();
        }
        // A cookie still counts when an Authorization header rides along.
        let r = h
            .send(
                Method::GET,
                "/auth/verify",
                &[("cookie", &h.cookie(&tok)), ("authorization", "Basic dTpw")],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn level_step_up_is_an_rfc9470_challenge() {
        let h = harness();
        let (one, _) = h.login("u", 1).await;
        let (two, _) = h.login("u", 2).await;
        let r = h
            .send(
                Method::GET,
                "/auth/verify?level=2",
                &[("cookie", &h.cookie(&one))],
            )
            .await;
        r.assert_problem(403, "forbidden");
        r.assert_no_store();
        let challenge = r.header("www-authenticate").unwrap();
        assert!(
            challenge.starts_with("Bearer error=\"insufficient_user_authentication\""),
            "{challenge}"
        );
        assert!(challenge.contains("acr_values=\"2\""), "{challenge}");
        assert!(!challenge.contains("max_age"), "{challenge}");
        for uri in [
            "/auth/verify?level=2",
            "/auth/verify?level=1",
            "/auth/verify?x=1&level=2",
        ] {
            let r = h.send(Method::GET, uri, &[("cookie", &h.cookie(&two))]).await;
            assert_eq!(r.status, StatusCode::OK, "{uri}");
            assert_eq!(r.header("x-tessera-auth-level"), Some("2"));
        }
        let r = h
            .send(
                Method::GET,
                "/auth/verify?level=1",
                &[("cookie", &h.cookie(&one))],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        for bad in ["level=0", "level=abc", "level=256", "level=", "level=2&level=3"] {
            let r = h
                .send(
                    Method::GET,
                    &format!("/auth/verify?{bad}"),
                    &[("cookie", &h.cookie(&two))],
                )
                .await;
            r.assert_problem(400, "validation_failed");
            r.assert_no_store();
        }
        // Without a session the answer is 401, not the step-up 403.
        h.send(Method::GET, "/auth/verify?level=2", &[])
            .await
            .assert_problem(401, "unauthorized");
    }

    #[tokio::test]
    async fn cs_02_fetch_metadata_for_the_proxied_request() {
        let h = harness();
        let (tok, _) = h.login("u", 1).await;
        let c = h.cookie(&tok);
        let c = c.as_str();
        for state_changing in ["POST", "PUT", "PATCH", "DELETE", "post"] {
            let r = h
                .verify_as(
                    "/auth/verify",
                    state_changing,
                    &[("cookie", c), ("sec-fetch-site", "cross-site")],
                )
                .await;
            r.assert_problem(403, "csrf_rejected");
            r.assert_no_store();
            assert!(r.header("x-tessera-subject").is_none());
            h.verify_as(
                "/auth/verify",
                state_changing,
                &[("cookie", c), ("sec-fetch-site", "same-site")],
            )
            .await
            .assert_problem(403, "csrf_rejected");
            h.verify_as(
                "/auth/verify",
                state_changing,
                &[("cookie", c), ("sec-fetch-site", "bogus")],
            )
            .await
            .assert_problem(403, "csrf_rejected");
            for ok in ["same-origin", "none"] {
                let r = h
                    .verify_as(
                        "/auth/verify",
                        state_changing,
                        &[("cookie", c), ("sec-fetch-site", ok)],
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{state_changing} {ok}: {:?}", r.body);
            }
        }
        // Safe methods pass from anywhere (links, top-level navigations).
        for safe in ["GET", "HEAD", "OPTIONS"] {
            let r = h
                .verify_as(
                    "/auth/verify",
                    safe,
                    &[
                        ("cookie", c),
                        ("sec-fetch-site", "cross-site"),
                        ("origin", "https://evil.example"),
                    ],
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{safe}");
        }
        // Traefik's header counts too, and a client-added "GET" does not
        // hide a state-changing method.
        let cross = ("sec-fetch-site", "cross-site");
        let r = h
            .send(
                Method::GET,
                "/auth/verify",
                &[("cookie", c), cross, ("x-forwarded-method", "DELETE")],
            )
            .await;
        r.assert_problem(403, "csrf_rejected");
        let r = h
            .send(
                Method::GET,
                "/auth/verify",
                &[
                    ("cookie", c),
                    cross,
                    ("x-forwarded-method", "GET"),
                    ("x-original-method", "POST"),
                ],
            )
            .await;
        r.assert_problem(403, "csrf_rejected");
        // A refused request does not slide the idle expiry (it writes nothing).
        let handle = h.state.sessions.verify(&tok).await.unwrap().handle.clone();
        let stored = |h: &H| {
            let store = h.state.store.clone();
            let handle = handle.clone();
            async move { store.get(&handle).await.unwrap().unwrap() }
        };
        let before = stored(&h).await;
        h.clock
            .advance_secs(h.state.config.session.touch_interval_secs + 5);
        h.verify_as("/auth/verify", "POST", &[("cookie", c), cross])
            .await
            .assert_problem(403, "csrf_rejected");
        let after = stored(&h).await;
        assert_eq!(
            (after.last_seen_at, after.idle_expires_at),
            (before.last_seen_at, before.idle_expires_at)
        );
        // A successful one does.
        let r = h.verify_as("/auth/verify", "POST", &[("cookie", c)]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(stored(&h).await.last_seen_at > before.last_seen_at);

        // allow_same_site opens same-site, never cross-site.
        let mut cfg = config();
        cfg.forward_auth.allow_same_site = true;
        let h = harness_with(cfg);
        let (tok, _) = h.login("u", 1).await;
        let c = h.cookie(&tok);
        let r = h
            .verify_as(
                "/auth/verify",
                "POST",
                &[("cookie", &c), ("sec-fetch-site", "same-site")],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        h.verify_as(
            "/auth/verify",
            "POST",
            &[("cookie", &c), ("sec-fetch-site", "cross-site")],
        )
        .await
        .assert_problem(403, "csrf_rejected");
    }

    /// Without `X-Forwarded-Method` / `X-Original-Method` the proxied
    /// method is unknown: it was taken for the sub-request's own GET, so a
    /// same-site (or cross-site) POST passed the CSRF check (SPEC §4.2).
    #[tokio::test]
    async fn cs_02_without_a_method_header_the_request_is_judged_state_changing() {
        let h = harness();
        let (tok, _) = h.login("u", 1).await;
        let c = h.cookie(&tok);
        for site in ["same-site", "cross-site"] {
            let r = h
                .send(
                    Method::GET,
                    "/auth/verify",
                    &[("cookie", &c), ("host", HOST), ("sec-fetch-site", site)],
                )
                .await;
            r.assert_problem(403, "csrf_rejected");
            assert!(r.header("x-tessera-subject").is_none());
        }
        let r = h
            .send(
                Method::HEAD,
                "/auth/verify",
                &[("cookie", &c), ("host", HOST), ("origin", "https://evil.example")],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        // The proxy naming a safe method lets a cross-site navigation pass…
        let r = h
            .verify_as(
                "/auth/verify",
                "GET",
                &[("cookie", &c), ("sec-fetch-site", "cross-site")],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        // …and so do same-origin requests and non-browser clients (no
        // Sec-Fetch-Site, no Origin) without one.
        for headers in [
            vec![("sec-fetch-site", "same-origin")],
            vec![("origin", OWN_ORIGIN)],
            vec![],
        ] {
            let mut all = vec![("cookie", c.as_str()), ("host", HOST)];
            all.extend(headers.iter().copied());
            let r = h.send(Method::GET, "/auth/verify", &all).await;
            assert_eq!(r.status, StatusCode::OK, "{headers:?}: {:?}", r.body);
        }
    }

    /// Traefik's ForwardAuth sends the sub-request with Tessera's own
    /// `Host` and the public one in `X-Forwarded-Host`: the request's own
    /// origin is the forwarded host's.
    #[tokio::test]
    async fn cs_03_traefik_forwarded_host_is_the_requests_own_origin() {
        let h = harness();
        let (tok, _) = h.login("u", 1).await;
        let c = h.cookie(&tok);
        let traefik = |origin: &'static str| {
            vec![
                ("cookie", c.clone()),
                ("host", "tessera:8080".to_owned()),
                ("x-forwarded-method", "POST".to_owned()),
                ("x-forwarded-proto", "https".to_owned()),
                ("x-forwarded-host", HOST.to_owned()),
                ("x-forwarded-uri", "/orders".to_owned()),
                ("origin", origin.to_owned()),
            ]
        };
        let send = |hs: Vec<(&'static str, String)>| {
            let h = &h;
            async move {
                let hs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (*k, v.as_str())).collect();
                h.send(Method::GET, "/auth/verify", &hs).await
            }
        };
        let r = send(traefik(OWN_ORIGIN)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        send(traefik("https://evil.example"))
            .await
            .assert_problem(403, "csrf_rejected");
        send(traefik("https://tessera:8080"))
            .await
            .assert_problem(403, "csrf_rejected");
    }

    /// Envoy's ext_authz HTTP service sends the check with the original
    /// method, at `path_prefix` + the original path and query; the method
    /// header comes from `headers_to_add` (`%REQ(:METHOD)%`).
    #[tokio::test]
    async fn envoy_ext_authz_checks_are_understood() {
        let h = harness();
        let (tok, handle) = h.login("u", 1).await;
        let c = h.cookie(&tok);
        for (method, uri) in [
            (Method::POST, "/auth/verify/orders?level=hard"),
            (Method::DELETE, "/auth/verify/"),
            (Method::GET, "/auth/verify/a/b?x=1"),
            (Method::PUT, "/auth/verify"),
        ] {
            let m = method.as_str().to_owned();
            let r = h
                .send(
                    method.clone(),
                    uri,
                    &[
                        ("cookie", &c),
                        ("host", HOST),
                        ("x-forwarded-method", &m),
                        ("sec-fetch-site", "same-origin"),
                    ],
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{method} {uri}: {:?}", r.body);
            assert_eq!(r.header("x-tessera-session"), Some(handle.as_str()));
            let r = h
                .send(
                    method.clone(),
                    uri,
                    &[("cookie", &c), ("host", HOST), ("sec-fetch-site", "cross-site")],
                )
                .await;
            r.assert_problem(403, "csrf_rejected");
        }
        // The proxied request's query is not ours: `level` there is ignored.
        let r = h
            .send(
                Method::GET,
                "/auth/verify/x?level=9",
                &[("cookie", &c), ("x-forwarded-method", "GET")],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        h.send(Method::GET, "/auth/verify?level=9", &[("cookie", &c)])
            .await
            .assert_problem(403, "forbidden");
    }

    #[tokio::test]
    async fn cs_02_logout_checks_the_request_itself() {
        let h = harness();
        let (tok, _) = h.login("u", 1).await;
        let c = h.cookie(&tok);
        for site in ["cross-site", "same-site"] {
            let r = h
                .logout("/auth/logout", &[("cookie", &c), ("sec-fetch-site", site)])
                .await;
            r.assert_problem(403, "csrf_rejected");
            r.assert_no_store();
            assert!(r.header("set-cookie").is_none() && r.header("clear-site-data").is_none());
            assert!(h.is_live(&tok).await, "a refused logout revoked the session");
        }
        // X-Original-Method cannot disguise the logout POST.
        let r = h
            .logout(
                "/auth/logout",
                &[
                    ("cookie", &c),
                    ("sec-fetch-site", "cross-site"),
                    ("x-original-method", "GET"),
                ],
            )
            .await;
        r.assert_problem(403, "csrf_rejected");
        assert!(h.is_live(&tok).await);
        let r = h
            .logout(
                "/auth/logout",
                &[("cookie", &c), ("sec-fetch-site", "same-origin")],
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert!(!h.is_live(&tok).await);
    }

    #[tokio::test]
    async fn cs_03_origin_is_the_fallback() {
        let mut cfg = config();
        cfg.forward_auth.allowed_origins = vec!["https://admin.example".into()];
        let h = harness_with(cfg);
        let (tok, _) = h.login("u", 1).await;
        let c = h.cookie(&tok);
        let c = c.as_str();
        for evil in [
            "https://evil.example",
            "null",
            "http://app.example.evil",
            "https://app.example:8443",
            "",
        ] {
            let r = h
                .verify_as("/auth/verify", "POST", &[("cookie", c), ("origin", evil)])
                .await;
            r.assert_problem(403, "csrf_rejected");
            let r = h.logout("/auth/logout", &[("cookie", c), ("origin", evil)]).await;
            r.assert_problem(403, "csrf_rejected");
            assert!(h.is_live(&tok).await);
        }
        // The request's own origin, a listed one (also when same-site), and
        // a non-browser client that sends neither header.
        for headers in [
            vec![("origin", OWN_ORIGIN)],
            vec![("origin", "HTTPS://APP.EXAMPLE")],
            vec![("origin", OWN_ORIGIN), ("x-forwarded-proto", "https")],
            vec![("origin", "https://admin.example")],
            vec![
                ("origin", "https://admin.example"),
                ("sec-fetch-site", "same-site"),
            ],
            vec![],
        ] {
            let mut all = vec![("cookie", c)];
            all.extend(headers.iter().copied());
            let r = h.verify_as("/auth/verify", "POST", &all).await;
            assert_eq!(r.status, StatusCode::OK, "{headers:?}: {:?}", r.body);
        }
        // The scheme must match X-Forwarded-Proto when the proxy sends it.
        let r = h
            .verify_as(
                "/auth/verify",
                "POST",
                &[
                    ("cookie", c),
                    ("origin", "http://app.example"),
                    ("x-forwarded-proto", "https"),
                ],
            )
            .await;
        r.assert_problem(403, "csrf_rejected");
        // Host with the default port still matches.
        let r = h
            .send(
                Method::GET,
                "/auth/verify",
                &[
                    ("cookie", c),
                    ("x-original-method", "POST"),
                    ("host", "app.example:443"),
                    ("origin", OWN_ORIGIN),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        // A listed origin never opens cross-site.
        let r = h
            .verify_as(
                "/auth/verify",
                "POST",
                &[
                    ("cookie", c),
                    ("origin", "https://admin.example"),
                    ("sec-fetch-site", "cross-site"),
                ],
            )
            .await;
        r.assert_problem(403, "csrf_rejected");
        let r = h
            .logout("/auth/logout", &[("cookie", c), ("origin", OWN_ORIGIN)])
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert!(!h.is_live(&tok).await);
    }

    #[tokio::test]
    async fn cs_04_logout_is_never_a_get() {
        let h = harness();
        let (tok, _) = h.login("u", 1).await;
        let c = h.cookie(&tok);
        for method in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ] {
            let r = h
                .send(method.clone(), "/auth/logout", &[("cookie", &c), ("host", HOST)])
                .await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert!(r.header("set-cookie").is_none() && r.header("clear-site-data").is_none());
            assert!(h.is_live(&tok).await, "{method} /auth/logout ended the session");
        }
        // /auth/verify answers every method (Envoy's ext_authz checks with
        // the proxied one), and a POST there is judged as one.
        let r = h
            .send(
                Method::POST,
                "/auth/verify",
                &[("cookie", &c), ("host", HOST), ("sec-fetch-site", "cross-site")],
            )
            .await;
        r.assert_problem(403, "csrf_rejected");
    }

    fn attrs(set_cookie: &str) -> Vec<String> {
        let mut v: Vec<String> = set_cookie
            .split(';')
            .skip(1)
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.starts_with("Max-Age="))
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn ex_12_logout_clears_the_client() {
        for secure in [true, false] {
            let mut cfg = config();
            cfg.cookie.secure = secure;
            let h = harness_with(cfg);
            let (tok, _) = h.login("u", 1).await;
            let (other, _) = h.login("u", 1).await;
            let r = h
                .logout(
                    "/auth/logout",
                    &[("cookie", &h.cookie(&tok)), ("sec-fetch-site", "same-origin")],
                )
                .await;
            assert_eq!(r.status, StatusCode::NO_CONTENT);
            assert_eq!(r.body, Value::Null);
            assert_eq!(
                r.header("clear-site-data"),
                Some("\"cache\", \"cookies\", \"storage\"")
            );
            r.assert_no_store();
            let set = r.header("set-cookie").unwrap();
            let name = h.cookie_name();
            assert!(set.starts_with(&format!("{name}=;")), "{set}");
            assert!(set.contains("Max-Age=0"), "{set}");
            assert!(!set.to_ascii_lowercase().contains("domain"), "{set}");
            // Identical attributes to the cookie the session was issued with.
            let issued = session_cookie(
                &h.state.config.cookie,
                &tok,
                h.clock_now().plus_secs(3600),
                h.clock_now(),
            );
            assert_eq!(attrs(set), attrs(&issued), "{set} vs {issued}");
            assert_eq!(secure, set.contains("Secure"));
            assert_eq!(secure, name.starts_with("__Host-"));
            assert!(!h.is_live(&tok).await, "logout left the session live");
            assert!(h.is_live(&other).await, "logout ended another session");
            let events = h
                .state
                .sessions
                .events(tessera_core::EventQuery {
                    subject: Some("u".into()),
                    handle: None,
                    kind: None,
                    after: 0,
                    limit: 100,
                })
                .await
                .unwrap();
            assert!(
                events
                    .iter()
                    .any(|e| e.event.reason == Some(RevokeReason::Logout)),
                "{events:?}"
            );
        }
        // No cookie, an unknown one, an already revoked one: the same answer.
        let h = harness();
        let (tok, _) = h.login("u", 1).await;
        h.logout("/auth/logout", &[("cookie", &h.cookie(&tok))]).await;
        for headers in [
            vec![],
            vec![("cookie", h.cookie("tss_nope"))],
            vec![("cookie", h.cookie(&tok))],
        ] {
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = h.logout("/auth/logout", &hs).await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{headers:?}");
            assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
            assert!(r.header("clear-site-data").is_some());
        }
    }

    #[tokio::test]
    async fn logout_redirects_only_to_a_relative_path() {
        let h = harness();
        let (tok, _) = h.login("u", 1).await;
        let c = h.cookie(&tok);
        for bad in [
            "next=https://evil.example/",
            "next=//evil.example",
            "next=%2F%2Fevil.example",
            "next=/\\evil.example",
            "next=%2F%5Cevil.example",
            "next=evil",
            "next=/a%0d%0aSet-Cookie:x",
            "next=/a&next=/b",
            "next=%zz",
        ] {
            let r = h.logout(&format!("/auth/logout?{bad}"), &[("cookie", &c)]).await;
            r.assert_problem(400, "validation_failed");
            assert!(r.header("location").is_none());
            assert!(h.is_live(&tok).await, "{bad}");
        }
        let r = h
            .logout("/auth/logout?next=%2Fsigned-out%3Fbye%3D1", &[("cookie", &c)])
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.header("location"), Some("/signed-out?bye=1"));
        assert!(r.header("clear-site-data").is_some() && r.header("set-cookie").is_some());
        assert!(!h.is_live(&tok).await);
    }

    #[tokio::test]
    async fn ex_13_every_answer_is_no_store() {
        let h = harness();
        let (tok, _) = h.login("u", 1).await;
        let c = h.cookie(&tok);
        let answers = [
            h.send(Method::GET, "/auth/verify", &[("cookie", &c)]).await,
            h.send(Method::HEAD, "/auth/verify", &[("cookie", &c)]).await,
            h.send(Method::GET, "/auth/verify", &[]).await,
            h.send(Method::GET, "/auth/verify?level=9", &[("cookie", &c)])
                .await,
            h.send(Method::GET, "/auth/verify?level=x", &[]).await,
            h.verify_as(
                "/auth/verify",
                "POST",
                &[("cookie", &c), ("sec-fetch-site", "cross-site")],
            )
            .await,
            h.logout("/auth/logout", &[("sec-fetch-site", "cross-site")])
                .await,
            h.logout("/auth/logout?next=//x", &[]).await,
            h.logout("/auth/logout", &[("cookie", &c)]).await,
        ];
        for r in &answers {
            r.assert_no_store();
        }
    }

    #[tokio::test]
    async fn outcomes_are_counted() {
        let h = harness();
        h.send(Method::GET, "/auth/verify", &[]).await;
        let (tok, _) = h.login("u", 1).await;
        h.send(Method::GET, "/auth/verify", &[("cookie", &h.cookie(&tok))])
            .await;
        h.logout("/auth/logout", &[("sec-fetch-site", "cross-site")])
            .await;
        let text = h.state.metrics.render();
        for needle in [
            r#"tessera_forward_auth_total{endpoint="verify",outcome="ok"}"#,
            r#"tessera_forward_auth_total{endpoint="verify",outcome="no_credential"}"#,
            r#"tessera_forward_auth_total{endpoint="logout",outcome="csrf_rejected"}"#,
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        assert!(!text.contains(&tok[4..]), "a token reached the metrics");
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn the_forward_auth_section_is_configurable() {
        let c = Config::default();
        assert!(c.forward_auth.allowed_origins.is_empty() && !c.forward_auth.allow_same_site);
        let c = Config::from_toml(
            "[forward_auth]\nallowed_origins = [\"https://app.example\", \"http://localhost:3000\", \"https://[::1]:8443\"]\nallow_same_site = true\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.forward_auth.allowed_origins.len(), 3);
        assert!(c.forward_auth.allow_same_site);
        let e = Config::from_toml("[forward_auth]\nallowed_origin = []\n").unwrap_err();
        assert!(e.contains("unknown field `allowed_origin`"), "{e}");
        let c = Config::load(
            None,
            env(&[
                ("TESSERA_STORE", "memory://"),
                (
                    "TESSERA_FORWARD_AUTH_ALLOWED_ORIGINS",
                    " https://a.example, https://b.example:8443 ,",
                ),
                ("TESSERA_FORWARD_AUTH_ALLOW_SAME_SITE", "true"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.forward_auth.allowed_origins,
            ["https://a.example", "https://b.example:8443"]
        );
        assert!(c.forward_auth.allow_same_site);
        for bad in [
            "*",
            "null",
            "app.example",
            "https://app.example/",
            "https://app.example/path",
            "https://app.example:443",
            "http://app.example:80",
            "https://app.example:x",
            "https://",
            "ftp://app.example",
            "https://user@app.example",
        ] {
            let r = Config::load(
                None,
                env(&[
                    ("TESSERA_STORE", "memory://"),
                    ("TESSERA_FORWARD_AUTH_ALLOWED_ORIGINS", bad),
                ]),
                &Overrides::default(),
            );
            let e = r.expect_err(bad).to_string();
            assert!(e.contains("[forward_auth] allowed_origins"), "{bad}: {e}");
        }
        // The effective configuration round-trips through `config check`.
        let shown = c.to_masked_toml();
        assert!(shown.contains("[forward_auth]"), "{shown}");
        assert_eq!(Config::from_toml(&shown).unwrap().forward_auth, c.forward_auth);
    }

    #[test]
    fn csrf_rules_table() {
        let cfg = ForwardAuthConfig::default();
        let ctx = |m: bool, site: Option<&'static str>, origin: Option<&'static str>| FetchContext {
            state_changing: m,
            sec_fetch_site: site,
            origin,
            host: Some(HOST),
            forwarded_proto: None,
        };
        assert!(check_csrf(&ctx(false, Some("cross-site"), Some("https://x")), &cfg).is_ok());
        assert!(check_csrf(&ctx(true, None, None), &cfg).is_ok());
        assert!(check_csrf(&ctx(true, Some("Same-Origin"), None), &cfg).is_ok());
        assert!(check_csrf(&ctx(true, Some("cross-site"), Some(OWN_ORIGIN)), &cfg).is_err());
        assert!(check_csrf(&ctx(true, None, Some(OWN_ORIGIN)), &cfg).is_ok());
        assert!(check_csrf(&ctx(true, None, Some("https://evil")), &cfg).is_err());
        let no_host = FetchContext {
            host: None,
            ..ctx(true, None, Some(OWN_ORIGIN))
        };
        assert!(check_csrf(&no_host, &cfg).is_err());
    }

    impl H {
        fn clock_now(&self) -> Timestamp {
            use tessera_core::Clock;
            self.clock.now()
        }
    }
}
