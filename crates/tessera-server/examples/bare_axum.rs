//! The bare framework cost, for `scripts/bench-http`: an axum server with no
//! store, no auth and no middleware that answers `POST /v1/sessions/verify` by
//! parsing the same JSON body Tessera parses and returning a small JSON
//! document. Tessera's req/s divided by this one's is what the session work
//! (API-key check, token parse, hash, store lookup, idle slide, metrics,
//! logging) costs over plain axum + hyper + serde_json on the same machine.
//!
//! It also answers `GET /auth/verify` the way a forward-auth endpoint does:
//! it reads the `Cookie` header and answers 200 with the three identity
//! headers and an empty body, the baseline of Tessera's `/auth/verify`.
//!
//! ```text
//! cargo run --release -p tessera-server --example bare_axum -- 127.0.0.1:18081
//! ```
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

#[derive(Deserialize)]
struct VerifyBody {
    session_token: String,
}

async fn verify(headers: HeaderMap, Json(body): Json<VerifyBody>) -> impl IntoResponse {
    // Touch what Tessera touches: the Authorization header and the token.
    let authed = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    if !authed || body.session_token.is_empty() {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"code": "unauthorized"})),
        );
    }
    (StatusCode::OK, Json(serde_json::json!({"session": {}})))
}

async fn forward_auth(headers: HeaderMap) -> impl IntoResponse {
    let has_cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains('='));
    if !has_cookie {
        return (
            StatusCode::UNAUTHORIZED,
            [
                ("x-tessera-subject", ""),
                ("x-tessera-session", ""),
                ("x-tessera-auth-level", ""),
            ],
        );
    }
    (
        StatusCode::OK,
        [
            ("x-tessera-subject", "bench"),
            (
                "x-tessera-session",
                "ses_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            ),
            ("x-tessera-auth-level", "1"),
        ],
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".to_owned())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad address: {e}")))?;
    let app = Router::new()
        .route("/v1/sessions/verify", post(verify))
        .route("/auth/verify", get(forward_auth));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("bare_axum listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
