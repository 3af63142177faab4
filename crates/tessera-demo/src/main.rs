//! `tessera-demo`: a small web app with accounts and sessions, built on the
//! `tessera::browser` layer.
//!
//! ```text
//! cargo run --release -p tessera-demo -- --listen 127.0.0.1:3000 --data-dir ./demo-data
//! # over HTTPS with Device Bound Session Credentials:
//! cargo run --release -p tessera-demo -- --tls-self-signed --dbsc
//! ```
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

mod app;
mod html;
#[cfg(test)]
mod tests;
mod tls;
mod users;

/// A demo web app on Tessera's cookie sessions: sign up, sign in, see and end
/// your sessions, confirm your password for sensitive changes.
#[derive(Debug, Parser)]
#[command(name = "tessera-demo", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000", env = "TESSERA_DEMO_LISTEN")]
    listen: SocketAddr,
    /// Directory for users.db, sessions.db and csrf-key (created if missing).
    #[arg(long, default_value = "./demo-data", env = "TESSERA_DEMO_DATA_DIR")]
    data_dir: PathBuf,
    /// Origins allowed to post forms (repeatable). Default: http://<listen>.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Plain-HTTP cookies: no `Secure`, no `__Host-` prefix. Not needed for
    /// Chromium on localhost/127.0.0.1, which accepts secure cookies over http.
    #[arg(long)]
    insecure_dev_cookies: bool,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate for localhost and
    /// 127.0.0.1, generated into <data-dir>/tls-cert.pem and tls-key.pem on
    /// first start and reused afterwards.
    #[arg(long)]
    tls_self_signed: bool,
    /// Offer Device Bound Session Credentials (needs HTTPS); the sealing key
    /// lives in <data-dir>/dbsc-key.
    #[arg(long)]
    dbsc: bool,
    /// Lifetime of the DBSC bound cookie, after which the browser refreshes
    /// it with a proof. Short values are for tests that watch a refresh.
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(i64).range(1..), requires = "dbsc")]
    dbsc_cookie_ttl_secs: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Colour codes only for a terminal: log files and CI output stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::load(cert, key)?),
        _ if args.tls_self_signed => {
            let (cert, key) = tls::self_signed(&args.data_dir)?;
            Some(tls::load(&cert, &key)?)
        }
        _ => None,
    };
    if args.dbsc && tls.is_none() {
        anyhow::bail!("--dbsc needs HTTPS: add --tls-self-signed or --tls-cert/--tls-key");
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let allowed_origins = if args.allowed_origins.is_empty() {
        vec![format!("{scheme}://{}", args.listen)]
    } else {
        args.allowed_origins.clone()
    };
    let cfg = app::Config {
        data_dir: args.data_dir.clone(),
        allowed_origins,
        insecure_dev_cookies: args.insecure_dev_cookies,
        dbsc: args.dbsc,
        dbsc_cookie_ttl_secs: args.dbsc_cookie_ttl_secs,
    };
    let (router, sessions) = app::build(&cfg, users::Passwords::new()?)?;

    // Expired sessions are refused on every read; this only reclaims space.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = sessions.sweep(500).await {
                tracing::warn!(error = %e, "session sweep failed");
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    if let Some(tls) = &tls {
        tracing::info!(
            data_dir = %cfg.data_dir.display(),
            origins = ?cfg.allowed_origins,
            dbsc = cfg.dbsc,
            spki_sha256 = %tls.spki_sha256,
            "tessera-demo listening on https://{addr} (Chromium: --ignore-certificate-errors-spki-list={})",
            tls.spki_sha256
        );
        return tls::serve(listener, router, tls, shutdown()).await;
    }
    tracing::info!(
        data_dir = %cfg.data_dir.display(),
        origins = ?cfg.allowed_origins,
        "tessera-demo listening on http://{addr}"
    );
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await?;
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
