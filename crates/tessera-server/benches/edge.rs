//! The service's hand-written edge against the same duties done by
//! tower-http's layers, around the same routes, on `GET /auth/verify` with
//! a live session cookie (memory store, so the edge is what differs).
//!
//! ```text
//! cargo bench -p tessera-server --bench edge
//! ```
//!
//! - `routes_only`: the routes with no edge at all (the floor);
//! - `edge`: [`tessera_server::app::service`], what `tessera serve` runs;
//! - `tower_http`: request id (set and propagated), sensitive request and
//!   response headers, the trace span, panic catcher and timeout from
//!   tower-http, plus the two duties tower-http has no layer for (header
//!   size limit and per-route metrics) in one `from_fn` middleware. API
//!   keys are not involved on this path.
//!
//! The figure that decides whether the edge stays is in docs/decisions.md.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use divan::Bencher;
use tessera_core::{CreateSession, MemoryStore, Store};
use tessera_server::app::{AppState, build_with_store, routes_without_edge, service};
use tessera_server::{Config, logging};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::{SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

type Svc = BoxCloneSyncService<Request, Response, Infallible>;

struct Fixture {
    rt: tokio::runtime::Runtime,
    cookie: HeaderValue,
    routes_only: Svc,
    edge: Svc,
    tower_http: Svc,
}

fn fixture() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        // The server's own subscriber and filter (info): the span each
        // request opens is live, as in production.
        logging::init(tessera_server::config::LogFormat::Text);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let store: Arc<dyn Store> =
            Arc::new(tessera_server::metrics::InstrumentedStore::new(MemoryStore::new()));
        let config = Config {
            store: Some("memory://".into()),
            ..Config::default()
        };
        let app = build_with_store(config, store);
        let state = app.state.clone();
        let issued = rt
            .block_on(state.sessions.create(CreateSession {
                subject: "bench".into(),
                auth: None,
                device: None,
                data: None,
                ttl: None,
                previous_session_token: None,
            }))
            .expect("session");
        let cookie = format!("__Host-tessera={}", issued.token.expose());
        let _guard = rt.enter();
        Fixture {
            cookie: HeaderValue::from_str(&cookie).expect("cookie"),
            routes_only: BoxCloneSyncService::new(routes_without_edge(state.clone())),
            edge: BoxCloneSyncService::new(service(state.clone())),
            tower_http: tower_http_stack(state),
            rt,
        }
    })
}

#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        Some(RequestId::new(HeaderValue::from(n)))
    }
}

const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The duties tower-http has no layer for: the header size limit and the
/// request metrics by route (the edge's own label function is private, so
/// the raw path stands in; a fair stand-in for the cost, not for safety).
async fn limits_and_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE.into_response();
    }
    let method = req.method().as_str().to_owned();
    let route = req.uri().path().to_owned();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("bench_http_requests_total", &labels).increment(1);
    metrics::histogram!("bench_http_request_duration_seconds", &labels).record(start.elapsed().as_secs_f64());
    res
}

fn tower_http_stack(state: AppState) -> Svc {
    let request_id = HeaderName::from_static("x-request-id");
    let svc = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            HeaderName::from_static("dpop"),
        ]))
        .layer(SetRequestIdLayer::new(request_id.clone(), Counter::default()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", request_id = id)
        }))
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE]))
        .layer(CatchPanicLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(axum::middleware::from_fn(limits_and_metrics))
        .service(routes_without_edge(state));
    BoxCloneSyncService::new(svc.map_response(|r: axum::http::Response<_>| r.map(Body::new)))
}

fn request(f: &Fixture) -> Request {
    Request::builder()
        .uri("/auth/verify")
        .header(header::HOST, "app.example")
        .header(header::COOKIE, f.cookie.clone())
        .header("x-forwarded-method", "GET")
        .body(Body::empty())
        .expect("request")
}

fn run(b: Bencher, pick: fn(&Fixture) -> &Svc) {
    let f = fixture();
    let svc = pick(f).clone();
    // Every stack must really verify: 200 with the subject header.
    let res =
        f.rt.block_on(svc.clone().oneshot(request(f)))
            .expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-tessera-subject"], "bench");
    b.bench(|| {
        f.rt.block_on(async {
            let mut s = svc.clone();
            let res = s.call(request(f)).await.expect("infallible");
            divan::black_box(res)
        })
    });
}

#[divan::bench]
fn routes_only(b: Bencher) {
    run(b, |f| &f.routes_only);
}

#[divan::bench]
fn edge(b: Bencher) {
    run(b, |f| &f.edge);
}

#[divan::bench]
fn tower_http(b: Bencher) {
    run(b, |f| &f.tower_http);
}

fn main() {
    divan::main();
}
