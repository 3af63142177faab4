//! Benchmark of the revocation feed's snapshot (`GET /v1/revocations`
//! without `after`, then its further pages), in process, on a SQLite store:
//!
//! ```text
//! cargo run --release -p tessera-server --example feed_snapshot
//! cargo run --release -p tessera-server --example feed_snapshot -- --events 1000000 --revocations 100000
//! ```
//!
//! The store gets `--events` events (default 1 000 000) spread evenly over
//! the last five minutes, every n-th of them a revocation so that there are
//! `--revocations` (default 100 000): a "sign everyone out" in the middle of
//! refresh traffic, the worst case for the snapshot, since every one of
//! those revocations is still inside the window (revoked_at + access-token
//! TTL 300 s + 60 s ahead) and must be listed. The handler is then called
//! page by page, as the library's follower does (`after=next` while `more`),
//! each answer serialized to JSON as it would be sent, and the time of each
//! page, its size and the totals are printed. A second pass moves the clock
//! to where only the last 1 % of the window is still live, to show that the
//! snapshot reads the window, not the log.
//!
//! The handler is called directly (no HTTP, no API-key check): what is
//! measured is the store reads and the answer, which is what grows with the
//! log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_core::{CreateOptions, EventKind, ManualClock, NewEvent, RevokeReason, Store, Timestamp};
use tessera_server::handlers::revocations::{FeedQuery, feed};
use tessera_server::{Config, extract::Query};
use tessera_sqlite::{SqliteOptions, SqliteStore};

/// Events appended per store call (one transaction).
const CHUNK: usize = 10_000;
/// The window the events are spread over.
const SPREAD_SECS: i64 = 300;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn session(i: usize, at: Timestamp) -> tessera_core::SessionRecord {
    let mut hash = [0u8; 32];
    hash[..8].copy_from_slice(&(i as u64).to_be_bytes());
    tessera_core::SessionRecord {
        handle: format!("ses_bench{i:034}"),
        token_hash: tessera_core::TokenHash(hash),
        subject: format!("user-{}", i % 1000),
        version: 0,
        created_at: at,
        last_seen_at: at,
        idle_timeout_ms: 3_600_000,
        idle_expires_at: at.plus_secs(3600),
        absolute_expires_at: at.plus_secs(3600),
        auth: tessera_core::AuthInfo {
            level: 1,
            methods: vec!["pwd".into()],
            time: at,
        },
        device: tessera_core::DeviceInfo {
            user_agent: None,
            ip: None,
            label: "bench".into(),
        },
        data: serde_json::Map::new(),
        binding: None,
        revoked: None,
    }
}

struct Pass {
    pages: Vec<(Duration, usize, usize)>,
    total: Duration,
}

async fn snapshot(state: &tessera_server::AppState) -> Pass {
    let mut after: Option<String> = None;
    let mut pages = Vec::new();
    let started = Instant::now();
    loop {
        let t = Instant::now();
        let q = FeedQuery {
            after: after.clone(),
            wait: None,
        };
        let body = match feed(axum::extract::State(state.clone()), Query(q)).await {
            Ok(axum::Json(body)) => body,
            Err(e) => panic!("feed failed: {e:?}"),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        pages.push((t.elapsed(), body.revocations.len(), bytes.len()));
        if !body.more {
            break;
        }
        after = Some(body.next);
    }
    Pass {
        pages,
        total: started.elapsed(),
    }
}

fn report(name: &str, pass: &Pass) {
    let mut times: Vec<Duration> = pass.pages.iter().map(|p| p.0).collect();
    times.sort();
    let pct = |q: f64| {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        times[i].as_secs_f64() * 1000.0
    };
    let items: usize = pass.pages.iter().map(|p| p.1).sum();
    let bytes = pass.pages.iter().map(|p| p.2).max().unwrap_or(0);
    let biggest = pass.pages.iter().map(|p| p.1).max().unwrap_or(0);
    let first = pass.pages.first().map_or(0.0, |p| p.0.as_secs_f64() * 1000.0);
    println!(
        "{name}: {items} revocations in {} pages (at most {biggest} per page, largest body {:.0} KiB), \
         snapshot {:.1} ms; per page: first {first:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pass.pages.len(),
        bytes as f64 / 1024.0,
        pass.total.as_secs_f64() * 1000.0,
        pct(0.5),
        pct(0.99),
        pct(1.0),
    );
    println!(
        "RESULT pass={name} revocations={items} pages={} page_max={biggest} page_max_bytes={bytes} snapshot_ms={:.1} page_p50_ms={:.2} page_max_ms={:.2}",
        pass.pages.len(),
        pass.total.as_secs_f64() * 1000.0,
        pct(0.5),
        pct(1.0)
    );
}

#[tokio::main]
async fn main() {
    let events = arg("--events", 1_000_000);
    let revocations = arg("--revocations", 100_000).clamp(1, events);
    let every = events / revocations;
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let store: Arc<dyn Store> = match SqliteStore::open(dir.path().join("feed.db"), SqliteOptions::default())
    {
        Ok(s) => Arc::new(s),
        Err(e) => panic!("open: {e}"),
    };
    let now = Timestamp::from_unix_secs(1_800_000_000);
    let start = now.plus_secs(-SPREAD_SECS);
    // Event i happens i/events of the way through the spread.
    let at_of = |i: usize| start.plus_millis(SPREAD_SECS * 1000 * i as i64 / events as i64);

    let filled = Instant::now();
    let mut written = 0usize;
    let mut revoked = 0usize;
    let mut chunk_no = 0usize;
    while written < events {
        let n = CHUNK.min(events - written);
        let at0 = at_of(written);
        let rec = session(chunk_no, at0);
        let batch: Vec<NewEvent> = (0..n)
            .map(|k| {
                let i = written + k;
                let at = at_of(i);
                let mut e = if i % every == every - 1 && revoked < revocations {
                    revoked += 1;
                    NewEvent::revoked(&rec, RevokeReason::RevokeAll, at)
                } else {
                    NewEvent::new(EventKind::Refreshed, &rec, at)
                };
                // One handle per revocation, as a mass sign-out has.
                e.handle = format!("ses_{i:040}");
                e
            })
            .collect();
        if let Err(e) = store.create(&rec, &CreateOptions::default(), &batch).await {
            panic!("fill: {e}");
        }
        written += n;
        chunk_no += 1;
    }
    println!(
        "filled {written} events ({revoked} revocations) in {:.1} s",
        filled.elapsed().as_secs_f64()
    );

    let clock = ManualClock::new(now);
    let config = Config {
        store: Some("memory://".into()),
        ..Config::default()
    };
    let app = tessera_server::app::build_with_clock(config, store.clone(), Arc::new(clock.clone()));

    // Warm the page cache once (a running service has it warm), then measure.
    snapshot(&app.state).await;
    let full = snapshot(&app.state).await;
    report("all_live", &full);

    // Only the last 1 % of the spread still live: 357 s later the window
    // (TTL 300 s + 60 s) starts 3 s before the old "now".
    clock.set(now.plus_secs(357));
    let cursor = Instant::now();
    let c = store
        .events_cursor_since(EventKind::Revoked, now.plus_secs(-3))
        .await;
    println!(
        "events_cursor_since(revoked, now - 3 s) = {c:?} in {:.2} ms",
        cursor.elapsed().as_secs_f64() * 1000.0
    );
    let tail = snapshot(&app.state).await;
    report("last_1pct_live", &tail);
}
