//! The axum application: state, routes and the middleware stack.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tessera_core::{Clock, SessionStore, Sessions, SystemClock};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::{SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::{ApiKeyCache, require_api_key};
use crate::config::Config;
use crate::extract::BodyLimit;
use crate::handlers::{self, forward_auth, ops, sessions};
use crate::problem::ApiError;
use crate::store_url::{OpenError, open_store};

/// Everything a handler can reach. Cloned for every extractor of every
/// request, so it is one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

pub struct AppStateInner {
    pub sessions: Sessions,
    pub store: Arc<dyn SessionStore>,
    pub config: Arc<Config>,
    pub api_keys: Arc<ApiKeyCache>,
    pub metrics: PrometheusHandle,
    /// Access/refresh tokens, signing keys, OAuth endpoints.
    pub oauth: Arc<crate::oauth::OAuth>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A built application: its state and its router.
#[derive(Debug, Clone)]
pub struct App {
    pub state: AppState,
    pub router: Router,
}

/// Opens the configured store and builds the application.
pub fn build(config: Config) -> Result<App, OpenError> {
    let store = open_store(&config)?;
    Ok(build_with_store(config, store))
}

/// Builds the application over an already opened store.
pub fn build_with_store(config: Config, store: Arc<dyn SessionStore>) -> App {
    build_with_clock(config, store, Arc::new(SystemClock))
}

/// Builds the application with an explicit clock (tests move a `ManualClock`).
/// Signing keys are sealed with `[keys] encryption_key`, or else with a key
/// that lives only in memory; `serve` uses [`build_with_sealer`] with the
/// key file.
pub fn build_with_clock(config: Config, store: Arc<dyn SessionStore>, clock: Arc<dyn Clock>) -> App {
    let sealer = crate::oauth::config_sealer(&config);
    build_with_sealer(config, store, clock, sealer)
}

/// Builds the application with the key that seals signing keys at rest.
/// Call [`crate::oauth::start`] before issuing tokens.
pub fn build_with_sealer(
    config: Config,
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    sealer: tessera_core::Sealer,
) -> App {
    let sessions = Sessions::new(store.clone(), clock.clone(), config.policy());
    let oauth = crate::oauth::OAuth::new(&config, sessions.clone(), store.clone(), clock, sealer);
    let state = AppState(Arc::new(AppStateInner {
        oauth: Arc::new(oauth),
        sessions,
        store,
        api_keys: Arc::new(ApiKeyCache::new(Duration::from_secs(
            config.http.api_key_cache_secs,
        ))),
        config: Arc::new(config),
        metrics: crate::metrics::handle(),
    }));
    App {
        router: router(state.clone()),
        state,
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The full router with every layer.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/sessions", post(sessions::create))
        .route("/v1/sessions/verify", post(sessions::verify))
        .route("/v1/sessions/elevate", post(sessions::elevate))
        .route("/v1/sessions/revoke", post(sessions::revoke))
        .route(
            "/v1/sessions/{handle}",
            get(sessions::get_session)
                .patch(sessions::patch_session)
                .delete(sessions::delete_session),
        )
        .route(
            "/v1/subjects/{subject}/sessions",
            get(sessions::list_subject).delete(sessions::revoke_subject),
        )
        .route("/v1/events", get(sessions::events))
        .route("/v1/revocations", get(handlers::revocations::feed))
        .route_layer(from_fn_with_state(state.clone(), require_api_key));

    let ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));

    // Browser-facing forward auth (SPEC §4.2); no API key.
    let browser = Router::new()
        .route("/auth/verify", get(forward_auth::verify))
        .route("/auth/logout", post(forward_auth::logout));

    let http = &state.config.http;
    let edge = EdgeLimits {
        max_header_bytes: http.max_header_bytes,
        max_body_bytes: http.max_body_bytes,
        timeout: Duration::from_secs(http.request_timeout_secs),
    };

    // Layers run outermost-last: request id → sensitive headers → trace →
    // panic catcher → edge checks → metrics → body limit → handler. axum
    // applies them per route (and to the fallback), after routing, so the
    // matched route template is known to all of them.
    Router::new()
        .merge(v1)
        .merge(ops)
        .merge(browser)
        .merge(handlers::oauth::routes(&state))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
        .layer(from_fn(crate::metrics::track_http))
        .layer(from_fn_with_state(edge, edge_middleware))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                // One line per request is the cost of a verify several times over at
                // high rates; metrics count every request, the line is for debugging.
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                .on_failure(DefaultOnFailure::new().level(Level::ERROR)),
        )
        .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE]))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            HeaderName::from_static("dpop"),
        ]))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, SequentialRequestId::new()))
        .with_state(state)
}

/// Request ids: a random per-process prefix and a counter. Unique and cheap;
/// a UUID per request cost a getrandom system call on the hot path, and a
/// request id needs no unpredictability.
#[derive(Clone)]
struct SequentialRequestId {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl SequentialRequestId {
    fn new() -> Self {
        Self {
            prefix: tessera_core::token::new_id("")
                .chars()
                .take(8)
                .collect::<String>()
                .into(),
            next: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:x}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// The request span: method, route template, request id. Never the raw
/// path (a client may misplace a token there), a header value or the query.
fn make_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str());
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        request_id = %request_id,
        api_key = tracing::field::Empty,
    )
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %msg, "handler panicked");
    ApiError::Internal.into_response()
}

#[derive(Debug, Clone, Copy)]
struct EdgeLimits {
    max_header_bytes: usize,
    max_body_bytes: usize,
    timeout: Duration,
}

/// Header size limit (431), the request timeout, the body limit extension
/// for error details, and `Cache-Control: no-store` on every `/v1` answer.
async fn edge_middleware(State(limits): State<EdgeLimits>, mut req: Request, next: Next) -> Response {
    let v1 = is_v1(req.uri().path());
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    let mut res = if header_bytes > limits.max_header_bytes {
        ApiError::HeadersTooLarge(format!(
            "the request headers total {header_bytes} bytes, more than the limit of {}",
            limits.max_header_bytes
        ))
        .into_response()
    } else {
        req.extensions_mut().insert(BodyLimit(limits.max_body_bytes));
        match tokio::time::timeout(limits.timeout, next.run(req)).await {
            Ok(res) => res,
            Err(_) => ApiError::RequestTimeout(limits.timeout.as_secs()).into_response(),
        }
    };
    if v1 {
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

fn is_v1(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

#[cfg(test)]
mod tests;
