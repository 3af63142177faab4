//! Bytes of memcached memory per session, with a refresh-token family
//! each (issue 15, item 2).
//!
//! Starts an empty private `memcached` (as the tests do), creates COUNT
//! sessions through the `Sessions` service — one subject each, data
//! `{"theme":"dark"}`, no device metadata, the default policy — and a
//! refresh family for each through the store, then prints from memcached's
//! own counters: `stats` `bytes` (the items' sizes, memcached's item header
//! included) and `curr_items` before and after, divided by COUNT, and the
//! bytes per kind of key from `lru_crawler metadump all`; then how long
//! `count_active` and a sweep with nothing to delete take at that size.
//!
//! `cargo run -p tessera-memcached --example memory_per_session [-- COUNT]`
#![forbid(unsafe_code)]
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use tessera_core::SessionStore;
use tessera_core::secret::{self, SecretToken, TokenKind};
use tessera_core::{Clock, CreateSession, RefreshFamily, RefreshStore, SessionPolicy, Sessions, SystemClock};
use tessera_memcached::testing::{self as support, text_command};

fn stat(port: u16, command: &str, name: &str) -> i64 {
    text_command(port, command)
        .expect("stats")
        .iter()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in `{command}`"))
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("COUNT is a number"))
        .unwrap_or(10_000);
    // 1 GB so nothing is evicted while measuring.
    let server = support::start_on(None, "-m 1024");
    let port = server.port;
    let prefix = "m:";
    let store = Arc::new(support::store_on(&server.url(), prefix).await);
    let (bytes0, items0) = (stat(port, "stats", "bytes"), stat(port, "stats", "curr_items"));

    let sessions = Sessions::new(store.clone(), Arc::new(SystemClock), SessionPolicy::default());
    let workers = 16;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (sessions, store) = (sessions.clone(), store.clone());
        tasks.spawn(async move {
            let mut i = w;
            while i < count {
                let data = match json!({"theme": "dark"}) {
                    serde_json::Value::Object(m) => m,
                    _ => unreachable!(),
                };
                let issued = sessions
                    .create(CreateSession {
                        subject: format!("user-{i:06}"),
                        data: Some(data),
                        ..CreateSession::default()
                    })
                    .await
                    .expect("create");
                let s = &issued.session;
                let now = SystemClock.now();
                let first = SecretToken::generate(TokenKind::Refresh);
                let family = RefreshFamily {
                    id: secret::new_id("rtf_"),
                    handle: s.handle.clone(),
                    session_token_hash: s.token_hash,
                    client_id: "app".to_owned(),
                    scope: vec!["openid".to_owned(), "profile".to_owned()],
                    audience: vec!["tessera".to_owned()],
                    generation: 0,
                    created_at: now,
                    rotated_at: now,
                    current_sealed: None,
                    binding: None,
                    revoked: None,
                };
                store
                    .create_refresh_family(&family, &first.hash(), &[])
                    .await
                    .expect("create_refresh_family");
                i += workers;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("worker");
    }

    let (bytes1, items1) = (stat(port, "stats", "bytes"), stat(port, "stats", "curr_items"));
    // Bytes per kind of key: `lru_crawler metadump` lists every item with
    // its size (key percent-encoded), one line each.
    let mut by_kind: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for line in text_command(port, "lru_crawler metadump all").unwrap_or_default() {
        let mut key = None;
        let mut size = None;
        for field in line.split_whitespace() {
            if let Some(k) = field.strip_prefix("key=") {
                key = Some(k.to_owned());
            } else if let Some(s) = field.strip_prefix("size=") {
                size = s.parse::<i64>().ok();
            }
        }
        if let (Some(k), Some(sz)) = (key, size) {
            let k = k.replace("%3A", ":").replace("%3a", ":");
            let k = k.strip_prefix(prefix).unwrap_or(&k);
            let kind = match k.split_once(':') {
                Some((kind, rest)) if kind == "e" && rest.parse::<u64>().is_ok() => "e:ID".to_owned(),
                Some((kind, _)) => format!("{kind}:"),
                None => k.to_owned(),
            };
            let e = by_kind.entry(kind).or_default();
            e.0 += 1;
            e.1 += sz;
        }
    }
    let n = count as f64;
    let version = text_command(port, "version").unwrap_or_default().join(" ");
    println!("sessions: {count}, each with a refresh family ({version})");
    println!(
        "bytes per session (stats bytes, events included): {:.1}",
        (bytes1 - bytes0) as f64 / n
    );
    println!(
        "items per session:                                 {:.2}",
        (items1 - items0) as f64 / n
    );
    println!("by key kind (lru_crawler metadump sizes, per session):");
    for (kind, (items, size)) in &by_kind {
        println!(
            "  {kind:<8} items {items:>8}  bytes/session {:>7.1}",
            *size as f64 / n
        );
    }
    // What walking the global index costs at this size.
    let now = SystemClock.now();
    let t = std::time::Instant::now();
    let active = store.count_active(now).await.expect("count_active");
    println!("count_active: {active} in {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let swept = store.sweep(now, 1000).await.expect("sweep");
    println!("sweep with nothing expired: {swept} in {:?}", t.elapsed());
    drop(server);
}
