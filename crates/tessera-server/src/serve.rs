//! `tessera serve`: the long-running service.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tessera_core::{ApiKeyScope, DutyLease, EventLog, SecretToken, Sessions, Timestamp, TokenService};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::app;
use crate::auth::{ApiKeys, new_api_key};
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
    // Opening may migrate the schema: not on a runtime worker.
    let store = tokio::task::spawn_blocking({
        let config = config.clone();
        move || crate::open_store::open_store(&config)
    })
    .await
    .context("the store-opening task failed")?
    .with_context(|| format!("cannot open the store {store_url}"))?;
    tracing::info!(store = %store_url, "store opened");
    let sealer = crate::issuer::load_sealer(&config, true)?;
    let clock: Arc<dyn tessera_core::Clock> = Arc::new(tessera_core::SystemClock);
    let leases = Leases::new(store.clone(), clock.clone(), &config);
    let app = app::build_with_sealer(config.clone(), store.clone(), clock, sealer);
    let startup = Startup {
        state: app.state.clone(),
        data_dir: config.data_dir.clone(),
        bootstrap: leases.bootstrap.clone(),
    };
    // A store that does not answer yet (containers start in any order) is
    // waited for while serving: every request that needs it answers 503
    // and `/readyz` fails until the start-up work is done. A store that
    // answers makes any start-up failure fatal at once, as before.
    let waiting = match store.ping().await {
        Ok(()) => {
            startup.run().await?;
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "the store does not answer: serving 503 until it does, then finishing the start");
            app.state
                .started
                .store(false, std::sync::atomic::Ordering::Release);
            Some(tokio::spawn(startup.when_the_store_answers(store)))
        }
    };

    let tls = if config.tls.enabled() {
        Some(Arc::new(crate::tls::Tls::load(&config.tls)?))
    } else {
        None
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().context("cannot read the bound address")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, "listening on {scheme}://{addr}");
    #[cfg(unix)]
    let sighup = tls.clone().map(|t| tokio::spawn(crate::tls::reload_on_sighup(t)));

    let tasks = [
        tokio::spawn(sweeper(
            app.state.oauth.tokens.clone(),
            (
                app.state.oauth.dpop_token.clone(),
                app.state.limits.limiter().clone(),
            ),
            app.state.events.clone(),
            Duration::from_secs(config.sweeper.interval_secs),
            config.sweeper.batch_size,
            EventRetention::of(&config),
            leases.sweep.clone(),
        )),
        tokio::spawn(gauges(app.state.sessions.clone(), app.state.metrics.clone())),
        tokio::spawn(app.state.limits.clone().sync_forever()),
        tokio::spawn(crate::issuer::key_maintenance(
            app.state.oauth.keys.clone(),
            Duration::from_secs(config.keys.reload_interval_secs),
            leases.keys.clone(),
        )),
    ];

    let limits = ConnLimits {
        header_read_timeout: Duration::from_secs(config.http.header_read_timeout_secs),
        max_connections: config.http.max_connections,
    };
    let connections = accept_loop(
        listener,
        crate::app::service(app.state.clone()),
        limits,
        tls,
        shutdown_signal(),
    )
    .await;
    #[cfg(unix)]
    if let Some(h) = sighup {
        h.abort();
    }
    tracing::info!("shutting down: finishing in-flight requests");
    let deadline = Duration::from_secs(config.http.request_timeout_secs) + SHUTDOWN_GRACE;
    if tokio::time::timeout(deadline, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish in {deadline:?}; stopping anyway");
    }
    abort_all(&tasks);
    if let Some(w) = waiting {
        w.abort();
    }
    leases.release().await;
    tracing::info!("stopped");
    Ok(())
}

/// The leases of the cluster-wide duties (see [`DutyLease`]): every
/// process sharing the store runs the same loops, and each round does its
/// duty only under the duty's lease. A lease lasts three rounds of its
/// loop, so a live holder keeps it and a dead one is replaced within
/// three rounds.
pub struct Leases {
    /// Expired sessions, event retention, sealed refresh successors.
    pub sweep: Arc<DutyLease>,
    /// Signing-key rotation and pruning.
    pub keys: Arc<DutyLease>,
    /// The bootstrap API key of an empty store.
    pub bootstrap: Arc<DutyLease>,
}

/// How long the first start may wait for another process that is creating
/// the bootstrap API key (past its lease, it is taken over).
const BOOTSTRAP_LEASE: Duration = Duration::from_secs(10);

impl Leases {
    pub fn new(
        store: Arc<dyn tessera_core::LeaseStore>,
        clock: Arc<dyn tessera_core::Clock>,
        config: &Config,
    ) -> Leases {
        let rounds = |secs: u64| Duration::from_secs(secs.saturating_mul(3));
        Leases {
            sweep: Arc::new(DutyLease::new(
                store.clone(),
                clock.clone(),
                "sweep",
                rounds(config.sweeper.interval_secs),
            )),
            keys: Arc::new(DutyLease::new(
                store.clone(),
                clock.clone(),
                "keys",
                rounds(config.keys.reload_interval_secs),
            )),
            bootstrap: Arc::new(DutyLease::new(store, clock, "bootstrap", BOOTSTRAP_LEASE)),
        }
    }

    /// Hands the duties this process holds to the next process at once
    /// (a graceful stop), instead of after their leases run out.
    async fn release(&self) {
        for lease in [&self.sweep, &self.keys] {
            if let Err(e) = lease.release().await {
                tracing::debug!(duty = lease.name(), error = %e, "cannot release the lease; it runs out by itself");
            }
        }
    }
}

/// What `serve` does with the store before it is ready: the bootstrap API
/// key of an empty store, and the signing keys.
struct Startup {
    state: app::AppState,
    data_dir: PathBuf,
    bootstrap: Arc<DutyLease>,
}

impl Startup {
    async fn run(&self) -> anyhow::Result<()> {
        bootstrap_api_key_once(
            &self.state.api_keys,
            &self.data_dir,
            &self.state.sessions,
            &self.bootstrap,
        )
        .await?;
        crate::issuer::start(&self.state.oauth).await
    }

    /// Retries [`run`](Self::run) until it succeeds while the store is
    /// unreachable (every second at first, at most every 5 s). A failure
    /// while the store answers is not the store's: it is logged and the
    /// process exits, as a failure at start would have.
    async fn when_the_store_answers(self, store: Arc<dyn tessera_core::Store>) {
        let mut wait = Duration::from_secs(1);
        loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
            if store.ping().await.is_err() {
                continue;
            }
            match self.run().await {
                Ok(()) => {
                    self.state
                        .started
                        .store(true, std::sync::atomic::Ordering::Release);
                    tracing::info!("the store answers: start finished");
                    return;
                }
                Err(e) if store.ping().await.is_err() => {
                    tracing::warn!(error = %format!("{e:#}"), "the store went away again during the start; retrying");
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot finish the start");
                    std::process::exit(1);
                }
            }
        }
    }
}

/// [`bootstrap_api_key`] under the `bootstrap` lease, so processes starting
/// together on an empty shared store create one key between them (in the
/// data directory of the one that created it), not one each. Waits while
/// another process holds the lease: it is creating the key, or it died
/// and its lease runs out.
pub async fn bootstrap_api_key_once(
    api_keys: &ApiKeys,
    data_dir: &Path,
    sessions: &Sessions,
    lease: &DutyLease,
) -> anyhow::Result<Option<PathBuf>> {
    let deadline = tokio::time::Instant::now() + lease.ttl() * 2;
    loop {
        if lease
            .hold()
            .await
            .context("cannot take the bootstrap lease in the store")?
        {
            let made = bootstrap_api_key(api_keys, data_dir, sessions.now()).await;
            if let Err(e) = lease.release().await {
                tracing::debug!(error = %e, "cannot release the bootstrap lease; it runs out by itself");
            }
            return made;
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "another process has held the bootstrap lease for over {:?}; is a process stuck on this store?",
                lease.ttl() * 2
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    api_keys: &ApiKeys,
    data_dir: &Path,
    now: tessera_core::Timestamp,
) -> anyhow::Result<Option<PathBuf>> {
    let keys = api_keys.list().await.context("cannot list API keys")?;
    if !keys.is_empty() {
        let path = data_dir.join(BOOTSTRAP_KEY_FILE);
        if !path.exists() {
            tracing::info!(
                path = %path.display(),
                "the store already has API keys: no bootstrap key here (a process sharing this store created it, \
                 in its own data directory); `tessera api-keys create` makes more"
            );
        }
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
    api_keys
        .insert(&rec)
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

/// How long events are kept (`[events] retention_days`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRetention {
    /// `None`: forever.
    days: Option<u32>,
    /// How long after a revocation its session's access tokens may still
    /// be presented (access-token TTL + leeway): the revocation feed serves
    /// such `revoked` events, so they are never deleted earlier.
    revocation_window_secs: i64,
}

impl EventRetention {
    pub fn of(config: &Config) -> Self {
        Self {
            days: (config.events.retention_days > 0).then_some(config.events.retention_days),
            revocation_window_secs: config
                .oauth
                .access_token_ttl_secs
                .saturating_add(crate::config::LEEWAY_SECS),
        }
    }

    /// Events before this instant may be deleted at `now`; `None` when they
    /// are kept forever. Never later than the start of the revocation
    /// window, whatever the configured days, so the feed never loses a
    /// revocation whose access tokens could still be valid.
    pub fn cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        let days = self.days?;
        let by_days = now.plus_secs(-i64::from(days).saturating_mul(86_400));
        let floor = now.plus_secs(-self.revocation_window_secs);
        Some(by_days.min(floor))
    }
}

/// Deletes expired sessions, then expired DPoP `jti` markers, then events
/// past retention, every `interval`,
/// each in batches of `batch` (one store call each, so requests
/// interleave), and clears the
/// sealed refresh successors whose grace window has passed once per grace
/// window (at most every `interval`), so a successor stays in the store
/// for at most about twice the grace window (SPEC §5). At grace 0 nothing
/// new is sealed; the sweep's pass clears what an older version left.
///
/// Every round runs only under the `sweep` lease, so one process sweeps
/// for all that share the store.
async fn sweeper(
    tokens: TokenService,
    (dpop, limiter): Expiring,
    events: EventLog,
    interval: Duration,
    batch: u32,
    retention: EventRetention,
    lease: Arc<DutyLease>,
) {
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
    let ours = async || match lease.hold().await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the sweep lease; skipping this round");
            false
        }
    };
    loop {
        tokio::select! {
            _ = sweep_tick.tick() => {
                if !ours().await {
                    continue;
                }
                match sessions.sweep(batch).await {
                    Ok(0) => {}
                    Ok(n) => {
                        metrics::counter!(crate::metrics::SWEPT).increment(n);
                        tracing::debug!(swept = n, "deleted expired sessions");
                    }
                    Err(e) => tracing::warn!(error = %e, "sweep failed"),
                }
                match dpop.sweep(batch).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "deleted expired DPoP proof markers"),
                    Err(e) => tracing::warn!(error = %e, "DPoP marker sweep failed"),
                }
                match limiter.sweep(batch).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "deleted expired rate-limit counters"),
                    Err(e) => tracing::warn!(error = %e, "rate-limit counter sweep failed"),
                }
                match sweep_events(&events, sessions.now(), batch, retention).await {
                    Ok(0) => {}
                    Ok(n) => {
                        metrics::counter!(crate::metrics::EVENTS_DELETED).increment(n);
                        tracing::debug!(deleted = n, "deleted events past retention");
                    }
                    Err(e) => tracing::warn!(error = %e, "event retention sweep failed"),
                }
            }
            _ = clear_tick.tick() => {
                if !ours().await {
                    continue;
                }
                match tokens.clear_sealed_successors(batch).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(cleared = n, "cleared sealed refresh successors past their grace window"),
                    Err(e) => tracing::warn!(error = %e, "clearing sealed refresh successors failed"),
                }
            }
        }
    }
}

/// The holders of short-lived records the sweeper deletes besides
/// sessions: DPoP proof markers and rate-limit counters.
type Expiring = (
    tessera_core::dpop::DpopVerifier,
    Arc<tessera_core::ratelimit::RateLimiter>,
);

/// Deletes the events past retention at `now` in batches; returns how
/// many went.
pub async fn sweep_events(
    events: &EventLog,
    now: Timestamp,
    batch: u32,
    retention: EventRetention,
) -> tessera_core::StoreResult<u64> {
    let Some(cutoff) = retention.cutoff(now) else {
        return Ok(0);
    };
    events.delete_before(cutoff, batch).await
}

/// Refreshes `tessera_sessions_active` and the exporter's histograms.
async fn gauges(sessions: Sessions, handle: metrics_exporter_prometheus::PrometheusHandle) {
    let mut tick = tokio::time::interval(GAUGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sessions.count_active().await {
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
mod tests;
