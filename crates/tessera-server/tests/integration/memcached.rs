//! The service on a `memcached://` store: fail closed while memcached is
//! down (503 `store_unavailable`, `/readyz` fails), recover by itself when
//! it is back (empty: memcached keeps nothing), start while it is down and
//! finish the start once it is up, and two nodes on one memcached where a revocation through one is refused by
//! the other on its very next request (no cache in the process).

use std::time::{Duration, Instant};

use serde_json::json;
use tessera_memcached::testing as memcached;

use crate::harness::{Opts, Resp, TestServer, free_port};

/// The recovery the service promises once memcached answers again.
const RECOVERY: Duration = Duration::from_secs(2);

fn on(url: &str, prefix: &str) -> Opts {
    Opts::default().store(&format!("{url}?prefix={prefix}-{}:", std::process::id()))
}

async fn forward(srv: &TestServer, token: &str) -> Resp {
    srv.send_any(
        srv.req(reqwest::Method::GET, "/auth/verify")
            .header("Cookie", format!("__Host-tessera={token}"))
            .header("X-Forwarded-Method", "GET"),
    )
    .await
}

async fn verify(srv: &TestServer, token: &str) -> Resp {
    srv.send_any(
        srv.req(reqwest::Method::POST, "/v1/sessions/verify")
            .json(&json!({"session_token": token})),
    )
    .await
}

/// Polls until `/readyz` answers 200 and `check` holds; how long it took.
async fn recovery(srv: &TestServer, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if srv
            .send_any(srv.req(reqwest::Method::GET, "/readyz"))
            .await
            .status
            == 200
            && check().await
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no recovery within 10 s; log:\n{}",
            srv.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn memcached_down_is_503_and_back_empty_the_service_recovers_by_itself() {
    let server = memcached::private_server();
    let srv = TestServer::start(on(&server.url(), "down")).await;
    let s = srv.create(json!({"subject": "olga"})).await;
    srv.assert_verifies(&s.token).await;

    let port = server.stop();
    // No cache: the very next request fails closed.
    verify(&srv, &s.token)
        .await
        .assert_problem(503, "store_unavailable");
    let r = forward(&srv, &s.token).await;
    assert_eq!(r.status, 503, "forward auth fails closed: {}", r.text());
    srv.send_any(srv.req(reqwest::Method::GET, "/readyz"))
        .await
        .assert_problem(503, "store_unavailable");
    srv.get("/healthz").await.assert_status(200);

    let _server = memcached::start_on(Some(port), "");
    let took = recovery(&srv, async || forward(&srv, &s.token).await.status != 503).await;
    eprintln!("recovered {took:?} after memcached came back (empty)");
    assert!(took < RECOVERY, "recovery took {took:?}");
    // memcached lost everything: the session is gone.
    forward(&srv, &s.token).await.assert_status(401);
    assert!(!srv.logs().contains("panicked"), "{}", srv.logs());
    srv.finish().await;
}

/// Containers start in any order: with memcached down the service starts
/// anyway, `/healthz` answers, `/readyz` and every request that needs the
/// store answer 503; once memcached is up the service finishes its start
/// by itself (the bootstrap API key of the empty store, the first signing
/// key) and serves sessions and tokens. Before, it exited at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_starts_while_memcached_is_down_and_finishes_once_it_is_up() {
    let port = memcached::private_server().stop();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let listen = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{listen}"))
        .arg("--store")
        .arg(format!(
            "memcached://127.0.0.1:{port}?prefix=late:&timeout_ms=300&connect_timeout_ms=300"
        ))
        .arg("--data-dir")
        .arg(&data)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tessera");
    let base = format!("http://127.0.0.1:{listen}");
    let http = reqwest::Client::new();
    let status = |path: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.get(format!("{base}{path}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while status("/healthz").await != 200 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "tessera exited with memcached down"
        );
        assert!(Instant::now() < deadline, "/healthz never answered");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status("/readyz").await, 503, "not ready while the store is down");
    let r = http
        .post(format!("{base}/v1/sessions/verify"))
        .bearer_auth("tsk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .json(&json!({"session_token": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        503,
        "requests that need the store fail closed"
    );
    assert!(!data.join("bootstrap-api-key").exists());

    let _memcached = memcached::start_on(Some(port), "");
    let deadline = Instant::now() + Duration::from_secs(15);
    while status("/readyz").await != 200 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "tessera exited once memcached came up"
        );
        assert!(Instant::now() < deadline, "never ready after memcached came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let key = std::fs::read_to_string(data.join("bootstrap-api-key"))
        .expect("the bootstrap key, made once the store answered");
    let r = http
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(key.trim())
        .json(&json!({"subject": "late", "tokens": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["access_token"].as_str().is_some_and(|t| t.contains('.')),
        "signing keys ready: {body}"
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn two_nodes_on_one_memcached_a_revocation_through_one_is_refused_by_the_other_at_once() {
    let url = memcached::server_url();
    // Every node needs the same key-encryption key.
    let opts = on(&url, "two").env(
        "TESSERA_KEYS_ENCRYPTION_KEY",
        "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtb2Yta2V5ISE",
    );
    let a = TestServer::start(opts.clone()).await;
    let b = TestServer::start(opts.api_key(&a.api_key.clone())).await;
    for i in 0..10 {
        let s = a.create(json!({"subject": format!("user-{i}")})).await;
        b.assert_verifies(&s.token).await;
        a.assert_verifies(&s.token).await;
        b.post("/v1/sessions/revoke", &json!({"session_token": s.token}))
            .await
            .assert_status(204);
        // The first request after the revocation is refused: nothing to wait for.
        a.verify(&s.token).await.assert_problem(401, "session_revoked");
        forward(&a, &s.token).await.assert_status(401);
    }
    a.finish().await;
    b.finish().await;
}
