//! tower-sessions with its Redis store, answering `GET /me` from the
//! session like `crates/tessera/examples/bench_layer.rs` does in its
//! `tower-sessions` mode, for `scripts/bench-redis`.
//!
//! ```text
//! ts-redis-bench redis://127.0.0.1:6390 127.0.0.1:18083
//! ```
//!
//! Prints `COOKIE <name>=<value>` (one session, logged in through the router
//! itself) and then `listening on http://ADDR`.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::{get, post};
use tower::ServiceExt as _;
use tower_sessions::{Session, SessionManagerLayer};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};

const SUBJECT: &str = "bench";

async fn login(s: Session) -> Result<&'static str, StatusCode> {
    s.insert("subject", SUBJECT)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok("ok")
}

async fn me(s: Session) -> Result<String, StatusCode> {
    match s.get::<String>("subject").await {
        Ok(Some(subject)) => Ok(subject),
        Ok(None) => Err(StatusCode::UNAUTHORIZED),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: ts-redis-bench REDIS_URL [ADDR]")?;
    let addr: SocketAddr = args.next().unwrap_or_else(|| "127.0.0.1:18083".to_owned()).parse()?;

    // A pool of one connection per core, as tower-sessions' own example
    // suggests sizing it.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = Pool::new(Config::from_url(&url)?, None, None, None, cores)?;
    let _conn = pool.connect();
    pool.wait_for_connect().await?;

    let app = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .layer(SessionManagerLayer::new(RedisStore::new(pool)));

    let req = Request::post("/login").body(Body::empty())?;
    let resp = app.clone().oneshot(req).await?;
    let cookie = resp
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or("POST /login set no cookie")?
        .to_owned();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let mut out = std::io::stdout();
    writeln!(out, "COOKIE {cookie}")?;
    writeln!(out, "listening on http://{}", listener.local_addr()?)?;
    out.flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}
