//! OAuth 2.0 endpoints (SPEC §4.3): `POST /oauth2/token` (the
//! `refresh_token` grant), `POST /oauth2/revoke` (RFC 7009),
//! `POST /oauth2/introspect` (RFC 7662), `GET /.well-known/jwks.json` and
//! `GET /.well-known/oauth-authorization-server` (RFC 8414).
//!
//! Requests are `application/x-www-form-urlencoded` (anything else is 400
//! `invalid_request`); a parameter given twice is `invalid_request` and an
//! empty one counts as absent (RFC 6749 §3.1–3.2). Answers are JSON with
//! `Cache-Control: no-store` and `Pragma: no-cache`; errors are RFC 6749
//! §5.2 `{"error","error_description"}`: 400, `invalid_client` 401 (with
//! `WWW-Authenticate: Basic realm="tessera"` when HTTP Basic was used), and
//! `temporarily_unavailable` 503 when the store is down.
//!
//! Client authentication, one place for all three endpoints
//! ([`authenticate`]): `client_secret_basic` (RFC 6749 §2.3.1: id and
//! secret form-urlencoded, then Base64), `client_secret_post`,
//! `private_key_jwt` (RFC 7523 §2.2: `client_assertion_type` =
//! `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and
//! `client_assertion`, checked by core's `ClientAssertions`, every refusal
//! the same 401 `invalid_client`), or a public client naming itself with
//! `client_id`. A public client may also omit
//! `client_id`: the client the presented token was issued to is used (it
//! has no secret to prove anyway); a confidential client's token then gets
//! 401 `invalid_client`.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use tessera_core::clients::{
    ASSERTION_TYPE_JWT_BEARER, AssertionError, ClientAuthError, GRANT_CLIENT_CREDENTIALS, assertion_client_id,
};
use tessera_core::dpop::{DpopError, ProofHeader, ProofRequest};
use tessera_core::model::Binding;
use tessera_core::secret::{self, TokenKind};
use tessera_core::tokens::{ACCESS_TOKEN_TYPE, ExchangeRequest, TOKEN_EXCHANGE_GRANT};
use tessera_core::{ApiKeyScope, Client, ClientKind, Introspection, IssuedTokens, OAuthError};
use tessera_http::bearer::{ClientCertThumbprint, DPOP_NONCE, dpop_proof};

use crate::app::AppState;
use crate::limits::IpSubject;
use crate::problem::ApiError;

const WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";
/// Most parameters a form may carry.
const MAX_PARAMS: usize = 32;
/// Longest `Authorization` header looked at.
const MAX_AUTHORIZATION_BYTES: usize = 1024;
const BASIC_CHALLENGE: &str = "Basic realm=\"tessera\"";

/// The OAuth routes; the metadata also at the issuer's path (RFC 8414 §3).
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut r = Router::new()
        .route("/oauth2/token", post(token))
        .route("/oauth2/revoke", post(revoke))
        .route("/oauth2/introspect", post(introspect))
        .route("/.well-known/jwks.json", get(jwks))
        .route(WELL_KNOWN, get(metadata));
    let path = &state.oauth.issuer_path;
    if !path.is_empty() {
        r = r.route(&format!("{WELL_KNOWN}{path}"), get(metadata));
    }
    r
}

#[utoipa::path(
    post,
    path = "/oauth2/token",
    operation_id = "oauth_token",
    tag = "oauth",
    security((), ("client_basic" = []), ("dpop" = []), ("client_basic" = [], "dpop" = [])),
    request_body(content = crate::openapi::schemas::TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "New tokens: the refresh token rotated, an access token alone (`client_credentials`), or the exchanged access token (RFC 8693, with `issued_token_type`)", body = crate::openapi::schemas::TokenResponse,
            headers(("Cache-Control" = String, description = "`no-store`"), ("Pragma" = String, description = "`no-cache`"),
                ("DPoP-Nonce" = String, description = "A nonce for the next DPoP proof"))),
        (status = 400, response = crate::openapi::OAuthBadRequest),
        (status = 401, response = crate::openapi::OAuthInvalidClient),
        (status = 429, response = crate::openapi::OAuthRateLimited),
        (status = 503, response = crate::openapi::OAuthUnavailable),
    ),
)]
/// `POST /oauth2/token`: `grant_type=refresh_token` (MD-07),
/// `client_credentials` and RFC 8693 token exchange.
pub async fn token(State(state): State<AppState>, req: Request) -> Response {
    answer(token_inner(&state, req).await)
}

// ------------------------------------------------------------------ revoke

#[utoipa::path(
    post,
    path = "/oauth2/revoke",
    operation_id = "oauth_revoke",
    tag = "oauth",
    security((), ("client_basic" = [])),
    request_body(content = crate::openapi::schemas::TokenHintForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or not a token of ours (RFC 7009 §2.2); the session ends with it"),
        (status = 400, response = crate::openapi::OAuthBadRequest),
        (status = 401, response = crate::openapi::OAuthInvalidClient),
        (status = 429, response = crate::openapi::OAuthRateLimited),
        (status = 503, response = crate::openapi::OAuthUnavailable),
    ),
)]
/// `POST /oauth2/revoke` (RFC 7009): 200 whether or not the token was
/// known (RV-05); `token_type_hint` is ignored, every type is searched
/// (RV-06). Revoking any token of a session ends the session.
pub async fn revoke(State(state): State<AppState>, req: Request) -> Response {
    answer(revoke_inner(&state, req).await)
}

async fn revoke_inner(state: &AppState, req: Request) -> Result<Response, OAuthFailure> {
    let ip = state.limits.client_ip(req.headers(), req.extensions());
    let (headers, form) = read_form(req).await?;
    let presented = presented_client(&headers, &form)?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthFailure::request("token is required"))?;
    let client = match authenticate_limited(state, &presented, &ip).await? {
        Some(c) => c,
        None => match token_client(state, token).await? {
            Some(id) => implied_client(state, &id).await?,
            // Not one of ours: nothing to revoke, and no oracle.
            None => return Ok(StatusCode::OK.into_response()),
        },
    };
    state
        .oauth
        .tokens
        .revoke(token, &client)
        .await
        .map_err(|e| OAuthFailure::from_core(e, presented.is_basic()))?;
    state.oauth.revoked.notify_waiters();
    Ok(StatusCode::OK.into_response())
}

// ------------------------------------------------------------------ introspect

/// Who asks an introspection question.
enum Caller {
    /// A backend API key: may learn about any token.
    Backend,
    /// A confidential client (a resource server): learns only about tokens
    /// for audiences it is allowed (RV-12).
    Client(Arc<Client>),
}

#[utoipa::path(
    post,
    path = "/oauth2/introspect",
    operation_id = "oauth_introspect",
    tag = "oauth",
    security(("api_key" = []), ("client_basic" = []), ()),
    request_body(content = crate::openapi::schemas::TokenHintForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The token's state (RFC 7662 §2.2)", body = crate::openapi::schemas::Introspection, headers(("Cache-Control" = String, description = "`no-store`"), ("Pragma" = String, description = "`no-cache`"))),
        (status = 400, response = crate::openapi::OAuthBadRequest),
        (status = 401, response = crate::openapi::OAuthInvalidClient),
        (status = 429, response = crate::openapi::OAuthRateLimited),
        (status = 503, response = crate::openapi::OAuthUnavailable),
        (status = 403, description = "`insufficient_scope`: the API key lacks the `sessions` scope", body = crate::openapi::schemas::OAuthError,
            headers(("WWW-Authenticate" = String, description = "`Bearer error=\"insufficient_scope\"`"))),
    ),
)]
/// `POST /oauth2/introspect` (RFC 7662): the caller authenticates with an
/// API key with the `sessions` scope (`Authorization: Bearer tsk_…`; another
/// key is 403 `insufficient_scope`, RFC 6750 §3.1) or as a confidential client
/// (RV-08, RV-13); an inactive token is exactly `{"active":false}` (RV-09).
pub async fn introspect(State(state): State<AppState>, req: Request) -> Response {
    answer(introspect_inner(&state, req).await)
}

async fn introspect_inner(state: &AppState, req: Request) -> Result<Response, OAuthFailure> {
    let ip = state.limits.client_ip(req.headers(), req.extensions());
    let (headers, form) = read_form(req).await?;
    let limits = &state.limits;
    let caller = match authorization(&headers) {
        Authorization::Bearer(value) => {
            match limits
                .authenticate_api_key(&state.api_keys, Some(value), &ip)
                .await
            {
                Ok(key) if key.allows(ApiKeyScope::Sessions) => {
                    limits
                        .check(&limits.api_per_key, key.id.as_bytes())
                        .map_err(OAuthFailure::rate_limited)?;
                    Caller::Backend
                }
                Ok(_) => {
                    return Err(OAuthFailure {
                        challenge: Some("Bearer error=\"insufficient_scope\", scope=\"sessions\""),
                        ..OAuthFailure::new(
                            StatusCode::FORBIDDEN,
                            "insufficient_scope",
                            "introspection needs an API key with the sessions scope",
                        )
                    });
                }
                Err(ApiError::StoreUnavailable) => return Err(OAuthFailure::unavailable()),
                Err(ApiError::RateLimited {
                    limit,
                    retry_after_secs,
                }) => {
                    return Err(OAuthFailure::rate_limited(crate::limits::Limited {
                        limit,
                        retry_after_secs,
                    }));
                }
                Err(_) => {
                    return Err(OAuthFailure {
                        challenge: Some("Bearer error=\"invalid_token\""),
                        ..OAuthFailure::new(
                            StatusCode::UNAUTHORIZED,
                            "invalid_token",
                            "the API key is not valid",
                        )
                    });
                }
            }
        }
        _ => {
            let presented = presented_client(&headers, &form)?;
            let client = authenticate_limited(state, &presented, &ip)
                .await?
                .ok_or_else(|| OAuthFailure {
                    challenge: Some("Basic realm=\"tessera\", Bearer"),
                    ..OAuthFailure::client(false, "authenticate as a confidential client or with an API key")
                })?;
            if client.kind != ClientKind::Confidential {
                return Err(OAuthFailure::client(
                    presented.is_basic(),
                    "only confidential clients (or API keys) may introspect",
                ));
            }
            Caller::Client(client)
        }
    };
    let token = form
        .get("token")
        .ok_or_else(|| OAuthFailure::request("token is required"))?;
    let mut result = state
        .oauth
        .tokens
        .introspect(token)
        .await
        .map_err(|e| OAuthFailure::from_core(e, false))?;
    if let (Caller::Client(c), Introspection::Active(m)) = (&caller, &result)
        && !audience_visible(c, m.get("aud"))
    {
        result = Introspection::Inactive;
    }
    Ok(axum::Json(result).into_response())
}

/// Whether a client may see a token with this `aud` (one of them allowed).
fn audience_visible(client: &Client, aud: Option<&Value>) -> bool {
    match aud {
        Some(Value::String(a)) => client.allows_audience(a),
        Some(Value::Array(v)) => v
            .iter()
            .filter_map(Value::as_str)
            .any(|a| client.allows_audience(a)),
        _ => false,
    }
}

// ------------------------------------------------------------------ discovery

fn cacheable(mut res: Response, max_age: i64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={}", max_age.max(0))) {
        res.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    res
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "jwks",
    tag = "oauth",
    responses(
        (status = 200, description = "The public keys that sign access tokens (RFC 7517)", body = crate::openapi::schemas::Jwks,
            headers(("Cache-Control" = String, description = "`public, max-age=N`"))),
    ),
)]
/// `GET /.well-known/jwks.json`: public keys only (JW-19), cached for
/// less than a new key's pre-publication period.
pub async fn jwks(State(state): State<AppState>) -> Response {
    cacheable(
        axum::Json(state.oauth.keys.jwks()).into_response(),
        state.oauth.jwks_max_age_secs,
    )
}

#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    operation_id = "oauth_metadata",
    tag = "oauth",
    description = "RFC 8414 metadata. When the issuer has a path, the same document is also served at \
`/.well-known/oauth-authorization-server/<issuer path>` (RFC 8414 §3).",
    responses(
        (status = 200, description = "Authorization server metadata", body = crate::openapi::schemas::ServerMetadata,
            headers(("Cache-Control" = String, description = "`public, max-age=N`"))),
    ),
)]
/// `GET /.well-known/oauth-authorization-server[/<issuer path>]` (RFC 8414).
pub async fn metadata(State(state): State<AppState>) -> Response {
    cacheable(
        axum::Json(state.oauth.metadata.clone()).into_response(),
        state.oauth.jwks_max_age_secs,
    )
}

mod client_auth;
mod error;
mod form;
mod token;

use client_auth::*;
pub use error::OAuthFailure;
use error::answer;
use form::{Form, form_decode, read_form};
use token::*;

#[cfg(test)]
mod tests;

/// The request readers of the OAuth endpoints as the fuzz targets (`fuzz/`)
/// call them; not an API.
#[doc(hidden)]
pub mod fuzzing {
    use axum::extract::Request;
    use axum::http::HeaderMap;

    use super::{
        Authorization, OAuthFailure, Presented, authorization, form_decode, presented_client, read_form,
    };

    /// The client credentials a request presents.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Credentials {
        None,
        Basic { id: String, secret: Option<String> },
        Post { id: String, secret: Option<String> },
        Assertion { id: String, assertion: String },
    }

    /// What `/oauth2/token|revoke|introspect` read before any store access.
    #[derive(Debug)]
    pub struct Read {
        /// The form's parameters, in order.
        pub params: Vec<(String, String)>,
        /// `get(name)` of each parameter named in `params`, as the handlers see it.
        pub got: Vec<Option<String>>,
        /// The client credentials, or the 400/401 answered instead.
        pub client: Result<Credentials, (u16, &'static str, String)>,
        /// `Authorization` as introspection classifies it: `none`, `basic`,
        /// `bearer` or `other`.
        pub scheme: &'static str,
    }

    fn failure(f: OAuthFailure) -> (u16, &'static str, String) {
        (f.status.as_u16(), f.code, f.description)
    }

    /// Reads a POST of `body` with `headers` exactly as the endpoints do
    /// (`Content-Type`, body, form, client credentials).
    pub fn read_request(headers: HeaderMap, body: Vec<u8>) -> Result<Read, (u16, &'static str, String)> {
        let mut req = Request::new(axum::body::Body::from(body));
        *req.headers_mut() = headers;
        let (headers, form) = futures::executor::block_on(read_form(req)).map_err(failure)?;
        let params = form.0.clone();
        let got = params
            .iter()
            .map(|(k, _)| form.get(k).map(str::to_owned))
            .collect();
        let client = presented_client(&headers, &form)
            .map(|p| match p {
                Presented::None => Credentials::None,
                Presented::Basic { id, secret } => Credentials::Basic { id, secret },
                Presented::Post { id, secret } => Credentials::Post { id, secret },
                Presented::Assertion { id, assertion } => Credentials::Assertion { id, assertion },
            })
            .map_err(failure);
        let scheme = match authorization(&headers) {
            Authorization::None => "none",
            Authorization::Basic(_) => "basic",
            Authorization::Bearer(_) => "bearer",
            Authorization::Other => "other",
        };
        Ok(Read {
            params,
            got,
            client,
            scheme,
        })
    }

    /// One form-urlencoded component, strictly decoded.
    pub fn decode_component(s: &str) -> Option<String> {
        form_decode(s)
    }
}
