//! Several `tessera serve` processes on one Redis (SPEC §4.6), as behind a
//! load balancer without sticky sessions: a change made through any node
//! is refused by every other within 100 ms although each caches sessions;
//! concurrent refreshes of one token spread over the nodes rotate it once;
//! a Rust app using the library's browser layer on the same Redis shares
//! the sessions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use futures::future::join_all;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tessera::browser::{CookieConfig, RequireSession, SessionLayer};
use tessera::core::{SessionPolicy, Sessions, SystemClock};
use tower::ServiceExt;

use crate::harness::{Opts, Resp, TestServer, parse_set_cookie};

/// The bound SPEC §4.6 sets for a change to reach every node.
const BOUND: Duration = Duration::from_millis(100);
/// How often a node is asked again while waiting for a change.
const POLL: Duration = Duration::from_millis(2);
/// Every node needs the same key-encryption key: refresh successors sealed
/// by one are unsealed by another inside the grace window.
const KEK: &str = "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtb2Yta2V5ISE";

/// The store URL of a fresh deployment (its own prefix) on the binary's
/// private redis-server.
fn deployment(name: &str) -> String {
    format!(
        "{}?prefix={name}-{}",
        tessera_redis::testing::server().url(),
        std::process::id()
    )
}

/// Three servers on `url`: the first sets the store up, the others share
/// its API key.
async fn three_nodes(url: &str, env: &[(&str, &str)]) -> [TestServer; 3] {
    let opts = env.iter().fold(
        Opts::default().store(url).env("TESSERA_KEYS_ENCRYPTION_KEY", KEK),
        |o, (k, v)| o.env(k, v),
    );
    let a = TestServer::start(opts.clone()).await;
    let key = a.api_key.clone();
    let (b, c) = futures::join!(
        TestServer::start(opts.clone().api_key(&key)),
        TestServer::start(opts.api_key(&key)),
    );
    [a, b, c]
}

/// Polls `node`'s verification of `token` until it is refused as `code`;
/// the time since `start` (the change was asked for then), asserted under
/// the bound, and the time since `done` (its answer came back).
async fn refused_within_bound(
    node: &TestServer,
    token: &str,
    code: &str,
    start: Instant,
    done: Instant,
) -> (Duration, Duration) {
    loop {
        let r = node.verify(token).await;
        if r.status == 401 {
            r.assert_problem(401, code);
            let took = start.elapsed();
            assert!(took < BOUND, "refused after {took:?}, over {BOUND:?}");
            return (took, done.elapsed());
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            start.elapsed() < BOUND * 5,
            "still accepted after {:?}",
            BOUND * 5
        );
        tokio::time::sleep(POLL).await;
    }
}

/// p50 and max of each column: since the change was asked for, and since
/// its answer came back.
fn summary(what: &str, took: &[(Duration, Duration)]) -> String {
    let stats = |mut v: Vec<Duration>| {
        v.sort();
        format!("p50 {:?}, max {:?}", v[v.len() / 2], v[v.len() - 1])
    };
    format!(
        "{what} ({} measurements): since asked {}; since answered {}",
        took.len(),
        stats(took.iter().map(|t| t.0).collect()),
        stats(took.iter().map(|t| t.1).collect()),
    )
}

/// Create on A, verify on B (and A), revoke on C: A and B refuse within
/// 100 ms; the same for a token replaced (elevated) on C. 20 trials each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_node_is_refused_by_the_others_within_100ms() {
    let [a, b, c] = three_nodes(&deployment("nodes"), &[]).await;
    let mut revoked = Vec::new();
    let mut replaced = Vec::new();
    for i in 0..20 {
        let s = a.create(json!({"subject": format!("n{i}")})).await;
        // Each node now holds it in its cache (a second verify is a hit).
        for n in [&a, &b, &a, &b] {
            n.assert_verifies(&s.token).await;
        }
        let start = Instant::now();
        c.post("/v1/sessions/revoke", &json!({"session_token": s.token}))
            .await
            .assert_status(204);
        let done = Instant::now();
        let (ta, tb) = futures::join!(
            refused_within_bound(&a, &s.token, "session_revoked", start, done),
            refused_within_bound(&b, &s.token, "session_revoked", start, done),
        );
        revoked.extend([ta, tb]);

        let s = a.create(json!({"subject": format!("m{i}")})).await;
        for n in [&a, &b, &a, &b] {
            n.assert_verifies(&s.token).await;
        }
        let start = Instant::now();
        let r = c
            .post(
                "/v1/sessions/elevate",
                &json!({"session_token": s.token, "auth": {"level": 2, "methods": ["otp"]}}),
            )
            .await;
        r.assert_status(200);
        let done = Instant::now();
        let (ta, tb) = futures::join!(
            refused_within_bound(&a, &s.token, "session_invalid", start, done),
            refused_within_bound(&b, &s.token, "session_invalid", start, done),
        );
        replaced.extend([ta, tb]);
        let new = r.json()["session_token"].as_str().expect("new token").to_owned();
        for n in [&a, &b, &c] {
            n.assert_verifies(&new).await;
        }
    }
    println!("{}", summary("revoked on C, refused on A and B", &revoked));
    println!(
        "{}",
        summary("token replaced on C, old one refused on A and B", &replaced)
    );
    for n in [a, b, c] {
        n.finish().await;
    }
}

async fn refresh(node: &TestServer, rt: &str) -> Resp {
    let body = format!("grant_type=refresh_token&client_id=default&refresh_token={rt}");
    node.send(
        node.http
            .post(node.url("/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    )
    .await
}

/// A session with a refresh token, created on `node`.
async fn login(node: &TestServer, subject: &str) -> (String, String, String) {
    let s = node.create(json!({"subject": subject, "tokens": {}})).await;
    let rt = s.resp.json()["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    (s.handle, s.token, rt)
}

fn count(events: &[Value], handle: &str, kind: &str) -> usize {
    events
        .iter()
        .filter(|e| e["kind"] == kind && e["handle"] == handle)
        .count()
}

/// RT-11 across nodes: 16 concurrent refreshes of one refresh token, spread
/// over three nodes. Inside the grace window every one gets the same
/// successor and one rotation is recorded; with grace 0 exactly one
/// succeeds, the replays are reuse (SPEC §1) and end the session, which
/// every node then refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_spread_over_three_nodes_rotate_once() {
    let nodes = three_nodes(&deployment("rt"), &[]).await;
    let (handle, token, rt) = login(&nodes[0], "rt-grace").await;
    let results = join_all((0..16).map(|i| refresh(&nodes[i % 3], &rt))).await;
    let mut successors = BTreeSet::new();
    for r in &results {
        assert_eq!(r.status, 200, "inside the grace window: {}", r.text());
        successors.insert(r.json()["refresh_token"].as_str().expect("rt").to_owned());
    }
    assert_eq!(successors.len(), 1, "one successor for all: {successors:?}");
    let events = nodes[1].all_events("&subject=rt-grace").await;
    assert_eq!(count(&events, &handle, "refreshed"), 1, "{events:?}");
    assert_eq!(count(&events, &handle, "refresh_token_reuse"), 0);
    for n in &nodes {
        n.assert_verifies(&token).await;
    }
    for n in nodes {
        n.finish().await;
    }

    let nodes = three_nodes(&deployment("rt0"), &[("TESSERA_REFRESH_REUSE_GRACE_SECS", "0")]).await;
    let (handle, token, rt) = login(&nodes[0], "rt-strict").await;
    for n in &nodes {
        n.assert_verifies(&token).await;
    }
    let results = join_all((0..16).map(|i| refresh(&nodes[i % 3], &rt))).await;
    let won: Vec<_> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        won.len(),
        1,
        "grace 0: one success: {:?}",
        results.iter().map(|r| (r.status, r.text())).collect::<Vec<_>>()
    );
    for r in results.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"], "invalid_grant");
    }
    let events = nodes[2].all_events("&subject=rt-strict").await;
    assert_eq!(count(&events, &handle, "refreshed"), 1, "{events:?}");
    assert!(count(&events, &handle, "refresh_token_reuse") >= 1, "{events:?}");
    // The reuse ended the session: no node still serves its cached copy.
    let start = Instant::now();
    for n in &nodes {
        refused_within_bound(n, &token, "session_revoked", start, start).await;
    }
    for n in nodes {
        n.finish().await;
    }
}

async fn me(app: &Router, token: &str) -> (StatusCode, String) {
    let req = Request::get("/me")
        .header("host", "app.example")
        .header("cookie", format!("__Host-tessera={token}"))
        .body(Body::empty())
        .expect("request");
    let r = app.clone().oneshot(req).await.expect("infallible");
    let status = r.status();
    let body = r.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The library's browser layer, in an axum app on the same Redis prefix as
/// the service: a session created through the service works there from
/// the cookie the service made, and a revocation through the service is
/// refused by the app within the bound (the app caches sessions too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_layer_on_redis_shares_sessions_with_the_service() {
    let url = deployment("lib");
    let svc = TestServer::start(Opts::default().store(&url)).await;
    let store = tessera_redis::RedisStore::connect(&url).await.expect("connect");
    assert!(store.wait_cache_live(Duration::from_secs(5)).await);
    let layer = SessionLayer::new(
        Sessions::new(
            Arc::new(store.clone()),
            Arc::new(SystemClock),
            SessionPolicy::default(),
        ),
        CookieConfig::default(),
    );
    let app = Router::new()
        .route(
            "/me",
            get(|RequireSession(s): RequireSession| async move { s.subject().unwrap_or_default() }),
        )
        .layer(layer);

    let s = svc.create(json!({"subject": "grace"})).await;
    let (name, value, _) = parse_set_cookie(&s.cookie);
    assert_eq!(name, "__Host-tessera", "the service's cookie: {}", s.cookie);
    assert_eq!(value, s.token);
    let value = value.as_str();
    for _ in 0..3 {
        assert_eq!(me(&app, value).await, (StatusCode::OK, "grace".into()));
    }
    assert!(
        store.cache_stats().expect("on").hits >= 1,
        "the app served it from its cache"
    );

    let start = Instant::now();
    svc.post("/v1/sessions/revoke", &json!({"session_token": s.token}))
        .await
        .assert_status(204);
    loop {
        let (status, _) = me(&app, value).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            start.elapsed() < BOUND,
            "the app still accepts it after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(POLL).await;
    }
    println!(
        "revoked through the service, refused by the library app after {:?}",
        start.elapsed()
    );
    svc.finish().await;
}
