//! `POST /auth/dbsc/register` and `POST /auth/dbsc/refresh` (SPEC §4.5):
//! the browser's half of Device Bound Session Credentials, same-origin
//! through the proxy. The rules are `tessera_core::dbsc`'s, the wire format
//! `tessera_http::dbsc`'s; this only maps outcomes onto the statuses user
//! agents act on (403: answer the challenge; other 4xx: forget the DBSC
//! session; 5xx: back off) — never a redirect.

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::dbsc::{BoundCookie, Dbsc, DbscError};
use tessera_http::cookies::{self, SessionValue};
use tessera_http::dbsc::{
    SEC_SECURE_SESSION_ID, SECURE_SESSION_CHALLENGE, SECURE_SESSION_RESPONSE, bound_cookie, challenge_header,
    session_id, session_instruction,
};
use tessera_http::single_header;

use crate::app::AppState;
use crate::problem::ApiError;

/// What every DBSC answer carries (checklist DB-12): never cached, never
/// framed, never read by another origin.
fn hardened(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    res
}

fn disabled() -> Response {
    hardened(ApiError::NotFound("DBSC is not enabled ([dbsc] enabled)".into()).into_response())
}

/// 200 with the bound cookie, the session instruction and (after a
/// refresh) the next challenge, so the next refresh needs no 403 round
/// trip (DB-08).
fn bound(state: &AppState, dbsc: &Dbsc, cookie: &BoundCookie, push_challenge: bool) -> Response {
    let name = &state.config.dbsc.cookie_name;
    let mut res = axum::Json(session_instruction(&cookie.session_id, name)).into_response();
    let set = bound_cookie(name, &cookie.value, dbsc.policy().cookie_ttl_secs);
    if let Ok(v) = HeaderValue::from_str(&set) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    if push_challenge
        && let Ok(v) = HeaderValue::from_str(&challenge_header(
            &dbsc.refresh_challenge(&cookie.session_id),
            &cookie.session_id,
        ))
    {
        res.headers_mut().insert(SECURE_SESSION_CHALLENGE, v);
    }
    hardened(res)
}

fn refused(e: DbscError, session_id: Option<&str>) -> Response {
    let res = match e {
        DbscError::ChallengeNeeded(c) => {
            let mut res = StatusCode::FORBIDDEN.into_response();
            if let Ok(v) = HeaderValue::from_str(&challenge_header(&c, session_id.unwrap_or_default())) {
                res.headers_mut().insert(SECURE_SESSION_CHALLENGE, v);
            }
            res
        }
        // Logged (and recorded as `binding_failed`) by the core.
        DbscError::InvalidProof(why) => ApiError::Unauthorized(why).into_response(),
        DbscError::UnknownSession => {
            ApiError::NotFound("no such device-bound session".into()).into_response()
        }
        // The draft's way to end the browser's DBSC session (DB-10).
        DbscError::Ended => axum::Json(serde_json::json!({"continue": false})).into_response(),
        DbscError::AlreadyBound => {
            ApiError::Validation("the session is already bound to a device key".into()).into_response()
        }
        DbscError::Unavailable(why) => {
            tracing::error!(error = %why, "DBSC unavailable");
            ApiError::StoreUnavailable.into_response()
        }
    };
    hardened(res)
}

/// The per-address limit of both DBSC endpoints: the 429 to send when
/// over it.
fn over_ip_limit(state: &AppState, req: &Request) -> Option<Response> {
    let limits = &state.limits;
    let ip = limits.client_ip(req.headers(), req.extensions());
    let over = limits.check(&limits.dbsc_per_ip, ip.as_bytes()).err()?;
    Some(hardened(ApiError::from(over).into_response()))
}

#[utoipa::path(
    post,
    path = "/auth/dbsc/register",
    operation_id = "dbsc_register",
    tag = "dbsc",
    params(("Secure-Session-Response" = String, Header, description = "The browser's proof (a JWT) over the registration challenge")),
    responses(
        (status = 200, description = "Registered: the session instruction and the bound cookie", body = crate::openapi::schemas::DbscInstruction, headers(("Set-Cookie" = String, description = "The bound cookie"), ("Secure-Session-Challenge" = String, description = "After a refresh: the next challenge"), ("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "Answer this challenge: sign a proof over it and retry (no body)",
            headers(("Secure-Session-Challenge" = String, description = "The challenge (a structured header)"))),
        (status = 404, description = "`not_found`: DBSC is not enabled, or no such device-bound session", body = crate::openapi::schemas::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
/// `POST /auth/dbsc/register`: the browser proves its new key over the
/// registration challenge, with the session cookie of the session it binds.
pub async fn register(State(state): State<AppState>, req: Request) -> Response {
    let Some(dbsc) = state.dbsc.as_ref() else {
        return disabled();
    };
    if let Some(refused) = over_ip_limit(&state, &req) {
        return refused;
    }
    let headers = req.headers();
    let token = match cookies::session_value(headers, state.config.cookie.effective_name()) {
        SessionValue::One(v) => v,
        _ => return hardened(ApiError::Unauthorized("no session cookie was presented").into_response()),
    };
    let Some(proof) = single_header(headers, &SECURE_SESSION_RESPONSE) else {
        return hardened(
            ApiError::Validation("one Secure-Session-Response header is required".into()).into_response(),
        );
    };
    let session = match state.sessions.verify(token).await {
        Ok(s) => s,
        Err(e) => return hardened(ApiError::from(e).into_response()),
    };
    match dbsc.register(&session, proof).await {
        Ok(cookie) => {
            tracing::info!(session = %session.handle, "device-bound session registered");
            bound(&state, dbsc, &cookie, false)
        }
        Err(e) => refused(e, Some(&session.handle)),
    }
}

#[utoipa::path(
    post,
    path = "/auth/dbsc/refresh",
    operation_id = "dbsc_refresh",
    tag = "dbsc",
    params(
        ("Sec-Secure-Session-Id" = String, Header, description = "The device-bound session"),
        ("Secure-Session-Response" = Option<String>, Header, description = "The proof over the last challenge; without it, the answer is the challenge (403)"),
    ),
    responses(
        (status = 200, description = "A new bound cookie (and the next challenge), or `{\"continue\": false}` when the session has ended", body = crate::openapi::schemas::DbscInstruction, headers(("Set-Cookie" = String, description = "The bound cookie"), ("Secure-Session-Challenge" = String, description = "After a refresh: the next challenge"), ("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "Answer this challenge: sign a proof over it and retry (no body)",
            headers(("Secure-Session-Challenge" = String, description = "The challenge (a structured header)"))),
        (status = 404, description = "`not_found`: DBSC is not enabled, or no such device-bound session", body = crate::openapi::schemas::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
/// `POST /auth/dbsc/refresh`: a new bound cookie for a proof over a fresh
/// challenge; without a proof, the challenge (403).
pub async fn refresh(State(state): State<AppState>, req: Request) -> Response {
    let Some(dbsc) = state.dbsc.as_ref() else {
        return disabled();
    };
    if let Some(refused) = over_ip_limit(&state, &req) {
        return refused;
    }
    let headers = req.headers();
    let Some(id) = single_header(headers, &SEC_SECURE_SESSION_ID).and_then(|v| session_id(v.as_bytes()))
    else {
        return hardened(
            ApiError::Validation("one Sec-Secure-Session-Id header is required".into()).into_response(),
        );
    };
    // Per bound session too: a stolen session id cannot be used to make
    // the server check proofs (and log refusals) without end.
    let limits = &state.limits;
    if let Err(l) = limits.check(&limits.dbsc_per_session, id.as_bytes()) {
        return hardened(ApiError::from(l).into_response());
    }
    let proof = single_header(headers, &SECURE_SESSION_RESPONSE);
    match dbsc.refresh(id, proof).await {
        Ok(cookie) => bound(&state, dbsc, &cookie, true),
        Err(e) => refused(e, Some(id)),
    }
}
