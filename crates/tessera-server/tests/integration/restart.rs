//! Durability across restarts and crashes, and graceful shutdown.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Opts, TestServer, send_signal};

/// Sessions, revocations, data and events survive a graceful restart.
#[tokio::test]
async fn sessions_survive_graceful_restart() {
    let mut srv = TestServer::start(Opts::default()).await;
    let a = srv
        .create(
            json!({"subject": "quinn", "data": {"n": 1}, "auth": {"level": 2, "methods": ["pwd", "otp"]}}),
        )
        .await;
    let b = srv.create(json!({"subject": "quinn"})).await;
    srv.post("/v1/sessions/revoke", &json!({"session_token": b.token}))
        .await
        .assert_status(204);
    srv.patch(&format!("/v1/sessions/{}", a.handle), &json!({"data": {"m": 2}}))
        .await
        .assert_status(200);
    let events_before = srv.all_events("").await;

    srv.stop().await;
    srv.restart().await;

    let v = srv.assert_verifies(&a.token).await;
    assert_eq!(v["handle"], a.handle);
    assert_eq!(v["data"], json!({"n": 1, "m": 2}));
    assert_eq!(v["auth"]["level"], 2);
    assert_eq!(v["absolute_expires_at"], a.session["absolute_expires_at"]);
    srv.verify(&b.token).await.assert_problem(401, "session_revoked");
    let events_after = srv.all_events("").await;
    assert_eq!(events_after, events_before, "the audit log survives as it was");
    // New events continue after the old ids.
    let c = srv.create(json!({"subject": "quinn"})).await;
    let all = srv.all_events("").await;
    assert_eq!(all.len(), events_before.len() + 1);
    assert_eq!(all.last().unwrap()["handle"], c.handle.as_str());
    srv.finish().await;
}

/// Acknowledged ⇒ durable: a 201 followed at once by SIGKILL loses nothing,
/// and a session revoked before the crash stays revoked.
#[tokio::test]
async fn kill9_after_ack_is_durable() {
    let mut srv = TestServer::start(Opts::default()).await;
    let revoked = srv.create(json!({"subject": "rita"})).await;
    srv.post("/v1/sessions/revoke", &json!({"session_token": revoked.token}))
        .await
        .assert_status(204);
    let elevated = srv.create(json!({"subject": "rita"})).await;
    let r = srv
        .post(
            "/v1/sessions/elevate",
            &json!({"session_token": elevated.token, "auth": {"level": 3}}),
        )
        .await;
    r.assert_status(200);
    let elevated_token = r.json()["session_token"].as_str().unwrap().to_owned();
    // A burst of acknowledged creates, then SIGKILL straight after the last 201.
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push(srv.create(json!({"subject": "rita", "data": {"i": i}})).await);
    }
    srv.kill9().await;
    srv.restart().await;

    for (i, c) in acked.iter().enumerate() {
        let v = srv.assert_verifies(&c.token).await;
        assert_eq!(v["data"], json!({"i": i}));
    }
    srv.verify(&revoked.token)
        .await
        .assert_problem(401, "session_revoked");
    srv.verify(&elevated.token)
        .await
        .assert_problem(401, "session_invalid");
    let v = srv.assert_verifies(&elevated_token).await;
    assert_eq!(v["auth"]["level"], 3);
    srv.finish().await;
}

/// SIGTERM with an idle keep-alive connection open: exits 0 promptly.
#[tokio::test]
async fn sigterm_exits_cleanly_and_promptly() {
    let mut srv = TestServer::start(Opts::default()).await;
    // Leave a pooled keep-alive connection open in the client.
    srv.create(json!({"subject": "sam"})).await;
    let t = Instant::now();
    let status = srv.stop_within(Duration::from_secs(5)).await;
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}; log:\n{}",
        srv.logs()
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    srv.assert_logs_clean();
}

/// SIGINT (Ctrl-C) is a graceful stop too.
#[tokio::test]
async fn sigint_exits_cleanly() {
    let mut srv = TestServer::start(Opts::default()).await;
    srv.create(json!({"subject": "sam"})).await;
    send_signal(srv.pid(), "INT");
    let status = srv.stop_within_after_signal(Duration::from_secs(5)).await;
    assert!(
        status.success(),
        "exit status after SIGINT: {status}; log:\n{}",
        srv.logs()
    );
    srv.assert_logs_clean();
}

/// Graceful shutdown finishes in-flight requests: a request whose body is
/// still arriving when SIGTERM lands is answered in full (201, and the
/// session exists after a restart), then the process exits 0.
#[tokio::test]
async fn sigterm_finishes_in_flight_request() {
    let mut srv = TestServer::start(Opts::default()).await;
    let body = serde_json::to_vec(&json!({"subject": "tina", "data": {"slow": true}})).unwrap();
    let head = format!(
        "POST /v1/sessions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        srv.addr,
        srv.api_key,
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.split_at(10);
    s.write_all(first).await.unwrap();
    s.flush().await.unwrap();
    // Let the server dispatch the request, then ask it to stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    send_signal(srv.pid(), "TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.write_all(rest)
        .await
        .expect("server closed an in-flight request on SIGTERM");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("read response");
    let text = String::from_utf8_lossy(&buf).into_owned();
    srv.note_secrets(&text);
    assert!(
        text.starts_with("HTTP/1.1 201"),
        "in-flight request answered in full, got {text:?}; log:\n{}",
        srv.logs()
    );
    let status = srv.stop_within_after_signal(Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status}");
    let token = crate::harness::find_secrets(&text)
        .into_iter()
        .find(|t| t.starts_with("tss_"))
        .expect("token in the 201");
    srv.restart().await;
    let v = srv.assert_verifies(&token).await;
    assert_eq!(v["data"], json!({"slow": true}));
    srv.finish().await;
}
