//! Cluster-wide duties done once: several `tessera serve` processes on one
//! Redis create one bootstrap API key and one signing-key set between
//! them, rotate once, and sweep one at a time, a dead sweeper being taken
//! over once its lease runs out.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Opts, TestServer};

/// One key-encryption key for every node: nodes sharing a store must
/// share it (docs/configuration.md, `[keys] encryption_key`).
const KEK: &str = "dGVzc2VyYS1kdXRpZXMtdGVzdC1rZXktMzItYnl0ZXM";

/// A node on a fresh prefix `name` of the test binary's private Redis.
fn node(name: &str) -> Opts {
    let redis = tessera_redis::testing::server();
    let url = format!("{}?prefix={name}-{}", redis.url(), std::process::id());
    Opts::default()
        .store(&url)
        .joining()
        .env("TESSERA_KEYS_ENCRYPTION_KEY", KEK)
}

async fn jwks(srv: &TestServer) -> Value {
    let r = srv.get("/.well-known/jwks.json").await;
    r.assert_status(200);
    r.json()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// The bootstrap key of whichever node wrote it, given to both.
fn share_bootstrap_key(a: &mut TestServer, b: &mut TestServer) {
    let key = [&*a, &*b]
        .iter()
        .find(|s| s.bootstrap_key_path().exists())
        .map(|s| s.api_key.clone())
        .expect("one node wrote the bootstrap key");
    for s in [&mut *a, &mut *b] {
        s.note_secrets(&key);
        s.api_key.clone_from(&key);
    }
}

/// Two nodes started at the same instant on an empty Redis: one bootstrap
/// API key (in the data directory of the node that created it), one first
/// signing key, the same JWKS on both, and a session made on one works on
/// the other.
#[tokio::test]
async fn two_nodes_started_together_on_an_empty_redis_share_one_key_set_and_one_bootstrap_key() {
    let opts = node("pair");
    let (mut a, mut b) = tokio::join!(TestServer::start(opts.clone()), TestServer::start(opts));
    let files = [a.bootstrap_key_path().exists(), b.bootstrap_key_path().exists()];
    assert_eq!(
        files.iter().filter(|f| **f).count(),
        1,
        "exactly one node writes a bootstrap key: {files:?}\n{}\n{}",
        a.logs(),
        b.logs()
    );
    share_bootstrap_key(&mut a, &mut b);
    let (st, list, err) = a.cli(&["api-keys", "list"]);
    assert!(st.success(), "{err}");
    assert_eq!(
        list.lines().filter(|l| l.contains("bootstrap")).count(),
        1,
        "one bootstrap key in the store:\n{list}"
    );
    let other = if files[0] { &b } else { &a };
    assert!(
        other.logs().contains("the store already has API keys"),
        "the other node says where the key is:\n{}",
        other.logs()
    );

    let (ja, jb) = (jwks(&a).await, jwks(&b).await);
    assert_eq!(kids(&ja).len(), 1, "one signing key: {ja}");
    assert_eq!(ja, jb, "both nodes publish the same key set");

    let s = a.create(json!({"subject": "pat"})).await;
    b.assert_verifies(&s.token).await;
    a.finish().await;
    b.finish().await;
}

/// A rotation due on two nodes at once is done once: the set grows by one
/// key, the same on both.
#[tokio::test]
async fn a_rotation_due_on_two_nodes_happens_once() {
    // The first key is due for succession 3 s after it activates
    // (rotation 60 s, 57 s of pre-publication); both nodes check every second.
    let opts = node("rotate")
        .env("TESSERA_KEYS_ROTATION_INTERVAL_SECS", "60")
        .env("TESSERA_KEYS_PREPUBLISH_SECS", "57")
        .env("TESSERA_KEYS_RELOAD_INTERVAL_SECS", "1")
        .env("TESSERA_OAUTH_JWKS_MAX_AGE_SECS", "5");
    let (mut a, mut b) = tokio::join!(TestServer::start(opts.clone()), TestServer::start(opts));
    share_bootstrap_key(&mut a, &mut b);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (ja, jb) = (jwks(&a).await, jwks(&b).await);
        if kids(&ja).len() >= 2 && kids(&jb).len() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no rotation within 15 s: {ja} {jb}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several more rounds on both: still one successor.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ja, jb) = (jwks(&a).await, jwks(&b).await);
    assert_eq!(kids(&ja).len(), 2, "one rotation, not one per node: {ja}");
    assert_eq!(ja, jb);
    let rotated = [a.logs(), b.logs()]
        .iter()
        .map(|l| l.matches("signing key rotated").count())
        .sum::<usize>();
    assert_eq!(rotated, 1, "{}\n{}", a.logs(), b.logs());
    a.finish().await;
    b.finish().await;
}

/// `duty` as logged when a node takes it over.
fn took(srv: &TestServer, duty: &str) -> bool {
    srv.logs()
        .lines()
        .any(|l| l.contains("now does this cluster-wide duty") && l.contains(&format!("duty={duty}")))
}

/// How many times this node called the store's sweep (its metrics).
async fn sweeps(srv: &TestServer) -> u64 {
    let text = srv.get("/metrics").await.text();
    text.lines()
        .find(|l| {
            l.starts_with("tessera_store_operation_duration_seconds_count") && l.contains("op=\"sweep\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn wait_for(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

/// The sweep (expired sessions, event retention, sealed successors) runs
/// on one node at a time: the first to take its lease keeps it while it
/// lives; killed, it is replaced once its lease (3 sweep intervals) runs
/// out; stopped gracefully, it hands over at once.
#[tokio::test]
async fn one_node_sweeps_and_another_takes_over_when_it_dies() {
    let opts = node("sweep").env("TESSERA_SWEEPER_INTERVAL_SECS", "1");
    let mut a = TestServer::start(opts.clone()).await;
    wait_for("A takes the sweep", Duration::from_secs(5), async || {
        took(&a, "sweep")
    })
    .await;
    let mut b = TestServer::start(opts.clone()).await;
    share_bootstrap_key(&mut a, &mut b);
    // Three of B's rounds: A sweeps, B never does.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!took(&b, "sweep"), "{}", b.logs());
    assert_eq!(sweeps(&b).await, 0, "B never swept");
    assert!(sweeps(&a).await >= 2, "A sweeps every second");

    a.kill9().await;
    let taken = wait_for(
        "B takes over from the killed A",
        Duration::from_secs(8),
        async || took(&b, "sweep"),
    )
    .await;
    eprintln!("sweep lease taken over {taken:?} after its holder was killed (lease 3 s, interval 1 s)");
    wait_for("B sweeps", Duration::from_secs(3), async || sweeps(&b).await > 0).await;

    // A graceful stop releases the lease: C takes over at its next round.
    let mut c = TestServer::start(opts).await;
    share_bootstrap_key(&mut a, &mut c);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!took(&c, "sweep"));
    b.stop().await;
    let handed = wait_for(
        "C takes over from the stopped B",
        Duration::from_secs(3),
        async || took(&c, "sweep"),
    )
    .await;
    eprintln!("sweep lease handed over {handed:?} after its holder stopped");
    c.finish().await;
}
