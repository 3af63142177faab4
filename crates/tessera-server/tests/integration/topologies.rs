//! The service on a Redis Cluster (`--store redis+cluster://…`) and
//! through Sentinel (`--store redis+sentinel://…`), started by the Redis
//! store's test support.

use serde_json::json;

use crate::harness::{Opts, TestServer};

async fn create_verify_revoke(srv: &TestServer) {
    srv.get("/readyz").await.assert_status(200);
    let a = srv.create(json!({"subject": "rui", "data": {"n": 1}})).await;
    let b = srv.create(json!({"subject": "rui"})).await;
    assert_eq!(srv.assert_verifies(&a.token).await["data"], json!({"n": 1}));
    srv.post("/v1/sessions/revoke", &json!({"session_token": b.token}))
        .await
        .assert_status(204);
    srv.verify(&b.token).await.assert_problem(401, "session_revoked");
    let jwks = srv.get("/.well-known/jwks.json").await.json();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
}

#[tokio::test]
async fn the_service_runs_on_a_redis_cluster() {
    let cluster = tessera_redis::testing::cluster();
    let url = format!("{}?prefix=svc-cluster-{}", cluster.url(), std::process::id());
    let srv = TestServer::start(Opts::default().store(&url)).await;
    create_verify_revoke(&srv).await;
    srv.finish().await;
}

#[tokio::test]
async fn the_service_runs_through_sentinel() {
    let sentinel = tessera_redis::testing::start_sentinel();
    let url = format!("{}?prefix=svc-sentinel", sentinel.url());
    let srv = TestServer::start(Opts::default().store(&url)).await;
    create_verify_revoke(&srv).await;
    srv.finish().await;
}
