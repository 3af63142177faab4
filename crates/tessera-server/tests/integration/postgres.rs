//! The service on the PostgreSQL store (`--store postgres://…`), against
//! the test server of `tessera_postgres::testing` (a private cluster, or
//! `TESSERA_TEST_POSTGRES_URL`): sessions survive a restart of the
//! service, two nodes on one database see each other's revocations within
//! 100 ms, and a database that stops gives 503 `store_unavailable` until
//! it is back.

use std::time::{Duration, Instant};

use serde_json::json;
use tessera_postgres::testing as pg;

use crate::harness::{Opts, Resp, TestServer};

/// The bound SPEC §4.6 sets for a change to reach every node.
const BOUND: Duration = Duration::from_millis(100);

/// The key-encryption key every node of a deployment shares.
const KEK: &str = "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtb2Yta2V5ISE";

async fn get(srv: &TestServer, path: &str) -> Resp {
    srv.send_any(srv.req(reqwest::Method::GET, path)).await
}

/// `POST /v1/sessions/verify`, whatever it answers.
async fn verify(srv: &TestServer, token: &str) -> Resp {
    srv.send_any(
        srv.req(reqwest::Method::POST, "/v1/sessions/verify")
            .json(&json!({"session_token": token})),
    )
    .await
}

/// Create, verify, revoke and the event log through the HTTP API on
/// PostgreSQL; after a restart of the service everything is still there.
#[tokio::test]
async fn the_service_runs_on_postgres_and_keeps_its_sessions_across_restarts() {
    let mut srv = TestServer::start(Opts::default().store(&pg::fresh_url())).await;
    srv.get("/readyz").await.assert_status(200);
    let a = srv
        .create(json!({"subject": "quinn", "data": {"theme": "dark"}}))
        .await;
    let b = srv.create(json!({"subject": "quinn"})).await;
    let v = srv.assert_verifies(&a.token).await;
    assert_eq!(v["data"], json!({"theme": "dark"}));
    srv.post("/v1/sessions/revoke", &json!({"session_token": b.token}))
        .await
        .assert_status(204);
    srv.verify(&b.token).await.assert_problem(401, "session_revoked");
    let events = srv.all_events("").await;
    assert_eq!(events.len(), 3, "two created, one revoked: {events:?}");

    srv.stop().await;
    srv.restart().await;
    let v = srv.assert_verifies(&a.token).await;
    assert_eq!(v["data"], json!({"theme": "dark"}));
    srv.verify(&b.token).await.assert_problem(401, "session_revoked");
    assert_eq!(srv.all_events("").await, events);
    srv.finish().await;
}

/// Two services on one database: a session created on A and revoked
/// through B is refused by A within 100 ms (every verify reads the
/// database; there is no cache to invalidate). 20 trials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_revocation_through_one_node_is_refused_by_the_other_within_100ms() {
    let url = pg::fresh_url();
    let opts = Opts::default()
        .store(&url)
        .env("TESSERA_KEYS_ENCRYPTION_KEY", KEK);
    let a = TestServer::start(opts.clone()).await;
    let b = TestServer::start(opts.api_key(&a.api_key)).await;
    let mut took = Vec::new();
    for i in 0..20 {
        let s = a.create(json!({"subject": format!("n{i}")})).await;
        a.assert_verifies(&s.token).await;
        b.assert_verifies(&s.token).await;
        let start = Instant::now();
        b.post("/v1/sessions/revoke", &json!({"session_token": s.token}))
            .await
            .assert_status(204);
        loop {
            let r = a.verify(&s.token).await;
            if r.status == 401 {
                r.assert_problem(401, "session_revoked");
                break;
            }
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(
                start.elapsed() < BOUND * 5,
                "still accepted after {:?}",
                BOUND * 5
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let t = start.elapsed();
        assert!(t < BOUND, "refused on A after {t:?}, over {BOUND:?}");
        took.push(t);
    }
    took.sort();
    println!(
        "revoked through B, refused on A: p50 {:?}, max {:?} over {} trials",
        took[took.len() / 2],
        took[took.len() - 1],
        took.len()
    );
    a.finish().await;
    b.finish().await;
}

/// PostgreSQL stopped: verification answers 503 `store_unavailable` and
/// `/readyz` fails while `/healthz` answers; started again, the service
/// answers again by itself, with its sessions.
#[tokio::test]
async fn postgres_down_is_503_and_back_up_the_service_recovers_by_itself() {
    let server = pg::private_server();
    let url = format!(
        "{}?connect_timeout_ms=500&statement_timeout_ms=2000",
        server.url()
    );
    let srv = TestServer::start(Opts::default().store(&url)).await;
    let s = srv.create(json!({"subject": "olga"})).await;
    srv.assert_verifies(&s.token).await;

    let stopped = server.stop();
    verify(&srv, &s.token)
        .await
        .assert_problem(503, "store_unavailable");
    get(&srv, "/readyz")
        .await
        .assert_problem(503, "store_unavailable");
    srv.get("/healthz").await.assert_status(200);

    let _server = stopped.start_again();
    let start = Instant::now();
    loop {
        if get(&srv, "/readyz").await.status == 200 && verify(&srv, &s.token).await.status == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no recovery within 10 s; log:\n{}",
            srv.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("recovered {:?} after PostgreSQL came back", start.elapsed());
    assert!(!srv.logs().contains("panicked"), "{}", srv.logs());
    srv.finish().await;
}
