//! The browser-session layer under load, for `scripts/bench-browser`: one
//! binary, three servers that answer the same `GET /me` with the same short
//! text, so their req/s can be compared on one machine.
//!
//! ```text
//! cargo run --release -p tessera --example bench_layer -- tessera 127.0.0.1:18082
//! cargo run --release -p tessera --example bench_layer -- tower-sessions 127.0.0.1:18082
//! cargo run --release -p tessera --example bench_layer -- bare 127.0.0.1:18082
//! ```
//!
//! Modes:
//!
//! - `tessera`: [`SessionLayer`] over the `memory://` store, or the store
//!   URL in `BENCH_STORE` (e.g. `redis://…`, for `scripts/bench-redis`) (default
//!   [`SessionPolicy`] and [`CookieConfig`]). `POST /login` signs `bench` in
//!   with [`Session::login`]; `GET /me` takes [`RequireSession`] and answers
//!   the subject. Every `GET /me` verifies the cookie's token in the store.
//! - `tower-sessions`: `tower_sessions::SessionManagerLayer` over
//!   `tower_sessions::MemoryStore` (defaults). `POST /login` stores
//!   `subject = "bench"` in the session; `GET /me` reads it back (401 when
//!   missing). Every `GET /me` loads the session record from the store.
//! - `bare`: no layer; `GET /me` (and `GET /auth/verify`, the baseline of the
//!   forward-auth comparison) answer `bench`: the framework cost alone.
//!
//! Before listening, the binary logs in once through its own router
//! (`POST /login`, in process) and prints the cookie to send as one line
//! `COOKIE <name>=<value>` on stdout, then `listening on http://ADDR`. The
//! `bare` mode prints a dummy cookie of a session token's length, so every
//! server receives requests of the same size.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tessera::browser::{CookieConfig, RequireSession, Session, SessionLayer};
use tessera::core::{AuthInput, DeviceInput, SessionPolicy};
use tower::ServiceExt as _;

/// What every `GET /me` answers (the subject of the one session).
const SUBJECT: &str = "bench";

async fn tessera_login(s: Session) -> Result<&'static str, tessera::browser::Error> {
    s.login(
        SUBJECT,
        AuthInput {
            level: Some(1),
            methods: vec!["pwd".into()],
        },
        DeviceInput::default(),
    )
    .await?;
    Ok("ok")
}

async fn tessera_me(RequireSession(s): RequireSession) -> String {
    s.subject().unwrap_or_default()
}

async fn ts_login(s: tower_sessions::Session) -> Result<&'static str, StatusCode> {
    s.insert("subject", SUBJECT)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok("ok")
}

async fn ts_me(s: tower_sessions::Session) -> Result<String, StatusCode> {
    match s.get::<String>("subject").await {
        Ok(Some(subject)) => Ok(subject),
        Ok(None) => Err(StatusCode::UNAUTHORIZED),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

async fn bare_me() -> impl IntoResponse {
    SUBJECT
}

fn app(mode: &str) -> Result<Router, String> {
    match mode {
        "tessera" => {
            // `BENCH_STORE` picks the store (scripts/bench-redis sets a
            // `redis://` URL); the browser comparison uses memory.
            let store = std::env::var("BENCH_STORE").unwrap_or_else(|_| "memory://".to_owned());
            let layer =
                SessionLayer::from_store_url(&store, SessionPolicy::default(), CookieConfig::default())
                    .map_err(|e| e.to_string())?;
            Ok(Router::new()
                .route("/login", post(tessera_login))
                .route("/me", get(tessera_me))
                .layer(layer))
        }
        "tower-sessions" => {
            let layer = tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default());
            Ok(Router::new()
                .route("/login", post(ts_login))
                .route("/me", get(ts_me))
                .layer(layer))
        }
        "bare" => Ok(Router::new()
            .route("/me", get(bare_me))
            .route("/auth/verify", get(bare_me))),
        other => Err(format!(
            "unknown mode {other:?}; expected tessera, tower-sessions or bare"
        )),
    }
}

/// Logs in through the router itself and returns `name=value` of the
/// session cookie it set.
async fn login_cookie(app: &Router) -> Result<String, String> {
    let req = Request::post("/login")
        .header(header::HOST, "127.0.0.1")
        .header("sec-fetch-site", "same-origin")
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    let resp = app.clone().oneshot(req).await.map_err(|e| e.to_string())?;
    if resp.status() != StatusCode::OK {
        return Err(format!("POST /login answered {}", resp.status()));
    }
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .find(|pair| pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .map(str::to_owned)
        .ok_or_else(|| "POST /login set no session cookie".to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:18082".to_owned())
        .parse()?;
    let app = app(&mode)?;
    let cookie = if mode == "bare" {
        // A session token is 47 characters (tss_ + 43).
        format!("__Host-tessera=tss_{}", "A".repeat(43))
    } else {
        login_cookie(&app).await?
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "COOKIE {cookie}")?;
    writeln!(out, "listening on http://{}", listener.local_addr()?)?;
    out.flush()?;
    drop(out);
    // Served like `bare_axum` (no `ConnectInfo`), the same in every mode.
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
