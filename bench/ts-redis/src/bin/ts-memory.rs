//! Bytes of Redis memory per idle tower-sessions session, measured the way
//! `crates/tessera-redis/examples/memory_per_session.rs` measures Tessera's:
//! the `INFO memory` `used_memory` delta over COUNT sessions, each with a
//! subject (`user-000000`…) and one small data field (`theme: dark`),
//! created through tower-sessions' own `Session` API over its Redis store
//! with the default expiry.
//!
//! ```text
//! ts-memory redis://127.0.0.1:6390 [COUNT]
//! ```
//!
//! Run it against an empty, private redis-server (`scripts/bench-redis-memory`
//! starts one).
#![forbid(unsafe_code)]

use std::sync::Arc;

use tower_sessions::Session;
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};

async fn used_memory(pool: &Pool) -> Result<i64, Box<dyn std::error::Error>> {
    let info: String = pool
        .next()
        .custom(
            tower_sessions_redis_store::fred::types::CustomCommand::new_static("INFO", None, false),
            vec!["memory"],
        )
        .await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no used_memory in INFO".into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: ts-memory REDIS_URL [COUNT]")?;
    let count: usize = args.next().map_or(Ok(100_000), |c| c.parse())?;

    let pool = Pool::new(Config::from_url(&url)?, None, None, None, 4)?;
    let _conn = pool.connect();
    pool.wait_for_connect().await?;
    let store = Arc::new(RedisStore::new(pool.clone()));
    let before = used_memory(&pool).await?;

    let workers = 32;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let store = store.clone();
        tasks.spawn(async move {
            let mut i = w;
            while i < count {
                let session = Session::new(None, store.clone(), None);
                session.insert("subject", format!("user-{i:06}")).await?;
                session.insert("theme", "dark").await?;
                session.save().await?;
                i += workers;
            }
            Ok::<_, tower_sessions::session::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let after = used_memory(&pool).await?;
    println!(
        "tower-sessions-redis-store: {count} sessions, {:.1} B per session",
        (after - before) as f64 / count as f64
    );
    Ok(())
}
