//! `tessera serve`: the long-running service.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tessera_core::{SecretToken, SessionStore, Sessions};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::app;
use crate::auth::new_api_key;
use crate::config::Config;
use crate::listener::{ConnLimits, accept_loop};

/// File in `data_dir` that receives the first API key.
pub const BOOTSTRAP_KEY_FILE: &str = "bootstrap-api-key";
/// How often the active-sessions gauge is refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(15);
/// Extra time in-flight requests get after a shutdown signal, on top of the
/// request timeout.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs the service until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    if !config.cookie.secure {
        tracing::warn!(
            cookie = config.cookie.effective_name(),
            "[cookie] secure = false: session cookies lack `Secure` and the `__Host-` prefix; use this only for plain-HTTP development"
        );
    }
    let store_url = crate::config::mask_url_password(&config.store_url());
    let store = crate::store_url::open_store(&config)
        .with_context(|| format!("cannot open the store {store_url}"))?;
    tracing::info!(store = %store_url, "store opened");
    let sealer = crate::oauth::load_sealer(&config, true)?;
    let app = app::build_with_sealer(config.clone(), store, Arc::new(tessera_core::SystemClock), sealer);
    bootstrap_api_key(&app.state.store, &config.data_dir, app.state.sessions.now()).await?;
    crate::oauth::start(&app.state.oauth).await?;

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().context("cannot read the bound address")?;
    tracing::info!(%addr, "listening on http://{addr}");

    let tasks = [
        tokio::spawn(sweeper(
            app.state.sessions.clone(),
            Duration::from_secs(config.sweeper.interval_secs),
            config.sweeper.batch_size,
        )),
        tokio::spawn(gauges(app.state.sessions.clone(), app.state.metrics.clone())),
        tokio::spawn(crate::oauth::key_maintenance(app.state.oauth.keys.clone())),
    ];

    let limits = ConnLimits {
        header_read_timeout: Duration::from_secs(config.http.header_read_timeout_secs),
        max_connections: config.http.max_connections,
    };
    let connections = accept_loop(listener, app.router, limits, shutdown_signal()).await;
    tracing::info!("shutting down: finishing in-flight requests");
    let deadline = Duration::from_secs(config.http.request_timeout_secs) + SHUTDOWN_GRACE;
    if tokio::time::timeout(deadline, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish in {deadline:?}; stopping anyway");
    }
    abort_all(&tasks);
    tracing::info!("stopped");
    Ok(())
}

fn abort_all(tasks: &[JoinHandle<()>]) {
    for t in tasks {
        t.abort();
    }
}

/// On first start (no API keys in the store) creates one and writes it to
/// `<data_dir>/bootstrap-api-key` (mode 0600). Logs the path, never the key.
pub async fn bootstrap_api_key(
    store: &Arc<dyn SessionStore>,
    data_dir: &Path,
    now: tessera_core::Timestamp,
) -> anyhow::Result<Option<PathBuf>> {
    if !store
        .list_api_keys()
        .await
        .context("cannot list API keys")?
        .is_empty()
    {
        return Ok(None);
    }
    let (rec, secret) = new_api_key("bootstrap", now);
    let path = data_dir.join(BOOTSTRAP_KEY_FILE);
    if path.exists() {
        tracing::warn!(
            path = %path.display(),
            "the store has no API keys but a bootstrap key file exists (another store?); replacing it"
        );
    }
    // The file first: if the insert then fails, the next start retries with a
    // new key; the other order could store a key nobody knows.
    write_secret_file(&path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
    store
        .insert_api_key(&rec)
        .await
        .context("cannot store the bootstrap API key")?;
    tracing::info!(path = %path.display(), key_id = %rec.id, "created the bootstrap API key; it is in this file (mode 0600)");
    Ok(Some(path))
}

fn write_secret_file(path: &Path, secret: &SecretToken) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let mut f = opts.open(path)?;
        // An existing file keeps its old mode through open(): tighten it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        writeln!(f, "{}", secret.expose())?;
        f.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut f = opts.open(path)?;
        writeln!(f, "{}", secret.expose())?;
        f.sync_all()
    }
}

/// Deletes expired sessions every `interval`, in batches.
async fn sweeper(sessions: Sessions, interval: Duration, batch: u32) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sessions.sweep(batch).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!(crate::metrics::SWEPT).increment(n);
                tracing::debug!(swept = n, "deleted expired sessions");
            }
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
    }
}

/// Refreshes `tessera_sessions_active` and the exporter's histograms.
async fn gauges(sessions: Sessions, handle: metrics_exporter_prometheus::PrometheusHandle) {
    let mut tick = tokio::time::interval(GAUGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sessions.store().count_active(sessions.now()).await {
            // A gauge is an f64; counts beyond 2^53 are not a concern.
            #[allow(clippy::cast_precision_loss)]
            Ok(n) => metrics::gauge!(crate::metrics::SESSIONS_ACTIVE).set(n as f64),
            Err(e) => tracing::warn!(error = %e, "cannot count active sessions"),
        }
        handle.run_upkeep();
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::MemoryStore;

    #[tokio::test]
    async fn bootstrap_key_is_written_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let now = tessera_core::Timestamp::from_unix_secs(1);
        let path = bootstrap_api_key(&store, dir.path(), now).await.unwrap().unwrap();
        let key = std::fs::read_to_string(&path).unwrap();
        assert!(key.starts_with("tsk_") && key.ends_with('\n'), "{key:?}");
        let hash =
            tessera_core::token::parse(tessera_core::TokenKind::ApiKey, key.trim_end().as_bytes()).unwrap();
        assert!(store.api_key_by_hash(&hash).await.unwrap().is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(bootstrap_api_key(&store, dir.path(), now).await.unwrap(), None);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), key, "not rewritten");
    }
}
