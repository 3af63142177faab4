//! Device Bound Session Credentials in the layer (SPEC §4.5: "the library
//! serves the same in-process"): `POST /auth/dbsc/register` and
//! `POST /auth/dbsc/refresh` answered by the layer itself, with the
//! service's statuses and headers. The rules are `tessera_core::dbsc`'s,
//! the wire format `tessera_http::dbsc`'s; this file only maps outcomes
//! onto responses (403: answer the challenge; other 4xx: forget the DBSC
//! session; 5xx: back off), never a redirect.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use tessera_core::dbsc::{BoundCookie, Dbsc, DbscError, DbscPolicy};
use tessera_core::{ReplayStore, Sealer};
use tessera_http::cookies::SessionValue;
use tessera_http::dbsc::{
    REFRESH_PATH, REGISTER_PATH, SEC_SECURE_SESSION_ID, SECURE_SESSION_CHALLENGE, SECURE_SESSION_RESPONSE,
    bound_cookie, challenge_header, session_id, session_instruction,
};
use tessera_http::problem::Code;
use tessera_http::single_header;

use super::Shared;
use super::problem::{Error, problem};

/// How [`SessionLayer::with_dbsc`](super::SessionLayer::with_dbsc) enables
/// DBSC.
pub struct DbscOptions {
    /// Seals challenges and bound cookies. Every process of the app must
    /// share it (as they share the store), or one process refuses what
    /// another issued.
    pub sealer: Arc<Sealer>,
    pub policy: DbscPolicy,
    /// The bound cookie's name (default `__Host-tessera-dbsc`, as the
    /// service's); must differ from the session cookie's.
    pub cookie_name: String,
    /// Where the single-use markers of challenges go. `None`: the layer's
    /// own store, which [`SessionLayer::from_store_url`](super::SessionLayer::from_store_url)
    /// keeps; a layer made with [`SessionLayer::new`](super::SessionLayer::new)
    /// must be given the store here.
    pub replay: Option<Arc<dyn ReplayStore>>,
}

impl DbscOptions {
    /// Default policy and cookie name, the layer's store for the markers.
    pub fn new(sealer: Arc<Sealer>) -> Self {
        DbscOptions {
            sealer,
            policy: DbscPolicy::default(),
            cookie_name: "__Host-tessera-dbsc".into(),
            replay: None,
        }
    }
}

impl std::fmt::Debug for DbscOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbscOptions")
            .field("policy", &self.policy)
            .field("cookie_name", &self.cookie_name)
            .finish_non_exhaustive()
    }
}

/// The DBSC service of a layer and its bound cookie's name.
#[derive(Debug, Clone)]
pub(crate) struct DbscState {
    pub(crate) dbsc: Dbsc,
    pub(crate) cookie_name: String,
}

/// Whether the layer answers this request itself.
pub(crate) fn is_endpoint<B>(req: &Request<B>) -> bool {
    req.method() == Method::POST && matches!(req.uri().path(), REGISTER_PATH | REFRESH_PATH)
}

/// What every DBSC answer carries (checklist DB-12): never cached, never
/// framed, never read by another origin.
fn hardened(mut res: Response<Body>) -> Response<Body> {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// 200 with the bound cookie, the session instruction and (after a
/// refresh) the next challenge, so the next refresh needs no 403 round
/// trip (DB-08).
fn bound(d: &DbscState, cookie: &BoundCookie, push_challenge: bool) -> Response<Body> {
    let mut res = axum::Json(session_instruction(&cookie.session_id, &d.cookie_name)).into_response();
    let set = bound_cookie(&d.cookie_name, &cookie.value, d.dbsc.policy().cookie_ttl_secs);
    if let Ok(v) = HeaderValue::from_str(&set) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    if push_challenge
        && let Ok(v) = HeaderValue::from_str(&challenge_header(
            &d.dbsc.refresh_challenge(&cookie.session_id),
            &cookie.session_id,
        ))
    {
        res.headers_mut().insert(SECURE_SESSION_CHALLENGE, v);
    }
    hardened(res)
}

fn refused(e: DbscError, session_id: &str) -> Response<Body> {
    let res = match e {
        DbscError::ChallengeNeeded(c) => {
            let mut res = StatusCode::FORBIDDEN.into_response();
            if let Ok(v) = HeaderValue::from_str(&challenge_header(&c, session_id)) {
                res.headers_mut().insert(SECURE_SESSION_CHALLENGE, v);
            }
            res
        }
        DbscError::InvalidProof(why) => {
            tracing::warn!(
                reason = why,
                session = session_id,
                "binding_failed: DBSC proof refused"
            );
            problem(Code::Unauthorized, why)
        }
        DbscError::UnknownSession => problem(Code::NotFound, "no such device-bound session"),
        // The draft's way to end the browser's DBSC session (DB-10).
        DbscError::Ended => axum::Json(serde_json::json!({"continue": false})).into_response(),
        DbscError::AlreadyBound => problem(
            Code::ValidationFailed,
            "the session is already bound to a device key",
        ),
        DbscError::Unavailable(why) => {
            tracing::error!(error = %why, "DBSC unavailable");
            problem(Code::StoreUnavailable, "the session store is unavailable")
        }
    };
    hardened(res)
}

/// Answers `POST /auth/dbsc/register` or `POST /auth/dbsc/refresh`. No
/// CSRF check: what a cross-site page cannot forge here is the proof,
/// signed by the device key over a challenge only this session was given.
pub(crate) async fn serve(
    shared: &Shared,
    d: &DbscState,
    register: bool,
    headers: &HeaderMap,
) -> Response<Body> {
    if register {
        self::register(shared, d, headers).await
    } else {
        refresh(d, headers).await
    }
}

/// The browser proves its new key over the registration challenge, with
/// the session cookie of the session it binds.
async fn register(shared: &Shared, d: &DbscState, headers: &HeaderMap) -> Response<Body> {
    let presented = super::cookies::read(headers, &shared.cookie, &shared.nonce_cookie, None);
    let SessionValue::One(token) = presented.session else {
        return hardened(problem(Code::Unauthorized, "no session cookie was presented"));
    };
    let Some(proof) = single_header(headers, &SECURE_SESSION_RESPONSE) else {
        return hardened(problem(
            Code::ValidationFailed,
            "one Secure-Session-Response header is required",
        ));
    };
    let session = match shared.sessions.verify(token).await {
        Ok(s) => s,
        Err(e) => return hardened(Error::Core(e).into_response()),
    };
    match d.dbsc.register(&session, proof).await {
        Ok(cookie) => {
            tracing::info!(session = %session.handle, "device-bound session registered");
            bound(d, &cookie, false)
        }
        Err(e) => refused(e, &session.handle),
    }
}

/// A new bound cookie for a proof over a fresh challenge; without a
/// proof, the challenge (403).
async fn refresh(d: &DbscState, headers: &HeaderMap) -> Response<Body> {
    let Some(id) = single_header(headers, &SEC_SECURE_SESSION_ID).and_then(|v| session_id(v.as_bytes()))
    else {
        return hardened(problem(
            Code::ValidationFailed,
            "one Sec-Secure-Session-Id header is required",
        ));
    };
    match d
        .dbsc
        .refresh(id, single_header(headers, &SECURE_SESSION_RESPONSE))
        .await
    {
        Ok(cookie) => {
            tracing::info!(session = id, "device-bound session refreshed with a valid proof");
            bound(d, &cookie, true)
        }
        Err(e) => refused(e, id),
    }
}
