//! Bytes of Redis memory per idle session (issue 11, item 2).
//!
//! Starts an empty private `redis-server` (as the tests do), creates
//! 100 000 sessions through the store API — one subject each, data
//! `{"theme":"dark"}`, no device metadata, the default policy — and prints
//! the `INFO memory` `used_memory` delta divided by the session count:
//! once counting everything the sessions wrote (their `created` events
//! included), once without the event log.
//!
//! `cargo run -p tessera-redis --example memory_per_session [-- COUNT]`
#![forbid(unsafe_code)]

use tessera_redis::testing as support;

use std::sync::Arc;

use serde_json::json;
use tessera_core::{CreateSession, SessionPolicy, Sessions, SystemClock};
use tessera_redis::RedisStore;

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .expect("INFO memory");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO")
}

async fn memory_usage(conn: &mut redis::aio::MultiplexedConnection, key: &[u8]) -> i64 {
    redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async::<Option<i64>>(conn)
        .await
        .expect("MEMORY USAGE")
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("COUNT is a number"))
        .unwrap_or(100_000);
    let server = support::server();
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let buckets = store.buckets().await.expect("buckets");
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let before = used_memory(&mut conn).await;

    let sessions = Sessions::new(
        Arc::new(store.clone()),
        Arc::new(SystemClock),
        SessionPolicy::default(),
    );
    let workers = 32;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let sessions = sessions.clone();
        tasks.spawn(async move {
            let mut i = w;
            while i < count {
                let data = match json!({"theme": "dark"}) {
                    serde_json::Value::Object(m) => m,
                    _ => unreachable!(),
                };
                sessions
                    .create(CreateSession {
                        subject: format!("user-{i:06}"),
                        data: Some(data),
                        ..CreateSession::default()
                    })
                    .await
                    .expect("create");
                i += workers;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("worker");
    }

    let all = used_memory(&mut conn).await;
    let prefix = store.options().prefix.clone();
    let key = |k: &str| [prefix.as_bytes(), k.as_bytes()].concat();
    let stream = memory_usage(&mut conn, &key("e")).await;
    let mut token_index = 0;
    let mut subject_index = 0;
    for b in 0..buckets {
        token_index += memory_usage(&mut conn, &key(&format!("t{b}"))).await;
        subject_index += memory_usage(&mut conn, &key(&format!("u{b}"))).await;
    }
    let _: () = redis::cmd("DEL")
        .arg(key("e"))
        .arg(key("v"))
        .query_async(&mut conn)
        .await
        .expect("DEL the event log");
    let without_events = used_memory(&mut conn).await;

    let n = count as f64;
    println!(
        "sessions: {count} (Redis {}, {} index buckets)",
        redis_version(&mut conn).await,
        buckets
    );
    println!(
        "bytes per session, everything (events included): {:.1}",
        (all - before) as f64 / n
    );
    println!(
        "bytes per session, without the event log:        {:.1}",
        (without_events - before) as f64 / n
    );
    println!("  of which (MEMORY USAGE, without Redis's per-key dict overhead):");
    println!("    token index buckets:   {:.1}", token_index as f64 / n);
    println!("    subject index buckets: {:.1}", subject_index as f64 / n);
    println!("    event log (stream):    {:.1}", stream as f64 / n);
}

async fn redis_version(conn: &mut redis::aio::MultiplexedConnection) -> String {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .expect("INFO server");
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned()
}
