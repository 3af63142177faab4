//! A tiny resource server protected by Tessera access tokens.
//!
//! ```text
//! # A key that may only read the revocation feed, not create sessions:
//! cargo run -p tessera-server -- api-keys create --name resource-server \
//!     --scope revocations > rs-api-key
//! cargo run -p tessera --example resource_server -- \
//!     --issuer http://127.0.0.1:8080 --audience tessera \
//!     --api-key-file rs-api-key --port 8081
//! curl -H "Authorization: Bearer $ACCESS_TOKEN" http://127.0.0.1:8081/api/me
//! ```
//!
//! The API key only reads the revocation feed, so give it only the
//! `revocations` scope (`tessera api-keys create --name rs --scope
//! revocations`): a resource server has no business creating sessions. A key
//! the feed refuses (wrong, revoked, or without that scope) makes every
//! request answer `503` at once, with an error in the log.
//!
//! Verification fails closed: until the first complete snapshot of the feed
//! is in, and whenever the feed has been out of sync for more than 75 s,
//! requests with a token get `503` (`Retry-After: 5`); `GET /healthz` shows
//! the feed's state.
//!
//! Options (each also from the environment variable in brackets):
//!
//! - `--issuer URL` (`TESSERA_RS_ISSUER`, default `http://127.0.0.1:8080`):
//!   the expected `iss`, byte for byte.
//! - `--audience AUD` (`TESSERA_RS_AUDIENCE`, default `tessera`).
//! - `--jwks-url URL` (`TESSERA_RS_JWKS_URL`, default `<issuer>/.well-known/jwks.json`).
//! - `--revocations-url URL` (`TESSERA_RS_REVOCATIONS_URL`, default
//!   `<issuer>/v1/revocations` when an API key is given; `none` disables).
//! - `--api-key KEY` (`TESSERA_RS_API_KEY`) or `--api-key-file PATH`
//!   (`TESSERA_RS_API_KEY_FILE`): the API key for the revocation feed; it
//!   needs only the `revocations` scope (`tessera api-keys create --scope
//!   revocations`), and should have no other.
//! - `--port N` (`TESSERA_RS_PORT`, default 8081; 0 picks a free port) or
//!   `--listen ADDR` (`TESSERA_RS_LISTEN`, default `127.0.0.1:<port>`).
//! - `--public-base-url URL` (`TESSERA_RS_PUBLIC_BASE_URL`, default
//!   `http://<listen address>`): the URL clients reach this server at; a
//!   DPoP proof's `htu` must be it followed by the request path. Set it to
//!   the proxy's `https://…` URL when behind one.
//!
//! Once listening it prints `listening on http://ADDR` on stdout.
//!
//! Routes: `GET /api/me` → `{sub, sid, client_id, scope, scopes}` (any valid
//! token: `Authorization: Bearer`, or `Authorization: DPoP` with a `DPoP`
//! proof for a DPoP-bound one); `POST /api/write` → `{ok: true}` (needs scope `write`, else 403
//! `insufficient_scope`); `GET /healthz` → `{status, feed_healthy, feed}`
//! (`feed`: `in_sync`, `not_synced`, `stale`, `unauthorized` or
//! `not_configured`).
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tessera::resource::{AuthRejection, Authenticated, Url, Verifier, VerifierConfig, require_scope};

struct Options {
    issuer: String,
    audience: String,
    jwks_url: Option<String>,
    revocations_url: Option<String>,
    api_key: Option<String>,
    api_key_file: Option<String>,
    port: u16,
    listen: Option<String>,
    public_base_url: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        issuer: env("TESSERA_RS_ISSUER").unwrap_or_else(|| "http://127.0.0.1:8080".into()),
        audience: env("TESSERA_RS_AUDIENCE").unwrap_or_else(|| "tessera".into()),
        jwks_url: env("TESSERA_RS_JWKS_URL"),
        revocations_url: env("TESSERA_RS_REVOCATIONS_URL"),
        api_key: env("TESSERA_RS_API_KEY"),
        api_key_file: env("TESSERA_RS_API_KEY_FILE"),
        port: match env("TESSERA_RS_PORT") {
            Some(p) => p
                .parse()
                .map_err(|_| format!("TESSERA_RS_PORT: not a port: {p}"))?,
            None => 8081,
        },
        listen: env("TESSERA_RS_LISTEN"),
        public_base_url: env("TESSERA_RS_PUBLIC_BASE_URL"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        if name == "--help" || name == "-h" {
            println!(
                "resource_server [--issuer URL] [--audience AUD] [--jwks-url URL] [--revocations-url URL|none] \
                 [--api-key KEY | --api-key-file PATH] [--port N | --listen ADDR] [--public-base-url URL]"
            );
            std::process::exit(0);
        }
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        match name.as_str() {
            "--issuer" => o.issuer = value,
            "--audience" => o.audience = value,
            "--jwks-url" => o.jwks_url = Some(value),
            "--revocations-url" => o.revocations_url = Some(value),
            "--api-key" => o.api_key = Some(value),
            "--api-key-file" => o.api_key_file = Some(value),
            "--port" => {
                o.port = value
                    .parse()
                    .map_err(|_| format!("--port: not a port: {value}"))?
            }
            "--listen" => o.listen = Some(value),
            "--public-base-url" => o.public_base_url = Some(value),
            other => return Err(format!("unknown option {other} (see --help)")),
        }
    }
    Ok(o)
}

fn config(o: &Options, local: SocketAddr) -> Result<VerifierConfig, String> {
    let base = o.issuer.trim_end_matches('/');
    let jwks_url: Url = o
        .jwks_url
        .clone()
        .unwrap_or_else(|| format!("{base}/.well-known/jwks.json"))
        .parse()
        .map_err(|e| format!("jwks url: {e}"))?;
    let api_key = match (&o.api_key, &o.api_key_file) {
        (Some(k), _) => Some(k.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("api key file {path}: {e}"))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    let revocations_url = match o.revocations_url.as_deref() {
        Some("none") => None,
        Some(u) => Some(u.parse().map_err(|e| format!("revocations url: {e}"))?),
        None if api_key.is_some() => Some(
            format!("{base}/v1/revocations")
                .parse()
                .map_err(|e| format!("revocations url: {e}"))?,
        ),
        None => None,
    };
    let mut config = VerifierConfig::new(o.issuer.clone(), o.audience.clone(), jwks_url);
    config.revocations_url = revocations_url;
    config.api_key = api_key;
    let public_base_url = o
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    config.public_base_url = Some(
        public_base_url
            .parse()
            .map_err(|e| format!("public base url: {e}"))?,
    );
    Ok(config)
}

async fn me(Authenticated(token): Authenticated) -> Json<Value> {
    let c = &token.claims;
    Json(json!({
        "sub": c.sub,
        "sid": c.sid,
        "client_id": c.client_id,
        "scope": c.scope,
        "scopes": token.scopes,
    }))
}

async fn write(Authenticated(token): Authenticated) -> Result<Json<Value>, AuthRejection> {
    require_scope(&token, "write")?;
    Ok(Json(json!({"ok": true, "sub": token.claims.sub})))
}

async fn healthz(State(verifier): State<Verifier>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "feed_healthy": verifier.feed_healthy(),
        "feed": verifier.feed_status().label(),
    }))
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("resource_server: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = parse_options()?;
    let addr = options
        .listen
        .clone()
        .unwrap_or_else(|| format!("127.0.0.1:{}", options.port));
    let addr: SocketAddr = addr.parse().map_err(|e| format!("listen address {addr}: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let config = config(&options, local)?;
    let feed = config.revocations_url.is_some();
    let verifier = Verifier::new(config).map_err(|e| e.to_string())?;
    if let Err(e) = verifier.refresh_jwks().await {
        // Not fatal: the first token with an unknown kid fetches again.
        tracing::warn!(error = %e, "initial JWKS fetch failed");
    }
    if feed {
        verifier.spawn_feed();
    } else {
        tracing::warn!(
            "no revocation feed (give --api-key or --api-key-file): revoked tokens stay valid until they expire"
        );
    }
    verifier.spawn_jwks_refresh();

    let app = Router::new()
        .route("/api/me", get(me))
        .route("/api/write", post(write))
        .route("/healthz", get(healthz))
        .with_state(verifier);
    println!("listening on http://{local}");
    let _ = std::io::stdout().flush();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}
