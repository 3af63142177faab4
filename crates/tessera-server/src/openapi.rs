//! The public OpenAPI 3.1 document of the service (`GET /openapi.json`,
//! committed as `docs/openapi.json`).
//!
//! Each operation is described by the `#[utoipa::path]` beside its handler
//! in [`crate::handlers`]; the JSON shapes are the schema twins of
//! [`schemas`]; the shared error answers are here. The document does not
//! depend on the configuration, so the served and the committed copies are
//! the same bytes (a test holds them together; regenerate with
//! `cargo run -p tessera-server -- openapi > docs/openapi.json`).

pub mod schemas;

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi, PartialSchema, ToResponse, ToSchema};

use crate::handlers;

/// The security scheme names used by the operations.
pub const API_KEY: &str = "api_key";
pub const CLIENT_BASIC: &str = "client_basic";
pub const DPOP: &str = "dpop";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera",
        description = "Server-side sessions with revocation that takes effect: the backend API \
(`/v1`, API key), the OAuth 2.0 endpoints, forward auth for reverse proxies, Device Bound \
Session Credentials and the operations endpoints. Errors are RFC 9457 problem documents \
(`application/problem+json`) everywhere except the OAuth endpoints, which answer RFC 6749 \
`{\"error\", \"error_description\"}`. See README.md and docs/CONTRACTS.md.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        handlers::sessions::create,
        handlers::sessions::verify,
        handlers::sessions::elevate,
        handlers::sessions::revoke,
        handlers::sessions::get_session,
        handlers::sessions::patch_session,
        handlers::sessions::delete_session,
        handlers::sessions::list_subject,
        handlers::sessions::revoke_subject,
        handlers::sessions::events,
        handlers::revocations::feed,
        handlers::oauth::token,
        handlers::oauth::revoke,
        handlers::oauth::introspect,
        handlers::oauth::jwks,
        handlers::oauth::metadata,
        handlers::forward_auth::verify,
        handlers::forward_auth::verify_slash,
        handlers::forward_auth::verify_proxied,
        handlers::forward_auth::logout,
        handlers::dbsc::register,
        handlers::dbsc::refresh,
        handlers::ops::healthz,
        handlers::ops::readyz,
        handlers::ops::metrics,
        document_handler,
    ),
    components(responses(
        BadRequest,
        Unauthorized,
        ApiKeyForbidden,
        NotFound,
        PayloadTooLarge,
        UnsupportedMediaType,
        RateLimited,
        StoreUnavailable,
        OAuthBadRequest,
        OAuthInvalidClient,
        OAuthRateLimited,
        OAuthUnavailable,
        ForwardAuthOk,
        ForwardAuthUnauthorized,
        ForwardAuthForbidden,
    )),
    modifiers(&SecuritySchemes, &OperationIds),
    tags(
        (name = "sessions", description = "Backend API: sessions (API key with the `sessions` scope)"),
        (name = "events", description = "Backend API: the audit log and the revocation feed"),
        (name = "oauth", description = "OAuth 2.0: refresh, token exchange (RFC 8693), resource indicators (RFC 8707), revocation, introspection, keys, metadata"),
        (name = "forward-auth", description = "For reverse proxies: verify the browser's session, log out"),
        (name = "dbsc", description = "Device Bound Session Credentials, same-origin through the proxy"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    ),
)]
struct ApiDoc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as the pretty JSON that is served and committed (with a
/// final newline, as `tessera openapi` prints it).
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut s = document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        s.push('\n');
        s
    })
}

/// `GET /openapi.json`: this document; public, like the OAuth metadata.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses(
        (status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json", body = Object),
    ),
)]
pub async fn document_handler() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        json(),
    )
        .into_response()
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut api_key = Http::new(HttpAuthScheme::Bearer);
        api_key.bearer_format = Some("tsk_…".into());
        api_key.description = Some(
            "A backend API key (`tessera api-keys create`); each route needs a scope \
(`sessions`, `events`, `revocations`; `admin` holds all)."
                .into(),
        );
        components.add_security_scheme(API_KEY, SecurityScheme::Http(api_key));
        let mut basic = Http::new(HttpAuthScheme::Basic);
        basic.description = Some(
            "OAuth client authentication `client_secret_basic` (RFC 6749 §2.3.1). \
`client_secret_post` (`client_id` and `client_secret` in the form) and public clients \
naming themselves with `client_id` need no header."
                .into(),
        );
        components.add_security_scheme(CLIENT_BASIC, SecurityScheme::Http(basic));
        components.add_security_scheme(
            DPOP,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "DPoP",
                "An RFC 9449 DPoP proof JWT: binds the tokens issued to the proof's key.",
            ))),
        );
    }
}

/// `#[utoipa::path(method(get, head, …))]` gives each method of a path the
/// same `operationId`, which OpenAPI requires to be unique: such ids get
/// the method as a suffix (`forward_auth_verify_head`), the GET keeps it.
struct OperationIds;

impl Modify for OperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                ("get", &mut item.get),
                ("head", &mut item.head),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("patch", &mut item.patch),
                ("delete", &mut item.delete),
                ("options", &mut item.options),
                ("trace", &mut item.trace),
            ];
            let present: Vec<(&str, &mut utoipa::openapi::path::Operation)> = ops
                .into_iter()
                .filter_map(|(m, o)| o.as_mut().map(|o| (m, o)))
                .collect();
            if present.len() < 2 {
                continue;
            }
            let first = present[0].1.operation_id.clone();
            if present.iter().all(|(_, o)| o.operation_id == first) {
                for (method, op) in present.into_iter().skip(1) {
                    if let Some(id) = op.operation_id.as_mut() {
                        id.push('_');
                        id.push_str(method);
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------ shared answers

fn text_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(
            utoipa::openapi::ObjectBuilder::new().schema_type(Type::String),
        ))
        .description(Some(description))
        .build()
}

fn answer<S: PartialSchema + ToSchema>(
    content_type: &str,
    description: &str,
    headers: &[(&str, &str)],
) -> RefOr<utoipa::openapi::Response> {
    let schema = RefOr::Ref(utoipa::openapi::Ref::from_schema_name(S::name()));
    let b = ResponseBuilder::new()
        .description(description)
        .content(content_type, ContentBuilder::new().schema(Some(schema)).build());
    with_headers(b, headers)
}

fn with_headers(mut b: ResponseBuilder, headers: &[(&str, &str)]) -> RefOr<utoipa::openapi::Response> {
    for (name, desc) in headers {
        b = b.header(*name, text_header(desc));
    }
    RefOr::T(b.build())
}

const RETRY_AFTER: (&str, &str) = ("Retry-After", "Seconds to wait before retrying.");

/// Shared error answers, referenced from `#/components/responses`.
macro_rules! shared_answer {
    ($(#[$doc:meta])* $name:ident, $schema:ty, $ct:expr, $desc:literal $(, $header:expr)* $(,)?) => {
        $(#[$doc])*
        pub struct $name;
        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
                (stringify!($name), answer::<$schema>($ct, $desc, &[$($header),*]))
            }
        }
    };
}

const PROBLEM: &str = crate::problem::PROBLEM_JSON;
const JSON: &str = "application/json";
use schemas::{OAuthError, Problem};

shared_answer!(
    BadRequest,
    Problem,
    PROBLEM,
    "`validation_failed`: malformed JSON, a wrong type, an unknown field or a value out of bounds; the detail names the field"
);
shared_answer!(
    Unauthorized,
    Problem,
    PROBLEM,
    "`unauthorized` (missing, malformed or revoked API key or credential) or `session_invalid`, `session_expired`, `session_revoked`",
    ("WWW-Authenticate", "The authentication scheme to use.")
);
shared_answer!(
    ApiKeyForbidden,
    Problem,
    PROBLEM,
    "`forbidden`: the API key lacks the scope this route needs"
);
shared_answer!(NotFound, Problem, PROBLEM, "`not_found`");
shared_answer!(
    PayloadTooLarge,
    Problem,
    PROBLEM,
    "`payload_too_large`: the body is over `[http] max_body_bytes`, or the data over its limit"
);
shared_answer!(
    UnsupportedMediaType,
    Problem,
    PROBLEM,
    "`unsupported_media_type`: the body is not `application/json`"
);
shared_answer!(
    RateLimited,
    Problem,
    PROBLEM,
    "`rate_limited`: over a configured request limit (`[rate_limits]`)",
    RETRY_AFTER
);
shared_answer!(
    StoreUnavailable,
    Problem,
    PROBLEM,
    "`store_unavailable`: the store did not answer; the request fails closed. Any operation may also answer 503 `overloaded` when more than `[http] max_in_flight` requests are in progress",
    RETRY_AFTER
);
shared_answer!(
    OAuthBadRequest,
    OAuthError,
    JSON,
    "`invalid_request`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`, `invalid_target`, `invalid_dpop_proof` or `use_dpop_nonce` (RFC 6749 §5.2, RFC 8707, RFC 8693, RFC 9449)",
    (
        "DPoP-Nonce",
        "With `use_dpop_nonce`: the nonce the next proof must carry."
    )
);
shared_answer!(
    OAuthInvalidClient,
    OAuthError,
    JSON,
    "`invalid_client`: client authentication failed or is required (or `invalid_token` for a bad API key at introspection)",
    (
        "WWW-Authenticate",
        "`Basic realm=\"tessera\"` when HTTP Basic was used."
    )
);
shared_answer!(
    OAuthRateLimited,
    OAuthError,
    JSON,
    "`slow_down`: over a configured request limit (`[rate_limits]`); retry after `Retry-After` seconds",
    RETRY_AFTER
);
shared_answer!(
    OAuthUnavailable,
    OAuthError,
    JSON,
    "`temporarily_unavailable`: the store did not answer",
    RETRY_AFTER
);

shared_answer!(
    ForwardAuthUnauthorized,
    Problem,
    PROBLEM,
    "No live session: no cookie, or `session_invalid`, `session_expired`, `session_revoked`; or a refused access token",
    (
        "WWW-Authenticate",
        "The challenge (Bearer or DPoP, RFC 6750 / RFC 9449)."
    ),
    (
        "DPoP-Nonce",
        "With `use_dpop_nonce`: the nonce the next proof must carry."
    )
);
shared_answer!(
    ForwardAuthForbidden,
    Problem,
    PROBLEM,
    "`csrf_rejected` (a cross-site state-changing request) or `forbidden`: the session's authentication level is below `level` (RFC 9470 step-up challenge)",
    (
        "WWW-Authenticate",
        "`Bearer error=\"insufficient_user_authentication\"` for a step-up."
    )
);

/// 200 of forward auth: who the request is, in headers, with no body.
pub struct ForwardAuthOk;
impl<'s> ToResponse<'s> for ForwardAuthOk {
    fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
        let b = ResponseBuilder::new()
            .description("A live session (or access token): who it is, for the proxy to pass on");
        (
            "ForwardAuthOk",
            with_headers(
                b,
                &[
                    ("X-Tessera-Subject", "The subject."),
                    ("X-Tessera-Session", "The session handle."),
                    ("X-Tessera-Auth-Level", "The authentication level."),
                    ("Cache-Control", "`no-store`."),
                ],
            ),
        )
    }
}

#[cfg(test)]
mod tests;
