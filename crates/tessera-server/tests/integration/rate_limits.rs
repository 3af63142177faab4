//! The abuse limits (GN-04) on the real binary: the listener's peer
//! address is what counts, and on Redis the count is the deployment's,
//! not one node's.

use std::time::Duration;

use reqwest::Method;

use crate::harness::{Opts, TestServer};

const GUESS: &str = "tsk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

async fn guess(node: &TestServer) -> u16 {
    node.send(
        node.http
            .request(Method::GET, node.url("/v1/events"))
            .bearer_auth(GUESS),
    )
    .await
    .status
}

/// Ten failed API keys per minute for the whole deployment: six on A,
/// then (after A's counts reached Redis) four more on B, and the next
/// guess is refused on either node, with `Retry-After`.
#[tokio::test]
async fn gn_04_failed_api_keys_are_counted_across_nodes_on_redis() {
    let url = format!(
        "{}?prefix=limits-{}",
        tessera_redis::testing::server().url(),
        std::process::id()
    );
    let opts = Opts::default()
        .store(&url)
        .env(
            "TESSERA_KEYS_ENCRYPTION_KEY",
            "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtb2Yta2V5ISE",
        )
        .env("TESSERA_RATE_LIMITS_API_KEY_FAILURES_PER_IP", "10/60")
        .env("TESSERA_RATE_LIMITS_SYNC_INTERVAL_MS", "20")
        // The valid key stays known good for the whole test.
        .env("TESSERA_HTTP_API_KEY_CACHE_SECS", "300");
    let a = TestServer::start(opts.clone()).await;
    let b = TestServer::start(opts.api_key(&a.api_key).joining()).await;
    a.get("/v1/events").await.assert_status(200);
    for _ in 0..6 {
        assert_eq!(guess(&a).await, 401);
    }
    // A adds its six within a sync interval; B learns the total when it
    // syncs its own first count.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(guess(&b).await, 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        assert_eq!(guess(&b).await, 401);
    }
    let r = b
        .send(
            b.http
                .request(Method::GET, b.url("/v1/events"))
                .bearer_auth(GUESS),
        )
        .await;
    r.assert_problem(429, "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=61).contains(&retry), "Retry-After {retry}");
    // A knows the others' hits as of its last sync that added some of its
    // own, so it may admit a guess past the limit (the documented
    // overshoot: what one node admits within a sync interval); that
    // guess's sync tells it the total, and it refuses from then on.
    let mut admitted = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match guess(&a).await {
            429 => break,
            401 => admitted += 1,
            other => panic!("{other}"),
        }
        assert!(admitted <= 2, "A admitted {admitted} past the deployment's limit");
    }
    // The valid key, already known good on A, still works from here.
    a.get("/v1/events").await.assert_status(200);
    let metrics = a
        .send(a.http.request(Method::GET, a.url("/metrics")))
        .await
        .text();
    assert!(
        metrics.contains("tessera_rate_limited_total{limit=\"api_key_failures_per_ip\"}"),
        "{metrics}"
    );
    a.finish().await;
    b.finish().await;
}
