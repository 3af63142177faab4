//! The service on the Redis store (`--store redis://…`), against a private
//! `redis-server`.

use serde_json::json;

use crate::harness::{Opts, TestServer};

/// Create, verify, revoke and the event log through the HTTP API on
/// Redis; after a restart of the service everything is still there
/// (Redis, not the process, holds it), and `/readyz` reports the store.
#[tokio::test]
async fn the_service_runs_on_redis_and_keeps_its_sessions_across_restarts() {
    let redis = tessera_redis::testing::server();
    let url = format!("{}?prefix=svc-{}", redis.url(), std::process::id());
    let mut srv = TestServer::start(Opts::default().store(&url)).await;
    srv.get("/readyz").await.assert_status(200);
    let a = srv
        .create(json!({"subject": "quinn", "data": {"theme": "dark"}}))
        .await;
    let b = srv.create(json!({"subject": "quinn"})).await;
    let v = srv.assert_verifies(&a.token).await;
    assert_eq!(v["handle"], a.handle);
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
