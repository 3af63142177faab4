//! The backend API (SPEC §4.1).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tessera_core::tokens::TokenRequest as TokensRequest;
use tessera_core::{
    AuthInput, CreateSession, DeviceInput, Event, EventKind, EventQuery, IssuedSession, IssuedTokens,
    LoginError, OAuthError, PreparedTokens, RevokeReason, SessionRecord, TtlInput,
};
use tessera_http::cookies::session_cookie;
use tessera_http::session_view::PublicSession;

use crate::app::AppState;
use crate::extract::{Json, Path, Query};
use crate::metrics::record_verify;
use crate::problem::{ApiError, ApiResult};

/// Default and largest page of `GET /v1/events`.
pub const EVENTS_DEFAULT_LIMIT: u32 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub subject: String,
    #[serde(default)]
    pub auth: Option<AuthInput>,
    #[serde(default)]
    pub device: Option<DeviceInput>,
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
    #[serde(default)]
    pub ttl: Option<TtlInput>,
    #[serde(default)]
    pub previous_session_token: Option<String>,
    /// Also issue an access token (and a refresh token, if the client
    /// gets them) for the new session.
    #[serde(default)]
    pub tokens: Option<TokensRequest>,
    /// Offer Device Bound Session Credentials: the answer carries
    /// `dbsc_registration`, the `Secure-Session-Registration` value for the
    /// app's login response (SPEC §4.5).
    #[serde(default)]
    pub dbsc: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub session_token: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElevateRequest {
    pub session_token: String,
    pub auth: AuthInput,
    /// New tokens for the elevated session (the old refresh tokens end
    /// with the old session token).
    #[serde(default)]
    pub tokens: Option<TokensRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    pub data: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptQuery {
    #[serde(default)]
    pub except: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub handle: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub limit: Option<String>,
}

#[derive(Serialize)]
pub struct SessionBody<'a> {
    pub session: PublicSession<'a>,
}

#[derive(Serialize)]
pub struct IssuedBody<'a> {
    pub session: PublicSession<'a>,
    pub session_token: &'a str,
    pub cookie: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokensBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dbsc_registration: Option<String>,
}

/// The token members of a create/elevate answer.
#[derive(Serialize)]
pub struct TokensBody<'a> {
    pub access_token: &'a str,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<&'a str>,
    pub scope: &'a str,
}

fn tokens_body(t: &IssuedTokens) -> TokensBody<'_> {
    TokensBody {
        access_token: &t.access_token,
        token_type: t.token_type,
        expires_in: t.expires_in,
        refresh_token: t.refresh_token.as_ref().map(|r| r.expose()),
        scope: &t.scope,
    }
}

/// A token request error as a problem naming the `tokens` member.
fn tokens_error(e: OAuthError) -> ApiError {
    match e {
        OAuthError::Unavailable(detail) => {
            tracing::error!(error = %detail, "cannot issue tokens");
            ApiError::StoreUnavailable
        }
        OAuthError::InvalidScope(m) => ApiError::validation(format!("tokens.scope: {m}")),
        // RFC 8707's `invalid_target`, named so a client can tell it apart.
        OAuthError::InvalidTarget(m) => {
            ApiError::validation(format!("tokens.audience or tokens.resource: invalid_target: {m}"))
        }
        OAuthError::InvalidRequest(m) => ApiError::validation(format!("tokens.client_id: {m}")),
        other => ApiError::validation(format!("tokens: {other}")),
    }
}

/// A `tokens` request checked as issuance will check it, with a signing
/// key made sure of, before the session is written.
async fn prepare_tokens(state: &AppState, req: &TokensRequest) -> ApiResult<PreparedTokens> {
    state.oauth.ensure_signer().await.map_err(tokens_error)?;
    state.oauth.tokens.prepare(req).await.map_err(tokens_error)
}

fn login_error(e: LoginError) -> ApiError {
    match e {
        LoginError::Session(e) => e.into(),
        LoginError::Tokens(e) => tokens_error(e),
    }
}

#[derive(Serialize)]
pub struct SessionsBody<'a> {
    pub sessions: Vec<PublicSession<'a>>,
}

#[derive(Serialize)]
pub struct EventsBody {
    pub events: Vec<Event>,
    pub next: String,
}

fn issued_body<'a>(
    state: &AppState,
    issued: &'a IssuedSession,
    tokens: Option<&'a IssuedTokens>,
) -> IssuedBody<'a> {
    let cookie = session_cookie(
        &state.config.cookie,
        issued.token.expose(),
        issued.session.absolute_expires_at,
        state.sessions.now(),
    );
    IssuedBody {
        session: PublicSession::of(&issued.session),
        session_token: issued.token.expose(),
        cookie,
        tokens: tokens.map(tokens_body),
        dbsc_registration: None,
    }
}

/// `{"session": …}` as a JSON response, written by the view's own writer
/// into a buffer sized for a typical session.
fn session_json(rec: &SessionRecord) -> Response {
    let mut buf = Vec::with_capacity(640);
    buf.extend_from_slice(b"{\"session\":");
    match serde_json::to_writer(&mut buf, &PublicSession::of(rec)) {
        Ok(()) => {
            buf.push(b'}');
            (
                [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                buf,
            )
                .into_response()
        }
        Err(_) => ApiError::Internal.into_response(),
    }
}

#[utoipa::path(
    post,
    path = "/v1/sessions",
    operation_id = "create_session",
    tag = "sessions",
    security(("api_key" = [])),
    request_body = crate::openapi::schemas::CreateSessionRequest,
    responses(
        (status = 201, description = "The new session and its token (and tokens, when asked)", body = crate::openapi::schemas::IssuedSession),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::ApiKeyForbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
/// `POST /v1/sessions`: login.
pub async fn create(
    State(state): State<AppState>,
    Json(req): Json<CreateRequest>,
) -> ApiResult<impl IntoResponse> {
    let login = CreateSession {
        subject: req.subject,
        auth: req.auth,
        device: req.device,
        data: req.data,
        ttl: req.ttl,
        previous_session_token: req.previous_session_token,
    };
    let (issued, tokens) = match &req.tokens {
        None => (state.sessions.create(login).await?, None),
        Some(t) => {
            // Checked before anything is written: a bad `tokens` leaves no
            // session. The refresh family is then stored with the session
            // in one step, so no crash leaves a session whose refresh token
            // was never stored.
            let prepared = prepare_tokens(&state, t).await?;
            let (issued, tokens) = state
                .oauth
                .tokens
                .login(login, prepared)
                .await
                .map_err(login_error)?;
            (issued, Some(tokens))
        }
    };
    let mut body = issued_body(&state, &issued, tokens.as_ref());
    if req.dbsc
        && let Some(dbsc) = &state.dbsc
    {
        body.dbsc_registration = Some(tessera_http::dbsc::registration_header(
            &dbsc.policy().algs,
            tessera_http::dbsc::REGISTER_PATH,
            &dbsc.registration_challenge(&issued.session),
        ));
    }
    let body = serde_json::to_vec(&body).map_err(|_| ApiError::Internal)?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    ))
}

#[utoipa::path(
    post,
    path = "/v1/sessions/verify",
    operation_id = "verify_session",
    tag = "sessions",
    security(("api_key" = [])),
    request_body = crate::openapi::schemas::SessionTokenRequest,
    responses(
        (status = 200, description = "The session is active; its idle expiry slid", body = crate::openapi::schemas::SessionBody),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::ApiKeyForbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
/// `POST /v1/sessions/verify`: checks a token and slides the idle expiry.
pub async fn verify(
    State(state): State<AppState>,
    Json(req): Json<TokenRequest>,
) -> ApiResult<impl IntoResponse> {
    let result = state.sessions.verify(&req.session_token).await;
    record_verify(&result);
    let rec = result?;
    Ok(session_json(&rec))
}

#[utoipa::path(
    post,
    path = "/v1/sessions/elevate",
    operation_id = "elevate_session",
    tag = "sessions",
    security(("api_key" = [])),
    request_body = crate::openapi::schemas::ElevateRequest,
    responses(
        (status = 200, description = "The elevated session under a new token (the old one ends)", body = crate::openapi::schemas::IssuedSession),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::ApiKeyForbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
/// `POST /v1/sessions/elevate`: step-up; replaces the token.
pub async fn elevate(
    State(state): State<AppState>,
    Json(req): Json<ElevateRequest>,
) -> ApiResult<impl IntoResponse> {
    // Checked, and a signing key made sure of, before anything is written.
    let prepared = match &req.tokens {
        Some(t) => Some(prepare_tokens(&state, t).await?),
        None => None,
    };
    // `[dbsc] required_level`: sensitive levels only from a device-bound
    // session (SPEC §4.5).
    if let Some(dbsc) = &state.dbsc
        && dbsc.policy().required_level.is_some()
    {
        let current = state.sessions.verify(&req.session_token).await?;
        let level = req.auth.level.unwrap_or(1);
        if !dbsc.may_elevate_to(&current, level) {
            return Err(ApiError::Forbidden(format!(
                "authentication level {level} needs a device-bound session (DBSC)"
            )));
        }
    }
    let (issued, tokens) = match prepared {
        None => (state.sessions.elevate(&req.session_token, req.auth).await?, None),
        Some(p) => {
            let (issued, tokens) = state
                .oauth
                .tokens
                .elevate(&req.session_token, req.auth, p)
                .await
                .map_err(login_error)?;
            (issued, Some(tokens))
        }
    };
    let body =
        serde_json::to_vec(&issued_body(&state, &issued, tokens.as_ref())).map_err(|_| ApiError::Internal)?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body))
}

#[utoipa::path(
    post,
    path = "/v1/sessions/revoke",
    operation_id = "revoke_session_by_token",
    tag = "sessions",
    security(("api_key" = [])),
    request_body = crate::openapi::schemas::SessionTokenRequest,
    responses(
        (status = 204, description = "Revoked (also when it already was, or had expired)"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::ApiKeyForbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
/// `POST /v1/sessions/revoke`: logout with the token. Idempotent for
/// revoked or expired sessions; an unknown token is `session_invalid`.
pub async fn revoke(State(state): State<AppState>, Json(req): Json<TokenRequest>) -> ApiResult<StatusCode> {
    state
        .sessions
        .revoke_token(&req.session_token, RevokeReason::Logout)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/v1/sessions/{handle}",
    operation_id = "get_session",
    tag = "sessions",
    security(("api_key" = [])),
    params(("handle" = String, Path, description = "The session handle (`ses_…`)")),
    responses(
        (status = 200, description = "The session, whatever its state", body = crate::openapi::schemas::SessionBody),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::ApiKeyForbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
/// `GET /v1/sessions/{handle}`.
pub async fn get_session(
    State(state): State<AppState>,
    Path(handle): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let rec = state.sessions.get(&handle).await?;
    Ok(session_json(&rec).into_response())
}

#[utoipa::path(
    patch,
    path = "/v1/sessions/{handle}",
    operation_id = "patch_session_data",
    tag = "sessions",
    security(("api_key" = [])),
    params(("handle" = String, Path, description = "The session handle (`ses_…`)")),
    request_body = crate::openapi::schemas::PatchRequest,
    responses(
        (status = 200, description = "The session with its new data", body = crate::openapi::schemas::SessionBody),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, description = "`conflict`: the session changed meanwhile; retry", body = crate::openapi::schemas::Problem, content_type = "application/problem+json"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::ApiKeyForbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
/// `PATCH /v1/sessions/{handle}`: RFC 7396 merge patch of `data`.
pub async fn patch_session(
    State(state): State<AppState>,
    Path(handle): Path<String>,
    Json(req): Json<PatchRequest>,
) -> ApiResult<impl IntoResponse> {
    let rec = state.sessions.patch_data(&handle, &req.data).await?;
    Ok(session_json(&rec).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/sessions/{handle}",
    operation_id = "revoke_session",
    tag = "sessions",
    security(("api_key" = [])),
    params(("handle" = String, Path, description = "The session handle (`ses_…`)")),
    responses(
        (status = 204, description = "Revoked (also when it already was)"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::ApiKeyForbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
/// `DELETE /v1/sessions/{handle}`: 204, also when already revoked.
pub async fn delete_session(
    State(state): State<AppState>,
    Path(handle): Path<String>,
) -> ApiResult<StatusCode> {
    state.sessions.revoke(&handle, RevokeReason::Revoked).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/v1/subjects/{subject}/sessions",
    operation_id = "list_subject_sessions",
    tag = "sessions",
    security(("api_key" = [])),
    params(("subject" = String, Path, description = "The subject (user)")),
    responses(
        (status = 200, description = "The subject's active sessions, newest first", body = crate::openapi::schemas::SessionList),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::ApiKeyForbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
/// `GET /v1/subjects/{subject}/sessions`: active sessions, newest first.
pub async fn list_subject(
    State(state): State<AppState>,
    Path(subject): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let list = state.sessions.list(&subject).await?;
    Ok(axum::Json(SessionsBody {
        sessions: list.iter().map(|s| PublicSession::of(s)).collect(),
    })
    .into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/subjects/{subject}/sessions",
    operation_id = "revoke_subject_sessions",
    tag = "sessions",
    security(("api_key" = [])),
    params(("subject" = String, Path, description = "The subject (user)"),
        ("except" = Option<String>, Query, description = "A session handle to keep (the current one)"),
    ),
    responses(
        (status = 200, description = "How many sessions were revoked", body = crate::openapi::schemas::RevokedCount),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::ApiKeyForbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
/// `DELETE /v1/subjects/{subject}/sessions[?except=HANDLE]`: sign out everywhere.
pub async fn revoke_subject(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    Query(q): Query<ExceptQuery>,
) -> ApiResult<impl IntoResponse> {
    let except = q.except;
    let n = state
        .sessions
        .revoke_all(&subject, except.as_deref(), RevokeReason::RevokeAll)
        .await?;
    Ok(axum::Json(serde_json::json!({ "revoked": n })))
}

#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "list_events",
    tag = "events",
    security(("api_key" = [])),
    params(
        ("subject" = Option<String>, Query, description = "Only this subject's events"),
        ("handle" = Option<String>, Query, description = "Only this session's events"),
        ("kind" = Option<String>, Query, pattern = "^(|created|refreshed|elevated|revoked|expired|refresh_token_reuse|binding_failed)$", description = "Only events of this kind (an `EventKind`); empty counts as absent"),
        ("after" = Option<String>, Query, pattern = "^([0-9]{1,20})?$", description = "Events after this id, a decimal u64; empty counts as absent (the previous page's `next`)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size [default: 100]"),
    ),
    responses(
        (status = 200, description = "A page of events, oldest first", body = crate::openapi::schemas::EventPage),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::ApiKeyForbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
/// `GET /v1/events?subject=&handle=&kind=&after=&limit=`.
pub async fn events(
    State(state): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<axum::Json<EventsBody>> {
    let nonempty = |s: Option<String>| s.filter(|v| !v.is_empty());
    let after = match nonempty(q.after) {
        Some(a) => a
            .parse::<u64>()
            .map_err(|_| ApiError::validation("after: must be a decimal event id"))?,
        None => 0,
    };
    let limit = match nonempty(q.limit) {
        Some(l) => l.parse::<u32>().map_err(|_| {
            ApiError::validation(format!(
                "limit: must be an integer between 1 and {}",
                tessera_core::events::MAX_EVENTS_PAGE
            ))
        })?,
        None => EVENTS_DEFAULT_LIMIT,
    };
    let kind = match nonempty(q.kind) {
        Some(k) => Some(k.parse::<EventKind>().map_err(|()| {
            let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            ApiError::validation(format!("kind: must be one of {}", names.join(", ")))
        })?),
        None => None,
    };
    let events = state
        .events
        .page(EventQuery {
            subject: nonempty(q.subject),
            handle: nonempty(q.handle),
            kind,
            after,
            limit,
        })
        .await?;
    let next = events.last().map_or(after, |e| e.id).to_string();
    Ok(axum::Json(EventsBody { events, next }))
}
