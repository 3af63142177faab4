//! `tessera serve`: the long-running service.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tessera_core::{ApiKeyScope, SecretToken, SessionStore, Sessions, TokenService};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app;
use crate::auth::new_api_key;
use crate::config::Config;

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
            app.state.oauth.tokens.clone(),
            Duration::from_secs(config.sweeper.interval_secs),
            config.sweeper.batch_size,
        )),
        tokio::spawn(gauges(app.state.sessions.clone(), app.state.metrics.clone())),
        tokio::spawn(crate::oauth::key_maintenance(app.state.oauth.keys.clone())),
    ];

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = axum::serve(listener, app.router.into_make_service()).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
    });
    let deadline = Duration::from_secs(config.http.request_timeout_secs) + SHUTDOWN_GRACE;
    tokio::select! {
        r = server => r.context("server error")?,
        _ = async {
            let _ = stop_rx.wait_for(|s| *s).await;
            tokio::time::sleep(deadline).await;
        } => tracing::warn!("in-flight requests did not finish in {deadline:?}; stopping anyway"),
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

/// Name of the first API key.
pub const BOOTSTRAP_KEY_NAME: &str = "bootstrap";

/// On first start (no API keys in the store) creates one with the `admin`
/// scope and writes it to `<data_dir>/bootstrap-api-key` (mode 0600). Logs
/// the path, never the key. On later starts, warns about every active
/// `admin` key but the bootstrap one (keys from before scopes existed are
/// `admin`), so operators replace them with narrower keys.
pub async fn bootstrap_api_key(
    store: &Arc<dyn SessionStore>,
    data_dir: &Path,
    now: tessera_core::Timestamp,
) -> anyhow::Result<Option<PathBuf>> {
    let keys = store.list_api_keys().await.context("cannot list API keys")?;
    if !keys.is_empty() {
        let admins: Vec<String> = keys
            .iter()
            .filter(|k| {
                k.revoked_at.is_none() && k.allows(ApiKeyScope::Admin) && k.name != BOOTSTRAP_KEY_NAME
            })
            .map(|k| format!("{} ({:?})", k.id, k.name))
            .collect();
        if !admins.is_empty() {
            tracing::warn!(
                keys = %admins.join(", "),
                "these API keys have the admin scope (keys created before scopes existed got it): issue keys with \
                 only the scopes each caller needs (`tessera api-keys create --scope sessions|events|revocations`) \
                 and revoke these"
            );
        }
        return Ok(None);
    }
    let (rec, secret) = new_api_key(BOOTSTRAP_KEY_NAME, &[ApiKeyScope::Admin], now);
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

/// Deletes expired sessions every `interval`, in batches, and clears the
/// sealed refresh successors whose grace window has passed once per grace
/// window (at most every `interval`), so a successor stays in the store
/// for at most about twice the grace window (SPEC §5). At grace 0 nothing
/// new is sealed; the sweep's pass clears what an older version left.
async fn sweeper(tokens: TokenService, interval: Duration, batch: u32) {
    let sessions = tokens.sessions().clone();
    let grace = u64::try_from(tokens.policy().reuse_grace_secs).unwrap_or(0);
    let clear_every = match grace {
        0 => interval,
        g => Duration::from_secs(g).min(interval),
    };
    let mut sweep_tick = tokio::time::interval(interval);
    sweep_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clear_tick = tokio::time::interval(clear_every);
    clear_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = sweep_tick.tick() => match sessions.sweep(batch).await {
                Ok(0) => {}
                Ok(n) => {
                    metrics::counter!(crate::metrics::SWEPT).increment(n);
                    tracing::debug!(swept = n, "deleted expired sessions");
                }
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            },
            _ = clear_tick.tick() => match tokens.clear_sealed_successors(batch).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(cleared = n, "cleared sealed refresh successors past their grace window"),
                Err(e) => tracing::warn!(error = %e, "clearing sealed refresh successors failed"),
            },
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
    use tessera_core::{CreateSession, ManualClock, MemoryStore, Sealer, TokenRequest};

    /// The sweeper's first pass clears the sealed refresh successors whose
    /// grace window has passed (and only those).
    #[tokio::test]
    async fn the_sweeper_clears_sealed_successors_past_the_grace_window() {
        let clock = ManualClock::new(tessera_core::Timestamp::from_unix_secs(1_800_000_000));
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let config = Config {
            store: Some("memory://".into()),
            ..Config::default()
        };
        let sessions = Sessions::new(store.clone(), Arc::new(clock.clone()), config.policy());
        let sealer = Sealer::new(&Sealer::generate_key());
        let oauth =
            crate::oauth::OAuth::new(&config, sessions, store.clone(), Arc::new(clock.clone()), sealer);
        crate::oauth::start(&oauth).await.unwrap();
        let tokens = oauth.tokens.clone();
        let client = tokens.clients().get("default").unwrap().clone();
        let mut handles = Vec::new();
        for (subject, age) in [("old", 11), ("new", 0)] {
            let s = tokens
                .sessions()
                .create(CreateSession {
                    subject: subject.into(),
                    ..CreateSession::default()
                })
                .await
                .unwrap();
            let rt = tokens
                .issue_for_session(&s.session, &TokenRequest::default())
                .await
                .unwrap()
                .refresh_token
                .unwrap();
            tokens.refresh(rt.expose(), &client, None).await.unwrap();
            clock.advance_secs(age);
            handles.push(s.session.handle.clone());
        }
        let sealed = |h: String| {
            let store = store.clone();
            async move {
                store.refresh_families_of(&h).await.unwrap()[0]
                    .current_sealed
                    .is_some()
            }
        };
        assert!(sealed(handles[0].clone()).await);

        let task = tokio::spawn(sweeper(tokens, Duration::from_secs(60), 10));
        for _ in 0..1000 {
            if !sealed(handles[0].clone()).await {
                break;
            }
            tokio::task::yield_now().await;
        }
        task.abort();
        assert!(
            !sealed(handles[0].clone()).await,
            "past its grace window: cleared"
        );
        assert!(sealed(handles[1].clone()).await, "inside its grace window: kept");
    }

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
