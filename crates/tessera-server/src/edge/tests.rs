//! The edge does by hand what tower-http's request-id, sensitive-header,
//! panic and timeout layers do (docs/decisions.md says which figure keeps
//! it). These tests pin its observable behaviour to those layers': the
//! same inner service behind the edge and behind tower-http answers the
//! same status, the same request id, and marks the same headers sensitive
//! on both sides.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use proptest::prelude::*;
use tessera_core::MemoryStore;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::{SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer};
use tower_http::timeout::TimeoutLayer;

use super::{Edge, EdgeLimits, REQUEST_ID, Routes};
use crate::Config;

type Svc = BoxCloneSyncService<Request, Response, Infallible>;

const TIMEOUT: Duration = Duration::from_millis(50);
const SEEN_ID: &str = "x-seen-request-id";
const SEEN_SENSITIVE: &str = "x-seen-sensitive";

/// The inner service both stacks wrap: it reports what it saw, sets a
/// cookie, and panics or stalls on request.
fn probe() -> Svc {
    BoxCloneSyncService::new(tower::service_fn(|req: Request| async move {
        match req.uri().path() {
            "/panic" => panic!("probe asked to panic"),
            "/slow" => tokio::time::sleep(TIMEOUT * 20).await,
            _ => {}
        }
        let mut sensitive: Vec<&str> = req
            .headers()
            .iter()
            .filter(|(_, v)| v.is_sensitive())
            .map(|(k, _)| k.as_str())
            .collect();
        sensitive.sort_unstable();
        sensitive.dedup();
        let mut res = Response::new(Body::empty());
        let h = res.headers_mut();
        if let Some(id) = req.headers().get(&REQUEST_ID) {
            h.insert(SEEN_ID, id.clone());
        }
        h.insert(
            SEEN_SENSITIVE,
            HeaderValue::from_str(&sensitive.join(",")).unwrap(),
        );
        h.insert(header::SET_COOKIE, HeaderValue::from_static("a=b"));
        Ok::<_, Infallible>(res)
    }))
}

fn edge() -> Svc {
    edge_with(probe(), 1024)
}

fn edge_with(inner: Svc, max_in_flight: usize) -> Svc {
    let store = Arc::new(MemoryStore::new());
    let config = Config {
        store: Some("memory://".into()),
        ..Config::default()
    };
    let app = crate::app::build_with_store(config, store);
    let limits = EdgeLimits {
        max_header_bytes: 64 * 1024,
        max_body_bytes: 1024,
        timeout: TIMEOUT,
        max_in_flight,
    };
    BoxCloneSyncService::new(Edge::new(inner, app.state, limits, Routes::new("")))
}

#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        Some(RequestId::new(HeaderValue::from(
            self.0.fetch_add(1, Ordering::Relaxed),
        )))
    }
}

fn tower_http() -> Svc {
    let svc = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            HeaderName::from_static("dpop"),
        ]))
        .layer(SetRequestIdLayer::new(REQUEST_ID, Counter::default()))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE]))
        .layer(CatchPanicLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            TIMEOUT,
        ))
        .service(probe());
    BoxCloneSyncService::new(svc.map_response(|r: axum::http::Response<_>| r.map(Body::new)))
}

/// What a client and the handler can tell apart.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: StatusCode,
    /// The response's request id: the client's when it sent one.
    client_id_kept: Option<bool>,
    /// The handler saw the same id the response carries.
    handler_id_matches: bool,
    handler_sensitive: Option<String>,
    set_cookie_sensitive: Option<bool>,
}

async fn seen(svc: &Svc, req: Request) -> Seen {
    let sent_id = req.headers().get(&REQUEST_ID).cloned();
    let res = svc.clone().oneshot(req).await.unwrap();
    let h = res.headers();
    let id = h.get(&REQUEST_ID).cloned();
    assert!(
        id.as_ref().is_some_and(|v| !v.is_empty()),
        "every answer carries a request id"
    );
    Seen {
        status: res.status(),
        client_id_kept: sent_id.map(|s| Some(s) == id),
        handler_id_matches: h.get(SEEN_ID).is_none_or(|v| Some(v) == id.as_ref()),
        handler_sensitive: h.get(SEEN_SENSITIVE).map(|v| v.to_str().unwrap().to_owned()),
        set_cookie_sensitive: h.get(header::SET_COOKIE).map(HeaderValue::is_sensitive),
    }
}

fn request(path: &str, id: Option<&str>, headers: &[(&'static str, String)]) -> Request {
    let mut b = Request::builder().uri(path);
    if let Some(id) = id {
        b = b.header(REQUEST_ID, id);
    }
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(Body::empty()).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn edge_matches_tower_http_on_request_ids_and_sensitive_headers(
        path in prop::sample::select(vec!["/", "/auth/verify", "/healthz", "/x/y", "/auth/logout"]),
        id in prop::option::of("[A-Za-z0-9._-]{1,40}"),
        headers in prop::collection::vec(
            (prop::sample::select(vec!["authorization", "cookie", "dpop", "accept", "x-other", "Cookie"]), "[ -~]{0,30}"),
            0..5,
        ),
    ) {
        let headers: Vec<(&'static str, String)> = headers;
        let rt = runtime();
        let (edge, tower_http) = (edge(), tower_http());
        let a = rt.block_on(seen(&edge, request(path, id.as_deref(), &headers)));
        let b = rt.block_on(seen(&tower_http, request(path, id.as_deref(), &headers)));
        prop_assert_eq!(a, b);
    }
}

#[test]
fn edge_matches_tower_http_on_a_panicking_handler() {
    let rt = runtime();
    for id in [None, Some("abc")] {
        let a = rt.block_on(seen(&edge(), request("/panic", id, &[])));
        let b = rt.block_on(seen(&tower_http(), request("/panic", id, &[])));
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(a, b);
    }
}

#[test]
fn edge_matches_tower_http_on_a_handler_that_outlives_the_timeout() {
    let rt = runtime();
    let a = rt.block_on(seen(&edge(), request("/slow", Some("slow-1"), &[])));
    let b = rt.block_on(seen(&tower_http(), request("/slow", Some("slow-1"), &[])));
    assert_eq!(a.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(a, b);
}

/// The DBSC endpoints were missing from the edge's route table, so their
/// requests were logged and counted as `unmatched`.
#[test]
fn edge_labels_dbsc_routes_by_their_template() {
    let routes = Routes::new("");
    for path in [
        tessera_http::dbsc::REGISTER_PATH,
        tessera_http::dbsc::REFRESH_PATH,
    ] {
        assert_eq!(routes.template(path), path);
    }
    assert_eq!(routes.template("/openapi.json"), "/openapi.json");
}

/// `[http] max_in_flight`: with that many requests in progress, the next
/// one is answered 503 `overloaded` with `Retry-After: 1` at once (it does
/// not wait for a slot); `/healthz` and `/metrics` are never shed; a slot
/// comes back when its request ends, also by the request timeout.
#[tokio::test]
async fn requests_beyond_max_in_flight_are_shed_at_once_and_their_slots_come_back() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let inside = Arc::new(AtomicU64::new(0));
    let (g, n) = (gate.clone(), inside.clone());
    let held = BoxCloneSyncService::new(tower::service_fn(move |req: Request| {
        let (g, n) = (g.clone(), n.clone());
        async move {
            if req.uri().path() == "/hold" {
                n.fetch_add(1, Ordering::SeqCst);
                let _permit = g.acquire().await;
            }
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }
    }));
    let svc = edge_with(held, 2);
    let holders: Vec<_> = (0..2)
        .map(|_| tokio::spawn(svc.clone().oneshot(request("/hold", None, &[]))))
        .collect();
    while inside.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }

    let res = tokio::time::timeout(
        Duration::from_secs(1),
        svc.clone().oneshot(request("/x", None, &[])),
    )
    .await
    .expect("shed at once, not queued")
    .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    assert!(res.headers().contains_key(REQUEST_ID));
    let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "urn:tessera:error:overloaded");
    assert_eq!(
        (v["code"].as_str(), v["status"].as_u64()),
        (Some("overloaded"), Some(503))
    );
    for exempt in ["/healthz", "/metrics"] {
        let res = svc.clone().oneshot(request(exempt, None, &[])).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{exempt}");
    }

    gate.add_permits(2);
    for h in holders {
        assert_eq!(h.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    for _ in 0..3 {
        let res = svc.clone().oneshot(request("/x", None, &[])).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "the slots are free again");
    }

    // A request cut off by the timeout gives its slot back too.
    let one = edge_with(probe(), 1);
    let res = one.clone().oneshot(request("/slow", None, &[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
    let res = one.clone().oneshot(request("/x", None, &[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
