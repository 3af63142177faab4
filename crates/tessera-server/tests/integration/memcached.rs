//! The service on a `memcached://` store: fail closed while memcached is
//! down (503 `store_unavailable`, `/readyz` fails), recover by itself when
//! it is back (empty: memcached keeps nothing), refuse to start while it
//! is down, and two nodes on one memcached where a revocation through one is refused by
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

/// The service reads the store at start (signing keys, the bootstrap API
/// key): with memcached down it stops at once with a clear error instead of
/// serving half set up (its supervisor starts it again once memcached is
/// up; the store itself opens lazily and recovers by itself, as the test
/// above shows).
#[test]
fn the_service_refuses_to_start_while_memcached_is_down() {
    let port = memcached::private_server().stop();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--store")
        .arg(format!("memcached://127.0.0.1:{port}?prefix=late:"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tessera");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tessera serve kept running with memcached down");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!status.success(), "{text}");
    assert!(text.contains("store unavailable"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
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
