//! The wire shapes of the API as OpenAPI schemas.
//!
//! The handlers write their answers through borrowed views and the core's
//! own types (`tessera_http::session_view`, `tessera_core::Event`, …),
//! which stay free of utoipa; these schema-only twins describe the same
//! JSON. They are never serialized: what keeps them true is
//! `scripts/openapi-check` (schemathesis validates every answer of the
//! running service against them) and the server tests that parse real
//! answers against the document.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

// ------------------------------------------------------------------ errors

/// An RFC 9457 problem document (`application/problem+json`), the error
/// answer of `/v1`, `/auth`, the operations endpoints and the edge.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:tessera:error:session_invalid",
    "title": "Session token invalid",
    "status": 401,
    "detail": "the session token is not valid",
    "code": "session_invalid"
}))]
pub struct Problem {
    /// `urn:tessera:error:<code>`.
    #[serde(rename = "type")]
    #[schema(pattern = "^urn:tessera:error:[a-z_]+$")]
    pub type_: String,
    pub title: String,
    /// The HTTP status, repeated.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong, for a human; never a secret.
    pub detail: String,
    /// The stable machine-readable code (docs/CONTRACTS.md), e.g.
    /// `session_invalid`, `validation_failed`, `store_unavailable`,
    /// `rate_limited`.
    #[schema(pattern = "^[a-z_]+$")]
    pub code: String,
}

/// An RFC 6749 §5.2 error, the error answer of the OAuth endpoints.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": "invalid_grant", "error_description": "unknown refresh token"}))]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unsupported_grant_type`, `invalid_scope`,
    /// `invalid_dpop_proof`, `use_dpop_nonce`, `invalid_token`,
    /// `insufficient_scope`, `temporarily_unavailable`, `slow_down` (429).
    pub error: String,
    pub error_description: String,
}

// ------------------------------------------------------------------ sessions

/// How the subject authenticated (`auth` in requests).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthInput {
    /// 1 = single factor, 2 = multi-factor, higher as the application
    /// defines [default: 1].
    #[serde(default)]
    #[schema(minimum = 1, maximum = 255)]
    pub level: Option<u8>,
    /// RFC 8176 `amr` values.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// Device facts the application passes on (`device` in requests).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceInput {
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
}

/// Per-session lifetimes, each bounded by the configured policy.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TtlInput {
    #[serde(default)]
    pub idle_secs: Option<i64>,
    #[serde(default)]
    pub absolute_secs: Option<i64>,
}

/// One audience or several.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// `tokens`: also issue an access token (and a refresh token, if the client
/// gets them) for the session.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokensRequest {
    #[serde(default)]
    pub client_id: Option<String>,
    /// Space-separated scopes (RFC 6749 §3.3).
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub audience: Option<Audience>,
    /// RFC 8707 resource indicators (absolute URIs registered in `[oauth]
    /// resources` or among the client's audiences): the access token's
    /// `aud` is exactly these. Not together with `audience`; unknown or
    /// not allowed: 400 naming `invalid_target`.
    #[serde(default)]
    pub resource: Option<Audience>,
    /// RFC 7638 thumbprint of the client's DPoP key: the tokens are bound
    /// to it from the first one on.
    #[serde(default)]
    pub dpop_jkt: Option<String>,
}

/// The body of `POST /v1/sessions`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    /// The user (1 to 256 bytes).
    pub subject: String,
    #[serde(default)]
    pub auth: Option<AuthInput>,
    #[serde(default)]
    pub device: Option<DeviceInput>,
    /// Application data kept with the session.
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
    #[serde(default)]
    pub ttl: Option<TtlInput>,
    /// The pre-login session's token: it is revoked, and its data carried
    /// over when it belongs to the same subject.
    #[serde(default)]
    pub previous_session_token: Option<String>,
    #[serde(default)]
    pub tokens: Option<TokensRequest>,
    /// Offer Device Bound Session Credentials (`dbsc_registration`).
    #[serde(default)]
    pub dbsc: bool,
}

/// A body naming a session by its token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionTokenRequest {
    pub session_token: String,
}

/// The body of `POST /v1/sessions/elevate`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ElevateRequest {
    pub session_token: String,
    pub auth: AuthInput,
    #[serde(default)]
    pub tokens: Option<TokensRequest>,
}

/// The body of `PATCH /v1/sessions/{handle}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    /// An RFC 7396 merge patch applied to the session's `data`.
    pub data: Value,
}

/// How the session's subject authenticated.
#[derive(Serialize, ToSchema)]
pub struct AuthInfo {
    pub level: u8,
    pub methods: Vec<String>,
    /// Time of the last authentication.
    #[schema(format = DateTime)]
    pub time: String,
}

#[derive(Serialize, ToSchema)]
pub struct Device {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// A short human label derived from the user agent.
    pub label: String,
    #[schema(format = DateTime)]
    pub first_seen_at: String,
    #[schema(format = DateTime)]
    pub last_seen_at: String,
}

/// What the session is bound to; never key material beyond a thumbprint.
#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Binding {
    Dpop {
        jkt: String,
    },
    Mtls {
        #[serde(rename = "x5t#S256")]
        x5t_s256: String,
    },
    Dbsc {
        jkt: String,
    },
}

/// The public view of a session; it has no field for the token.
#[derive(Serialize, ToSchema)]
pub struct Session {
    pub handle: String,
    pub subject: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub last_seen_at: String,
    #[schema(format = DateTime)]
    pub idle_expires_at: String,
    #[schema(format = DateTime)]
    pub absolute_expires_at: String,
    pub auth: AuthInfo,
    pub device: Device,
    pub binding: Option<Binding>,
    pub data: Map<String, Value>,
}

/// `{"session": …}`.
#[derive(Serialize, ToSchema)]
pub struct SessionBody {
    pub session: Session,
}

/// A session with its new token (login, step-up), and tokens when asked.
#[derive(Serialize, ToSchema)]
pub struct IssuedSession {
    pub session: Session,
    /// The session token: returned only here, never stored in the clear.
    pub session_token: String,
    /// A ready `Set-Cookie` value carrying the token.
    pub cookie: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// `Bearer`, or `DPoP` when the access token is bound to a DPoP key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The `Secure-Session-Registration` header value for the login answer
    /// (with `"dbsc": true` when DBSC is enabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dbsc_registration: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    /// Active sessions, newest first.
    pub sessions: Vec<Session>,
}

#[derive(Serialize, ToSchema)]
pub struct RevokedCount {
    pub revoked: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created,
    Refreshed,
    Elevated,
    Revoked,
    Expired,
    RefreshTokenReuse,
    BindingFailed,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    Logout,
    Revoked,
    Replaced,
    SessionLimit,
    RevokeAll,
    RefreshTokenReuse,
    Operator,
}

/// An audit event.
#[derive(Serialize, ToSchema)]
pub struct Event {
    /// Increases strictly in write order; the cursor of `after`.
    pub id: u64,
    #[schema(format = DateTime)]
    pub at: String,
    pub kind: EventKind,
    pub subject: String,
    pub handle: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<RevokeReason>,
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// The `after` of the next page (the last id, or the `after` given).
    #[schema(pattern = "^[0-9]+$")]
    pub next: String,
}

#[derive(Serialize, ToSchema)]
pub struct Revocation {
    /// The revoked session (`sid` of its access tokens), or `client:<id>`
    /// for a revoked service client (`tessera clients revoke`), whose
    /// `client_credentials` tokens carry no `sid`: refuse a token without
    /// `sid` whose `client_id` is `<id>`.
    pub sid: String,
    #[schema(format = DateTime)]
    pub revoked_at: String,
    /// Until when access tokens of the session could still be presented.
    #[schema(format = DateTime)]
    pub until: String,
}

#[derive(Serialize, ToSchema)]
pub struct RevocationPage {
    pub revocations: Vec<Revocation>,
    #[schema(pattern = "^[0-9]+$")]
    pub next: String,
    /// The answer stopped before the end of the log: ask again at once
    /// with `after=next`.
    pub more: bool,
}

// ------------------------------------------------------------------ OAuth

/// The form of `POST /oauth2/token`: `refresh_token` (RFC 6749 §6) or
/// token exchange (RFC 8693 §2.1). `resource` (RFC 8707) and `audience`
/// may be repeated; every other parameter at most once.
#[derive(Deserialize, ToSchema)]
pub struct TokenForm {
    /// `refresh_token`, `client_credentials` (a confidential client
    /// registered for it, authenticated; never a refresh token back) or
    /// `urn:ietf:params:oauth:grant-type:token-exchange`.
    #[schema(
        pattern = "^(refresh_token|client_credentials|urn:ietf:params:oauth:grant-type:token-exchange)$"
    )]
    pub grant_type: String,
    /// The refresh grant's token.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Narrows the scope (RFC 6749 §6); a token exchange's scope, within
    /// the subject token's (RFC 8693); `client_credentials`: scopes within
    /// the client's registered ones (default: all of them), otherwise
    /// `invalid_scope`.
    #[serde(default)]
    pub scope: Option<String>,
    /// RFC 8707 resource indicator (an absolute URI): the access token's
    /// `aud`. On a refresh, one the grant was issued for; on an exchange,
    /// the one downstream audience. Unknown or not allowed:
    /// `invalid_target`.
    #[serde(default)]
    pub resource: Option<String>,
    /// RFC 8693: the downstream audience of an exchanged token (a logical
    /// name; exactly one `audience` or `resource`). `client_credentials`:
    /// one audience within the client's registered ones (default: its only
    /// one, else `[oauth] default_audience`), otherwise `invalid_target`.
    #[serde(default)]
    pub audience: Option<String>,
    /// RFC 8693: the access token being exchanged.
    #[serde(default)]
    pub subject_token: Option<String>,
    /// `urn:ietf:params:oauth:token-type:access_token` (or `…:jwt`).
    #[serde(default)]
    pub subject_token_type: Option<String>,
    /// RFC 8693: an access token of the acting party, issued to the
    /// calling client; its `sub` becomes the new token's `act.sub`.
    #[serde(default)]
    pub actor_token: Option<String>,
    #[serde(default)]
    pub actor_token_type: Option<String>,
    /// Only `urn:ietf:params:oauth:token-type:access_token`.
    #[serde(default)]
    pub requested_token_type: Option<String>,
    /// `client_secret_post`, or a public client naming itself; with a
    /// client assertion, the assertion's `sub` if sent.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// `private_key_jwt` (RFC 7523 §2.2):
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    #[serde(default)]
    pub client_assertion_type: Option<String>,
    /// `private_key_jwt`: a JWT signed with a key of the client's `jwks`
    /// (`iss` = `sub` = client id, `aud` the issuer or the token endpoint,
    /// `exp` at most 5 minutes ahead, `jti` single-use).
    #[serde(default)]
    pub client_assertion: Option<String>,
}

/// The form of `POST /oauth2/revoke` and `POST /oauth2/introspect`.
#[derive(Deserialize, ToSchema)]
pub struct TokenHintForm {
    pub token: String,
    /// Ignored: every token type is searched.
    #[serde(default)]
    pub token_type_hint: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// `private_key_jwt`, as at the token endpoint.
    #[serde(default)]
    pub client_assertion_type: Option<String>,
    #[serde(default)]
    pub client_assertion: Option<String>,
}

/// A successful token answer (RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// `Bearer`, or `DPoP` for a DPoP-bound token.
    pub token_type: String,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// RFC 8693 §2.2.1, on a token exchange's answer:
    /// `urn:ietf:params:oauth:token-type:access_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
}

/// RFC 7662 §2.2: exactly `{"active": false}` for a token that is not
/// active; the token's claims besides `active` otherwise.
#[derive(Serialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(flatten)]
    #[schema(additional_properties)]
    pub claims: Map<String, Value>,
}

/// RFC 7517 JWK Set: the public signing keys.
#[derive(Serialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Map<String, Value>>,
}

/// RFC 8414 authorization server metadata.
#[derive(Serialize, ToSchema)]
pub struct ServerMetadata {
    pub issuer: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

// ------------------------------------------------------------------ DBSC, operations

/// A DBSC session instruction (the draft's JSON), or `{"continue": false}`
/// when the device-bound session has ended.
#[derive(Serialize, ToSchema)]
pub struct DbscInstruction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Vec<Value>>,
    /// `false`: the browser ends its DBSC session.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct Status {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    pub status: String,
}
