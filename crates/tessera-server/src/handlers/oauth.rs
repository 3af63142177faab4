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

// ------------------------------------------------------------------ client authentication

/// What a request presents in `Authorization`.
enum Authorization<'h> {
    None,
    Basic(&'h str),
    Bearer(&'h [u8]),
    Other,
}

fn authorization(headers: &HeaderMap) -> Authorization<'_> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Authorization::None;
    };
    let raw = v.as_bytes();
    if raw.len() > MAX_AUTHORIZATION_BYTES {
        return Authorization::Other;
    }
    match raw.split_first_chunk::<6>() {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"Basic ") => {
            std::str::from_utf8(rest).map_or(Authorization::Other, |s| Authorization::Basic(s.trim()))
        }
        _ => match raw.split_first_chunk::<7>() {
            Some((scheme, _)) if scheme.eq_ignore_ascii_case(b"Bearer ") => Authorization::Bearer(raw),
            _ => Authorization::Other,
        },
    }
}

/// Base64 of RFC 4648 §4, padding optional.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The client credentials a request presents.
#[derive(Debug, PartialEq, Eq)]
enum Presented {
    None,
    Basic {
        id: String,
        secret: Option<String>,
    },
    Post {
        id: String,
        secret: Option<String>,
    },
    /// A `private_key_jwt` assertion; `id` is the client it names (its
    /// unverified `sub`, equal to the form's `client_id` if one was sent).
    Assertion {
        id: String,
        assertion: String,
    },
}

impl Presented {
    fn is_basic(&self) -> bool {
        matches!(self, Presented::Basic { .. })
    }
}

/// Reads the client credentials: HTTP Basic, or `client_id` (and
/// `client_secret`) in the form; both at once is `invalid_request`.
fn presented_client(headers: &HeaderMap, form: &Form) -> Result<Presented, OAuthFailure> {
    let form_id = form.get("client_id");
    let form_secret = form.get("client_secret");
    if let Some(p) = presented_assertion(headers, form)? {
        return Ok(p);
    }
    match authorization(headers) {
        Authorization::Basic(b64) => {
            let malformed = || OAuthFailure::client(true, "malformed Basic credentials");
            let raw = BASE64.decode(b64).map_err(|_| malformed())?;
            let text = String::from_utf8(raw).map_err(|_| malformed())?;
            let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
            let id = form_decode(id).filter(|i| !i.is_empty()).ok_or_else(malformed)?;
            let secret = form_decode(secret).ok_or_else(malformed)?;
            if form_secret.is_some() {
                return Err(OAuthFailure::request(
                    "use one client authentication method, not Basic and client_secret",
                ));
            }
            if form_id.is_some_and(|f| f != id) {
                return Err(OAuthFailure::request(
                    "client_id differs from the Basic credentials",
                ));
            }
            Ok(Presented::Basic {
                id,
                secret: (!secret.is_empty()).then_some(secret),
            })
        }
        Authorization::Bearer(_) | Authorization::Other => Err(OAuthFailure::client(
            true,
            "unsupported Authorization scheme; use Basic client credentials",
        )),
        Authorization::None => match (form_id, form_secret) {
            (Some(id), secret) => Ok(Presented::Post {
                id: id.to_owned(),
                secret: secret.map(str::to_owned),
            }),
            (None, Some(_)) => Err(OAuthFailure::request("client_secret without client_id")),
            (None, None) => Ok(Presented::None),
        },
    }
}

/// A `private_key_jwt` assertion in the form (RFC 7523 §2.2), if any:
/// both parameters, the registered assertion type, no other client
/// credentials beside it, and a `client_id` (optional) naming the
/// assertion's subject.
fn presented_assertion(headers: &HeaderMap, form: &Form) -> Result<Option<Presented>, OAuthFailure> {
    let kind = form.get("client_assertion_type");
    let assertion = form.get("client_assertion");
    let (kind, assertion) = match (kind, assertion) {
        (None, None) => return Ok(None),
        (Some(k), Some(a)) => (k, a),
        _ => {
            return Err(OAuthFailure::request(
                "client_assertion_type and client_assertion go together",
            ));
        }
    };
    if form.get("client_secret").is_some() || !matches!(authorization(headers), Authorization::None) {
        return Err(OAuthFailure::request(
            "use one client authentication method, not a client assertion and another",
        ));
    }
    let refused = || OAuthFailure::client(false, "client authentication failed");
    if kind != ASSERTION_TYPE_JWT_BEARER {
        tracing::debug!("client authentication failed: unsupported client_assertion_type");
        return Err(refused());
    }
    let Some(id) = assertion_client_id(assertion) else {
        tracing::debug!("client authentication failed: unreadable client assertion");
        return Err(refused());
    };
    if form.get("client_id").is_some_and(|f| f != id) {
        tracing::debug!("client authentication failed: client_id differs from the assertion's sub");
        return Err(refused());
    }
    Ok(Some(Presented::Assertion {
        id,
        assertion: assertion.to_owned(),
    }))
}

/// Client authentication, the one place for the token, revocation and
/// introspection endpoints: `Ok(None)` when no credentials were presented.
/// Under `[oauth] sender_constrained_only` a client secret is refused
/// (ASVS 10.4.16: asymmetric client authentication only); a
/// `private_key_jwt` assertion is asymmetric. Every refusal is the same
/// 401 `invalid_client`; the reason goes to the debug log only.
async fn authenticate(state: &AppState, presented: &Presented) -> Result<Option<Arc<Client>>, OAuthFailure> {
    let (id, basic) = match presented {
        Presented::None => return Ok(None),
        Presented::Basic { id, .. } => (id, true),
        Presented::Post { id, .. } | Presented::Assertion { id, .. } => (id, false),
    };
    let refused = |why: &dyn std::fmt::Display| {
        tracing::debug!(reason = %why, "client authentication failed");
        OAuthFailure::client(basic, "client authentication failed")
    };
    if let Presented::Basic { secret: Some(_), .. } | Presented::Post { secret: Some(_), .. } = presented
        && state.oauth.tokens.policy().sender_constrained_only
    {
        return Err(OAuthFailure::client(
            basic,
            "client secrets are not accepted here (sender-constrained profile)",
        ));
    }
    let client = state
        .oauth
        .tokens
        .find_client(id)
        .await
        .map_err(|e| OAuthFailure::from_core(e, basic))?
        .ok_or_else(|| refused(&ClientAuthError::Unknown))?;
    match presented {
        Presented::Assertion { assertion, .. } => {
            match state.oauth.assertions.verify(&client, assertion).await {
                Ok(_) => {}
                Err(AssertionError::Unavailable(why)) => {
                    tracing::error!(error = %why, "client assertion replay check unavailable");
                    return Err(OAuthFailure::unavailable());
                }
                Err(e) => return Err(refused(&e)),
            }
        }
        Presented::Basic { secret, .. } | Presented::Post { secret, .. } => {
            client
                .authenticate_secret(secret.as_deref())
                .map_err(|e| refused(&e))?;
        }
        Presented::None => {}
    }
    Ok(Some(client))
}

/// A client that presented nothing: the public client `client_id` names
/// (the token's), or `invalid_client` for a confidential one.
async fn implied_client(state: &AppState, client_id: &str) -> Result<Arc<Client>, OAuthFailure> {
    let required = || OAuthFailure::client(false, "client authentication is required");
    let client = state
        .oauth
        .tokens
        .find_client(client_id)
        .await
        .map_err(|e| OAuthFailure::from_core(e, false))?
        .ok_or_else(required)?;
    client.authenticate_secret(None).map_err(|_| required())?;
    Ok(client)
}

/// The abuse limits of the OAuth endpoints: an authenticated confidential
/// client counts under its id, everything else (public clients, failed or
/// missing client authentication) under the caller's address.
fn limit_oauth(state: &AppState, ip: &IpSubject, authenticated: Option<&Client>) -> Result<(), OAuthFailure> {
    let limits = &state.limits;
    match authenticated {
        Some(c) if c.kind == ClientKind::Confidential => {
            limits.check(&limits.oauth_per_client, c.client_id.as_bytes())
        }
        _ => limits.check(&limits.oauth_per_ip, ip.as_bytes()),
    }
    .map_err(OAuthFailure::rate_limited)
}

/// Client authentication and the abuse limit it decides, in that order:
/// a failed authentication counts against the address before it is
/// reported.
async fn authenticate_limited(
    state: &AppState,
    presented: &Presented,
    ip: &IpSubject,
) -> Result<Option<Arc<Client>>, OAuthFailure> {
    let authenticated = authenticate(state, presented).await;
    limit_oauth(state, ip, authenticated.as_ref().ok().and_then(Option::as_deref))?;
    authenticated
}

/// The client a refresh token was issued to, if it is one we know.
async fn refresh_token_client(state: &AppState, presented: &str) -> Result<Option<String>, OAuthFailure> {
    Ok(state.oauth.tokens.refresh_token_client(presented).await?)
}

/// The client any of our tokens (refresh or access) was issued to.
async fn token_client(state: &AppState, presented: &str) -> Result<Option<String>, OAuthFailure> {
    if secret::parse(TokenKind::Refresh, presented.as_bytes()).is_ok() {
        return refresh_token_client(state, presented).await;
    }
    let tokens = &state.oauth.tokens;
    Ok(tokens
        .verify_access_token(presented, &tokens.own_token_rules())
        .ok()
        .map(|c| c.client_id))
}

// ------------------------------------------------------------------ token

#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    /// RFC 8693 §2.2.1: what a token exchange issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
}

fn token_body(t: &IssuedTokens) -> TokenBody<'_> {
    TokenBody {
        access_token: &t.access_token,
        token_type: t.token_type,
        expires_in: t.expires_in,
        refresh_token: t.refresh_token.as_ref().map(|r| r.expose()),
        scope: &t.scope,
        issued_token_type: None,
    }
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

async fn token_inner(state: &AppState, req: Request) -> Result<Response, OAuthFailure> {
    // RFC 8705 §3: tokens requested over a connection with a client
    // certificate are bound to it (unless a DPoP proof binds them).
    let cert = req
        .extensions()
        .get::<ClientCertThumbprint>()
        .map(|c| Binding::Mtls {
            x5t_s256: c.0.clone(),
        });
    let ip = state.limits.client_ip(req.headers(), req.extensions());
    let (headers, form) = read_form(req).await?;
    let grant = match form.get("grant_type") {
        None => return Err(OAuthFailure::request("grant_type is required")),
        Some("refresh_token") => Grant::Refresh,
        Some(GRANT_CLIENT_CREDENTIALS) => Grant::ClientCredentials,
        Some(TOKEN_EXCHANGE_GRANT) => Grant::Exchange,
        Some(_) => {
            return Err(OAuthFailure::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("supported grant types: refresh_token, client_credentials, {TOKEN_EXCHANGE_GRANT}"),
            ));
        }
    };
    // RFC 9449 §4.3 check 1: at most one proof.
    let proof = match dpop_proof(&headers) {
        ProofHeader::None => None,
        ProofHeader::One(p) => Some(p),
        ProofHeader::Many => {
            return Err(OAuthFailure::new(
                StatusCode::BAD_REQUEST,
                "invalid_dpop_proof",
                "more than one DPoP header",
            ));
        }
    };
    let presented = presented_client(&headers, &form)?;
    let authenticated = authenticate_limited(state, &presented, &ip).await?;
    let client = match (grant, authenticated) {
        (_, Some(c)) => c,
        // A public client names itself through its refresh token.
        (Grant::Refresh, None) => {
            let refresh_token = form
                .get("refresh_token")
                .ok_or_else(|| OAuthFailure::request("refresh_token is required"))?;
            match refresh_token_client(state, refresh_token).await? {
                Some(id) => implied_client(state, &id).await?,
                None => {
                    return Err(OAuthFailure::from_core(
                        OAuthError::InvalidGrant("unknown refresh token"),
                        false,
                    ));
                }
            }
        }
        // Whoever exchanges a token must say who it is (RFC 8693 §2.1).
        (Grant::Exchange, None) => {
            return Err(OAuthFailure::client(
                false,
                "token exchange needs an authenticated client",
            ));
        }
        // A client asking for itself must prove it is itself.
        (Grant::ClientCredentials, None) => {
            return Err(OAuthFailure::client(
                false,
                "client_credentials needs client authentication",
            ));
        }
    };
    // RFC 6749 §4.4: confidential clients registered for the grant only (a
    // public client has nothing to authenticate with); refused before a
    // DPoP proof is spent.
    if grant == Grant::ClientCredentials
        && (client.kind != ClientKind::Confidential || !client.allows_grant(GRANT_CLIENT_CREDENTIALS))
    {
        return Err(OAuthFailure::from_core(OAuthError::UnauthorizedClient, false));
    }
    // The proof is checked (and its `jti` spent) only for an authenticated
    // client, and before any token is: a bad proof consumes nothing.
    let holder = match proof {
        Some(proof) => {
            let req = ProofRequest {
                method: "POST",
                uri: &state.oauth.token_endpoint,
                access_token: None,
            };
            let checked = state
                .oauth
                .dpop_token
                .verify(proof, &req)
                .await
                .map_err(|e| dpop_failure(state, e))?;
            Some(Binding::Dpop { jkt: checked.jkt })
        }
        None => cert,
    };
    let tokens = &state.oauth.tokens;
    let resources = form.get_all("resource");
    let issued = match grant {
        Grant::Refresh => {
            let refresh_token = form
                .get("refresh_token")
                .ok_or_else(|| OAuthFailure::request("refresh_token is required"))?;
            tokens
                .refresh_with(
                    refresh_token,
                    &client,
                    form.get("scope"),
                    &resources,
                    holder.as_ref(),
                )
                .await
        }
        Grant::Exchange => {
            let audience = form.get_all("audience");
            let subject_token = form
                .get("subject_token")
                .ok_or_else(|| OAuthFailure::request("subject_token is required"))?;
            let subject_token_type = form
                .get("subject_token_type")
                .ok_or_else(|| OAuthFailure::request("subject_token_type is required"))?;
            let req = ExchangeRequest {
                subject_token,
                subject_token_type,
                actor_token: form.get("actor_token"),
                actor_token_type: form.get("actor_token_type"),
                requested_token_type: form.get("requested_token_type"),
                scope: form.get("scope"),
                audience: &audience,
                resource: &resources,
            };
            tokens.exchange(&req, &client, holder.as_ref()).await
        }
        Grant::ClientCredentials => {
            let audience = form.get_all("audience");
            tokens
                .client_credentials(&client, form.get("scope"), &audience, &resources, holder.as_ref())
                .await
        }
    }
    .map_err(|e| OAuthFailure::from_core(e, presented.is_basic()))?;
    let mut body = token_body(&issued);
    if grant == Grant::Exchange {
        body.issued_token_type = Some(ACCESS_TOKEN_TYPE);
    }
    let mut res = axum::Json(body).into_response();
    // RFC 9449 §8.2: a nonce for the next request may come with a success.
    if let Some(nonce) = state.oauth.dpop_token.fresh_nonce()
        && let Ok(v) = HeaderValue::from_str(&nonce)
    {
        res.headers_mut().insert(DPOP_NONCE, v);
    }
    Ok(res)
}

/// The grants `/oauth2/token` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Refresh,
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 8693.
    Exchange,
}

/// A refused proof at the token endpoint (RFC 9449 §5, §8): 400
/// `invalid_dpop_proof`, or `use_dpop_nonce` with a fresh `DPoP-Nonce`.
fn dpop_failure(state: &AppState, e: DpopError) -> OAuthFailure {
    match e {
        DpopError::UseNonce => OAuthFailure {
            dpop_nonce: state.oauth.dpop_token.fresh_nonce(),
            ..OAuthFailure::new(StatusCode::BAD_REQUEST, "use_dpop_nonce", e.to_string())
        },
        DpopError::Unavailable(why) => {
            tracing::error!(error = %why, "DPoP replay check unavailable");
            OAuthFailure::unavailable()
        }
        other @ (DpopError::Invalid(_) | DpopError::Replayed) => {
            OAuthFailure::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", other.to_string())
        }
    }
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

mod error;
mod form;

pub use error::OAuthFailure;
use error::answer;
use form::{Form, form_decode, read_form};

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
