//! The axum application: state, routes and the middleware stack.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tessera_core::{Clock, EventLog, Sessions, Store, StoreHealth, SystemClock};
use tower::Layer;

use crate::auth::ApiKeys;
use crate::config::Config;
use crate::edge::{Edge, EdgeLimits, Routes};
use crate::handlers::{self, forward_auth, ops, sessions};
use crate::open_store::{OpenError, open_store};

/// Everything a handler can reach: the services, never the store itself
/// (each service holds the store capabilities it needs). Cloned for every
/// extractor of every request, so it is one reference count, not one per
/// field.
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
    /// The audit log, and the revocation feed's source.
    pub events: EventLog,
    /// Backend API keys: the check at the edge, and their management.
    pub api_keys: ApiKeys,
    /// Whether the store answers (`/readyz`).
    pub health: Arc<dyn StoreHealth>,
    /// Whether the start-up work is done (`/readyz`): false while `serve`
    /// waits for a store that did not answer at start.
    pub started: Arc<std::sync::atomic::AtomicBool>,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
    /// Access/refresh tokens, signing keys, OAuth endpoints.
    pub oauth: Arc<crate::issuer::OAuth>,
    /// Device Bound Session Credentials, when `[dbsc] enabled`.
    pub dbsc: Option<tessera_core::dbsc::Dbsc>,
    /// The abuse limits (`[rate_limits]`).
    pub limits: Arc<crate::limits::AbuseLimits>,
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
pub fn build_with_store(config: Config, store: Arc<dyn Store>) -> App {
    build_with_clock(config, store, Arc::new(SystemClock))
}

/// Builds the application with an explicit clock (tests move a `ManualClock`).
/// Signing keys are sealed with `[keys] encryption_key`, or else with a key
/// that lives only in memory; `serve` uses [`build_with_sealer`] with the
/// key file.
pub fn build_with_clock(config: Config, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> App {
    let sealer = crate::issuer::config_sealer(&config);
    build_with_sealer(config, store, clock, sealer)
}

/// Builds the application with the key that seals signing keys at rest.
/// Call [`crate::issuer::start`] before issuing tokens.
pub fn build_with_sealer(
    config: Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sealer: tessera_core::Sealer,
) -> App {
    // One store, handed to each service as the capabilities it uses.
    let sessions = Sessions::new(store.clone(), clock.clone(), config.policy());
    let limits = Arc::new(crate::limits::AbuseLimits::new(
        &config.rate_limits,
        store.clone(),
        clock.clone(),
    ));
    let oauth = crate::issuer::OAuth::new(
        &config,
        sessions.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        clock,
        sealer,
    )
    .with_client_store(store.clone());
    let dbsc = config.dbsc.enabled.then(|| {
        tessera_core::dbsc::Dbsc::new(
            sessions.clone(),
            store.clone(),
            oauth.sealer.clone(),
            config.dbsc_policy(),
        )
        .with_events(store.clone())
    });
    let state = AppState(Arc::new(AppStateInner {
        dbsc,
        limits,
        oauth: Arc::new(oauth),
        sessions,
        events: EventLog::new(store.clone()),
        api_keys: ApiKeys::new(store.clone(), Duration::from_secs(config.http.api_key_cache_secs))
            .with_cert_clients(&config.tls.api_clients),
        health: store,
        started: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        config: Arc::new(config),
        metrics: crate::metrics::handle(),
    }));
    App {
        router: router(state.clone()),
        state,
    }
}

/// The full router: the routes, behind the [`Edge`] (request id, span,
/// limits, API key for `/v1`, timeout, panic catcher, metrics).
pub fn router(state: AppState) -> Router {
    Router::new().fallback_service(service(state))
}

/// What [`router`] serves, without the outer `Router` that only forwards to
/// it: the listener serves this directly, saving a route lookup, a boxed
/// service clone and a boxed future per request.
pub fn service(
    state: AppState,
) -> impl tower::Service<
    axum::extract::Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let http = &state.config.http;
    let limits = EdgeLimits {
        max_header_bytes: http.max_header_bytes,
        max_body_bytes: http.max_body_bytes,
        timeout: Duration::from_secs(http.request_timeout_secs),
        max_in_flight: http.max_in_flight,
    };
    let labels = Routes::new(&state.oauth.issuer_path);
    let inner = routes(&state).with_state(state.clone());
    // No `Router::layer` here: axum would wrap (and box) every route
    // separately. The edge wraps the router once.
    let inner = DefaultBodyLimit::max(limits.max_body_bytes).layer(inner);
    Edge::new(inner, state, limits, labels)
}

/// The routes with their state and body limit but without the edge: only
/// for `benches/edge.rs`, which weighs the edge against tower-http's layers
/// around the same routes.
#[doc(hidden)]
pub fn routes_without_edge(state: AppState) -> Router {
    let limit = state.config.http.max_body_bytes;
    routes(&state)
        .with_state(state)
        .layer(DefaultBodyLimit::max(limit))
}

/// The route table and its fallbacks, without the edge.
fn routes(state: &AppState) -> Router<AppState> {
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
        .route("/v1/revocations", get(handlers::revocations::feed));

    let ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(crate::openapi::document_handler));

    // Browser-facing forward auth (SPEC §4.2); no API key. Every method and
    // any path below: Envoy's ext_authz sends its check with the proxied
    // request's method, at `path_prefix` + the proxied path.
    let browser = Router::new()
        .route("/auth/verify", any(forward_auth::verify))
        .route("/auth/verify/", any(forward_auth::verify))
        .route("/auth/verify/{*proxied_path}", any(forward_auth::verify))
        .route("/auth/logout", post(forward_auth::logout))
        .route(tessera_http::dbsc::REGISTER_PATH, post(handlers::dbsc::register))
        .route(tessera_http::dbsc::REFRESH_PATH, post(handlers::dbsc::refresh));

    Router::new()
        .merge(v1)
        .merge(ops)
        .merge(browser)
        .merge(handlers::oauth::routes(state))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
}

#[cfg(test)]
mod tests;
