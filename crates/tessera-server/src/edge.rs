//! The service's edge: everything every request goes through before and
//! after routing, in one tower service around the router.
//!
//! It used to be eight stacked layers (request id, its propagation,
//! sensitive request and response headers, the trace span, the panic
//! catcher, the edge limits, metrics) plus a route layer for the API key.
//! axum applies `Router::layer` to every route separately, so each layer
//! boxed its own future and cloned its own boxed service on every request:
//! on `POST /v1/sessions/verify` that plumbing cost more CPU than the
//! session lookup. Here it is one future per request, in this order:
//!
//! 1. the request id (kept when the client sent one, else a counter), also
//!    set on the response;
//! 2. `Authorization`, `Cookie` and `DPoP` marked sensitive (never printed
//!    by `Debug`), `Set-Cookie` on the response likewise;
//! 3. the request id for every line logged while the request is handled
//!    (`logging::in_request`; method, route template and API key id go into
//!    the line that ends the request);
//! 4. load shedding: beyond `[http] max_in_flight` requests in progress,
//!    503 `overloaded` at once (`/healthz` and `/metrics` are exempt, so
//!    probes and scrapes still see an overloaded process); then the header
//!    size limit (431);
//! 5. the API key for every path under `/v1` — before routing, so an
//!    unauthenticated caller learns nothing about which routes exist — with
//!    the abuse limits on failed keys per address and on requests per key
//!    ([`crate::limits`], 429 `rate_limited`), and the scope its route
//!    needs ([`required_scope`], 403 `forbidden`);
//! 6. the body limit (an extension the extractors read for their error
//!    detail), the request timeout (408) and the panic catcher (500);
//! 7. metrics by route template, method and status;
//! 8. `Cache-Control: no-store` on every `/v1` answer.
//!
//! Routes are labelled by [`Routes::template`], which mirrors the router's
//! table (a test checks it against axum's own `MatchedPath`); labels never
//! carry the raw path, which may hold a token a client misplaced.

use std::any::Any;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::header;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::BoxFuture;
use tessera_core::ApiKeyScope;
use tower::Service;

use crate::app::AppState;
use crate::auth::ApiKey;
use crate::extract::BodyLimit;
use crate::problem::ApiError;

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const DPOP: HeaderName = HeaderName::from_static("dpop");

/// Limits the edge enforces before a handler runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EdgeLimits {
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    pub timeout: Duration,
    /// Requests in progress at most; more are shed with 503 `overloaded`.
    pub max_in_flight: usize,
}

/// What every request's edge future shares.
struct Shared {
    state: AppState,
    limits: EdgeLimits,
    routes: Routes,
    request_ids: RequestIds,
    /// Requests in progress, for [`EdgeLimits::max_in_flight`].
    in_flight: AtomicUsize,
}

/// The edge around an inner service (the router).
#[derive(Clone)]
pub(crate) struct Edge<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Edge<S> {
    pub(crate) fn new(inner: S, state: AppState, limits: EdgeLimits, routes: Routes) -> Self {
        Self {
            inner,
            shared: Arc::new(Shared {
                state,
                limits,
                routes,
                request_ids: RequestIds::new(),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone is the one that was just polled ready; the stored one
        // gets polled again before the next call (tower's usual swap).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(handle(self.shared.clone(), inner, req))
    }
}

async fn handle<S>(shared: Arc<Shared>, mut inner: S, mut req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let start = Instant::now();
    let method = crate::metrics::method_label(req.method());
    let path = req.uri().path();
    let route = shared.routes.template(path);
    let v1 = path == "/v1" || path.starts_with("/v1/");

    let request_id = match req.headers().get(&REQUEST_ID) {
        Some(v) => v.clone(),
        None => {
            let v = shared.request_ids.next();
            req.headers_mut().insert(REQUEST_ID, v.clone());
            v
        }
    };
    // One pass over the few headers a request has: looking each name up
    // through `HeaderMap::entry` cost more than the rest of this function.
    for (name, value) in req.headers_mut().iter_mut() {
        if name == header::AUTHORIZATION || name == header::COOKIE || name == DPOP {
            value.set_sensitive(true);
        }
    }

    // The request id ties every log line the request causes to the
    // client's `x-request-id`. It is a task-local the log formatter reads
    // (`logging::in_request`), not a span: a span costs its registration,
    // field formatting, enter, exit and close on every request, whether
    // anything logs or not (an eighth of `/auth/verify`'s instructions).
    // Method, route and caller go into the lines that end the request.
    crate::logging::in_request(request_id.clone(), async {
        tracing::debug!(method, route, "started processing request");
        let (res, api_key) = guarded(&shared, &mut inner, req, v1, route).await;
        Ok(finish(
            res,
            api_key.as_deref(),
            request_id,
            start,
            route,
            method,
            v1,
        ))
    })
    .await
}

/// Steps 7 and 8, the response's request id and the line that ends the
/// request.
fn finish(
    mut res: Response,
    api_key: Option<&ApiKey>,
    request_id: HeaderValue,
    start: Instant,
    route: &str,
    method: &'static str,
    v1: bool,
) -> Response {
    let status = res.status();
    let latency = start.elapsed();
    let (count, time) = crate::metrics::http_handles(route, method, status.as_u16());
    count.increment(1);
    time.record(latency.as_secs_f64());

    let headers = res.headers_mut();
    if v1 {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(REQUEST_ID, request_id);
    for (name, value) in headers.iter_mut() {
        if name == header::SET_COOKIE {
            value.set_sensitive(true);
        }
    }

    let latency_ms = latency.as_millis();
    let api_key = api_key.map_or("", |k| &*k.id);
    let status = status.as_u16();
    if res.status().is_server_error() {
        tracing::error!(method, route, api_key, status, latency_ms, "request failed");
    } else {
        tracing::debug!(
            method,
            route,
            api_key,
            status,
            latency_ms,
            "finished processing request"
        );
    }
    res
}

/// Steps 4–6: the checks that may answer instead of the router. Also
/// returns the authenticated API key, for the log. The in-flight slot is
/// held until the answer is made, however the request ends (a timeout, a
/// client gone, a panic).
async fn guarded<S>(
    shared: &Shared,
    inner: &mut S,
    mut req: Request,
    v1: bool,
    route: &str,
) -> (Response, Option<Arc<ApiKey>>)
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let limits = shared.limits;
    let _slot = match route {
        "/healthz" | "/metrics" => None,
        _ => match InFlight::take(&shared.in_flight, limits.max_in_flight) {
            Some(slot) => Some(slot),
            None => {
                crate::metrics::shed_counter().increment(1);
                return (ApiError::Overloaded(limits.max_in_flight).into_response(), None);
            }
        },
    };
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > limits.max_header_bytes {
        let e = ApiError::HeadersTooLarge(format!(
            "the request headers total {header_bytes} bytes, more than the limit of {}",
            limits.max_header_bytes
        ));
        return (e.into_response(), None);
    }
    let mut api_key = None;
    if v1 {
        let state = &shared.state;
        let value = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
        // Without an Authorization header, a mapped client certificate
        // (`[[tls.api_clients]]`) stands in for an API key.
        let by_cert = match value {
            None => req
                .extensions()
                .get::<tessera_http::bearer::ClientCertThumbprint>()
                .and_then(|c| state.api_keys.by_certificate(c)),
            Some(_) => None,
        };
        let limits = &state.limits;
        let authenticated = match by_cert {
            Some(key) => Ok(key),
            None => {
                let ip = limits.client_ip(req.headers(), req.extensions());
                limits.authenticate_api_key(&state.api_keys, value, &ip).await
            }
        };
        match authenticated {
            Ok(key) => {
                if let Err(limited) = limits.check(&limits.api_per_key, key.id.as_bytes()) {
                    return (ApiError::from(limited).into_response(), Some(key));
                }
                if let Some(scope) = required_scope(route)
                    && let Err(e) = key.require(scope)
                {
                    return (e.into_response(), Some(key));
                }
                api_key = Some(key);
            }
            Err(e) => return (e.into_response(), None),
        }
    }
    req.extensions_mut().insert(BodyLimit(limits.max_body_bytes));

    // A panic while routing (synchronous) or in the handler (the future)
    // becomes a 500 problem; the connection and the process carry on.
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(req))) {
        Ok(fut) => fut,
        Err(panic) => return (panic_response(panic), api_key),
    };
    let res = match tokio::time::timeout(limits.timeout, AssertUnwindSafe(fut).catch_unwind()).await {
        Ok(Ok(Ok(res))) => res,
        Ok(Ok(Err(never))) => match never {},
        Ok(Err(panic)) => panic_response(panic),
        Err(_) => ApiError::RequestTimeout(limits.timeout.as_secs()).into_response(),
    };
    (res, api_key)
}

/// One request in progress; dropping it frees the slot.
///
/// A counter rather than a semaphore: a request over the bound is
/// answered at once instead of waiting for a slot, since waiting is what
/// the bound exists to prevent (a slow store would otherwise make every
/// request queue up to the request timeout), and one atomic add per
/// request costs nothing measurable.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn take(count: &'a AtomicUsize, max: usize) -> Option<Self> {
        // Add first, then look: no compare-and-swap loop under contention.
        // A burst may briefly count past `max`; those requests are shed.
        if count.fetch_add(1, Ordering::Relaxed) < max {
            Some(InFlight(count))
        } else {
            count.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The answer to a panicked handler: a 500 problem, and the panic message
/// in the log (not in the answer).
pub(crate) fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %msg, "handler panicked");
    ApiError::Internal.into_response()
}

/// Request ids: a random per-process prefix and a counter. Unique and cheap;
/// a UUID per request cost a getrandom system call on the hot path, and a
/// request id needs no unpredictability.
struct RequestIds {
    prefix: Box<str>,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        Self {
            prefix: tessera_core::secret::new_id("").chars().take(8).collect(),
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> HeaderValue {
        use std::fmt::Write as _;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut s = String::with_capacity(self.prefix.len() + 17);
        s.push_str(&self.prefix);
        let _ = write!(s, "-{n:x}");
        // Base64url prefix, '-', hex digits: always a valid header value.
        HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("-"))
    }
}

/// The router's route templates, for log and metric labels.
#[derive(Debug, Clone)]
pub(crate) struct Routes {
    /// The RFC 8414 metadata route at the issuer's path, when it has one.
    metadata_at_issuer: Option<Box<str>>,
}

pub(crate) const WELL_KNOWN_METADATA: &str = "/.well-known/oauth-authorization-server";

impl Routes {
    pub(crate) fn new(issuer_path: &str) -> Self {
        Self {
            metadata_at_issuer: (!issuer_path.is_empty())
                .then(|| format!("{WELL_KNOWN_METADATA}{issuer_path}").into()),
        }
    }

    /// The routes without parameters.
    const STATIC: &'static [&'static str] = &[
        "/v1/sessions",
        "/v1/sessions/verify",
        "/v1/sessions/elevate",
        "/v1/sessions/revoke",
        "/v1/events",
        "/v1/revocations",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/auth/verify",
        "/auth/verify/",
        "/auth/logout",
        tessera_http::dbsc::REGISTER_PATH,
        tessera_http::dbsc::REFRESH_PATH,
        "/oauth2/token",
        "/oauth2/revoke",
        "/oauth2/introspect",
        "/.well-known/jwks.json",
        WELL_KNOWN_METADATA,
    ];

    /// The routes with parameters, as axum names them (what the matching
    /// in [`Self::template`] answers).
    #[cfg(test)]
    const PATTERNS: &'static [&'static str] = &[
        "/auth/verify/{*proxied_path}",
        "/v1/sessions/{handle}",
        "/v1/subjects/{subject}/sessions",
    ];

    /// Every template [`Self::template`] can answer but `"unmatched"`: the
    /// route table, which the OpenAPI document must cover (a test holds
    /// them together).
    #[cfg(test)]
    pub(crate) fn templates(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Self::STATIC.iter().chain(Self::PATTERNS).copied().collect();
        all.extend(self.metadata_at_issuer.as_deref());
        all
    }

    /// The template of the route `path` matches, as axum's `MatchedPath`
    /// would name it, or `"unmatched"`.
    pub(crate) fn template(&self, path: &str) -> &str {
        if let Some(t) = Self::STATIC.iter().find(|t| **t == path) {
            return t;
        }
        if let Some(t) = self.metadata_at_issuer.as_deref()
            && t == path
        {
            return t;
        }
        if path.starts_with("/auth/verify/") {
            return "/auth/verify/{*proxied_path}";
        }
        if let Some(rest) = path.strip_prefix("/v1/sessions/")
            && is_segment(rest)
        {
            return "/v1/sessions/{handle}";
        }
        if let Some(rest) = path.strip_prefix("/v1/subjects/")
            && let Some(subject) = rest.strip_suffix("/sessions")
            // axum's matcher takes an empty parameter before a static
            // suffix (`/v1/subjects//sessions`), though not at the end.
            && !subject.contains('/')
        {
            return "/v1/subjects/{subject}/sessions";
        }
        "unmatched"
    }
}

/// The scope an API key needs for a `/v1` route (by its template), the one
/// table of them (SPEC §4.1); `admin` holds every scope. `None` for paths
/// that match no route: the router answers those (404/405) to any valid key.
pub(crate) fn required_scope(route: &str) -> Option<ApiKeyScope> {
    match route {
        "/v1/sessions"
        | "/v1/sessions/verify"
        | "/v1/sessions/elevate"
        | "/v1/sessions/revoke"
        | "/v1/sessions/{handle}"
        | "/v1/subjects/{subject}/sessions" => Some(ApiKeyScope::Sessions),
        "/v1/events" => Some(ApiKeyScope::Events),
        "/v1/revocations" => Some(ApiKeyScope::Revocations),
        _ => None,
    }
}

/// What a `{param}` matches: one non-empty path segment.
fn is_segment(s: &str) -> bool {
    !s.is_empty() && !s.contains('/')
}

#[cfg(test)]
mod tests;
