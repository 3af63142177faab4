//! `POST /auth/logout[?next=/relative/path]`: the browser's own request,
//! proxied to Tessera as a normal route.

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use tessera_core::{Error as CoreError, RevokeReason};
use tessera_http::cookies;
use tessera_http::csrf::{FetchContext, Verdict, judge};

use super::no_store;
use crate::app::AppState;
use crate::metrics::forward_auth_counter;
use crate::problem::ApiError;

const CLEAR_SITE_DATA: HeaderName = HeaderName::from_static("clear-site-data");
const CLEAR_SITE_DATA_VALUE: &str = "\"cache\", \"cookies\", \"storage\"";

/// Longest `?next=` a logout redirects to.
const MAX_NEXT_BYTES: usize = 2048;

#[utoipa::path(
    post,
    path = "/auth/logout",
    operation_id = "forward_auth_logout",
    tag = "forward-auth",
    params(("next" = Option<String>, Query, description = "A path on this site to go to afterwards (303)")),
    responses(
        (status = 204, description = "Logged out (also without a live session): the cookie expired, `Clear-Site-Data` sent",
            headers(("Set-Cookie" = String, description = "The expired session cookie"), ("Clear-Site-Data" = String, description = "`\"cache\", \"cookies\", \"storage\"`"))),
        (status = 303, description = "Logged out; on to `next`",
            headers(("Location" = String, description = "`next`"), ("Set-Cookie" = String, description = "The expired session cookie"), ("Clear-Site-Data" = String, description = "`\"cache\", \"cookies\", \"storage\"`"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 403, description = "`csrf_rejected`: a cross-site request; nothing changed", body = crate::openapi::schemas::Problem, content_type = "application/problem+json"),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
/// Revokes the cookie's session (every distinct session-cookie value
/// presented), expires the cookie with the attributes it was set with and
/// sends `Clear-Site-Data`. 204, or 303 to `next`. A missing, unknown or
/// dead cookie gets the same clearing answer. A refused cross-site request
/// (403 `csrf_rejected`) changes nothing; a store failure is 503 and clears
/// nothing, so the user can retry with the cookie still in place.
pub async fn logout(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let (outcome, res) = logout_inner(&state, &parts).await;
    forward_auth_counter("logout", outcome).increment(1);
    no_store(res)
}

async fn logout_inner(state: &AppState, parts: &Parts) -> (&'static str, Response) {
    // The browser reaches this through the proxy: its own method, Origin
    // and Sec-Fetch-Site are the ones to check. X-Forwarded-Method and
    // X-Original-Method are deliberately ignored here.
    let ctx = FetchContext::from_headers(
        &parts.headers,
        Some(parts.method.as_str().as_bytes()),
        parts.uri.authority().map(|a| a.as_str()),
    );
    if let Verdict::Refuse(why) = judge(&ctx, &state.config.forward_auth.policy()) {
        return (
            "csrf_rejected",
            ApiError::CsrfRejected(why.detail()).into_response(),
        );
    }
    let next = match logout_next(parts.uri.query()) {
        Ok(n) => n,
        Err(e) => return ("bad_request", e.into_response()),
    };
    let cookie = &state.config.cookie;
    let mut revoked = false;
    for token in cookies::logout_values(&parts.headers, cookie.effective_name()) {
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
    match HeaderValue::from_str(&cookies::session_removal(cookie)) {
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
        let path = percent_decode_str(v).decode_utf8().map_err(|_| bad_next())?;
        let ok = path.len() <= MAX_NEXT_BYTES
            && path.starts_with('/')
            && !path.starts_with("//")
            && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
        if !ok {
            return Err(bad_next());
        }
        next = Some(path.into_owned());
    }
    Ok(next)
}
