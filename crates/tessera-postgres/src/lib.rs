//! `postgres://`, `postgresql://` — Tessera's store for teams that already
//! run PostgreSQL: several processes over one database.
//!
//! [`PostgresStore`] implements every store capability of `tessera_core`.
//! Each state-changing method is one transaction at `READ COMMITTED`
//! whose conditional writes (`UPDATE … WHERE generation = $n`, `INSERT …
//! ON CONFLICT … WHERE`) decide races the way the trait docs ask; a read is
//! one statement, so it sees one snapshot. Transactions PostgreSQL aborts
//! to break a deadlock or a serialization conflict are run again (nothing
//! of them was committed).
//!
//! There is no cache in the process: every read, and so every verify,
//! asks the database. A revocation committed by one node is therefore
//! seen by every other node's next read, with no invalidation channel to
//! lose.
//!
//! Every failure becomes a [`StoreError`]: a database that is down, slow
//! (past `statement_timeout_ms`) or refuses us is
//! [`StoreError::Unavailable`] (the faces answer 503); nothing here panics
//! on what the database holds. The pool reconnects by itself. The schema
//! is migrated when a process first reaches the database (see `schema`).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod codec;
mod error;
mod options;
mod schema;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;

mod events;
mod keys;
mod misc;
mod refresh;
mod sessions;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tessera_core::{StoreError, StoreResult};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

pub use options::{MAX_POOL_SIZE, OptionsError, PostgresOptions, mask_password};

use crate::error::Fail;

/// Times a transaction PostgreSQL aborted as a deadlock victim or for a
/// serialization conflict is run again before the call fails.
const MAX_RETRIES: u32 = 8;

/// A Tessera store in a PostgreSQL database. Cheap to clone: clones share
/// the pool.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    options: PostgresOptions,
    /// The URL without its password, for errors and `Debug`.
    masked_url: String,
    /// Whether this process has brought the schema up to date; cleared
    /// when a table turns out to be missing (the database was replaced by
    /// an empty one under us), so the next call creates them again.
    migrated: AtomicBool,
    /// Held while migrating, so a process's callers migrate once.
    migrating: tokio::sync::Mutex<()>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.inner.masked_url)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database `url` names (its store options taken out
    /// of the query, see [`PostgresOptions`]) and brings its schema up to
    /// date. Fails if the database cannot be reached.
    pub async fn connect(url: &str) -> StoreResult<PostgresStore> {
        let store = Self::open_lazy(url)?;
        store.ping_db().await?;
        Ok(store)
    }

    /// Like [`connect`](Self::connect), without reaching the database:
    /// connections are made (and the schema migrated) on first use, so a
    /// process can start while the database is down and answer
    /// "unavailable" until it is back.
    pub fn open_lazy(url: &str) -> StoreResult<PostgresStore> {
        let (config, options) = PostgresOptions::from_url(url).map_err(|e| StoreError::Unavailable(e.0))?;
        Self::open_lazy_with(config, options, mask_password(url))
    }

    /// [`open_lazy`](Self::open_lazy) with explicit options; `masked_url`
    /// names the database in errors.
    pub fn open_lazy_with(
        mut config: tokio_postgres::Config,
        options: PostgresOptions,
        masked_url: String,
    ) -> StoreResult<PostgresStore> {
        // Session settings ride on the startup packet, so every pooled
        // connection has them from its first statement.
        let mut startup = config.get_options().unwrap_or_default().to_owned();
        startup.push_str(&format!(
            " -c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            options.statement_timeout.as_millis(),
            // A transaction is a handful of statements from this process;
            // one left open (a process frozen mid-way) must not hold its
            // row locks for long.
            (options.statement_timeout * 4).as_millis()
        ));
        if let Some(schema) = &options.schema {
            startup.push_str(&format!(" -c search_path={schema}"));
        }
        config.options(startup.trim());
        config.connect_timeout(options.connect_timeout);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("tessera");
        }
        let tls = tls::connector(options.tls_ca.as_deref())?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                // A connection the server closed is dropped when handed
                // back; a half-open one fails its next statement, which
                // the caller sees as unavailable, and is then dropped.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot build the PostgreSQL pool: {e}")))?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                options,
                masked_url,
                migrated: AtomicBool::new(false),
                migrating: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The options in force.
    pub fn options(&self) -> &PostgresOptions {
        &self.inner.options
    }

    /// A pooled connection to a database whose schema this process has
    /// brought up to date.
    pub(crate) async fn client(&self) -> StoreResult<Object> {
        let mut client = self.inner.pool.get().await.map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot reach PostgreSQL at {}: {}",
                self.inner.masked_url,
                pool_error(&e)
            ))
        })?;
        if !self.inner.migrated.load(Ordering::Acquire) {
            let _turn = self.inner.migrating.lock().await;
            if !self.inner.migrated.load(Ordering::Acquire) {
                schema::migrate(&mut client, self.inner.options.schema.as_deref()).await?;
                self.inner.migrated.store(true, Ordering::Release);
            }
        }
        Ok(client)
    }

    /// Looks at a failed call: a missing table means the schema is gone
    /// (the database was dropped and created again, or restored from
    /// before Tessera), and the next call migrates again instead of
    /// failing forever.
    pub(crate) fn failed(&self, f: Fail) -> StoreError {
        if let Fail::Pg(e) = &f
            && e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
        {
            tracing::warn!("a PostgreSQL table is missing; the schema is checked again on the next call");
            self.inner.migrated.store(false, Ordering::Release);
        }
        StoreError::from(f)
    }

    /// Runs one store operation within a deadline: the statement timeout
    /// bounds the server's side, this bounds ours (a server that stopped
    /// answering, a connection half-open after a crash).
    pub(crate) async fn bounded<T>(&self, op: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let o = &self.inner.options;
        let limit = o.connect_timeout + o.statement_timeout * 2;
        tokio::time::timeout(limit, op).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "PostgreSQL did not answer within {} ms",
                limit.as_millis()
            )))
        })
    }

    async fn ping_db(&self) -> StoreResult<()> {
        self.bounded(async {
            let c = self.client().await?;
            query_one(&c, "SELECT 1 FROM schema_version LIMIT 1", &[])
                .await
                .map_err(|f| self.failed(f))?;
            Ok(())
        })
        .await
    }
}

/// Why the pool could not give a connection, with the driver's reason.
fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => {
                let mut s = e.to_string();
                let mut source = std::error::Error::source(e);
                while let Some(inner) = source {
                    s.push_str(&format!(": {inner}"));
                    source = inner.source();
                }
                s
            }
        },
        other => other.to_string(),
    }
}

/// Runs `$body` in one transaction on a pooled connection, committing if
/// it evaluates to a value and rolling back if it fails (`?`) or
/// `return`s early (`return Ok(x)`: answer `x`, write nothing). The whole
/// transaction is run again when PostgreSQL aborted it as a deadlock
/// victim or for a serialization conflict.
macro_rules! transaction {
    ($store:expr, |$tx:ident| $body:block) => {{
        let store: &$crate::PostgresStore = $store;
        store
            .bounded(async {
                let mut attempt = 0u32;
                loop {
                    let mut client = store.client().await?;
                    let result: ::std::result::Result<_, $crate::error::Fail> = async {
                        let $tx = client.transaction().await?;
                        let value = $body;
                        $tx.commit().await?;
                        Ok(value)
                    }
                    .await;
                    match result {
                        Ok(v) => break Ok(v),
                        Err(f) if $crate::error::retryable(&f) && attempt < $crate::MAX_RETRIES => {
                            attempt += 1;
                            tracing::debug!(attempt, "PostgreSQL aborted a transaction; running it again");
                        }
                        Err(f) => break Err(store.failed(f)),
                    }
                }
            })
            .await
    }};
}
pub(crate) use transaction;

/// Runs `$body` (reads, or one self-contained statement) on a pooled
/// connection.
macro_rules! with_client {
    ($store:expr, |$c:ident| $body:block) => {{
        let store: &$crate::PostgresStore = $store;
        store
            .bounded(async {
                let client = store.client().await?;
                let $c = &client;
                let result: ::std::result::Result<_, $crate::error::Fail> = async { Ok($body) }.await;
                result.map_err(|f| store.failed(f))
            })
            .await
    }};
}
pub(crate) use with_client;

/// `sql` from the connection's statement cache, run with `params`.
pub(crate) async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Fail> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, params).await?)
}

pub(crate) async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, Fail> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&stmt, params).await?)
}

pub(crate) async fn query_one<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, Fail> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_one(&stmt, params).await?)
}

pub(crate) async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, Fail> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
}

/// A count from the database as the `u32` the traits return.
pub(crate) fn count32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(feature = "testing")]
impl PostgresStore {
    /// The applied migrations, in order (test support).
    pub async fn schema_versions(&self) -> StoreResult<Vec<i32>> {
        with_client!(self, |c| {
            query(c, "SELECT version FROM schema_version ORDER BY version", &[])
                .await?
                .iter()
                .map(|r| codec::col::<i32>(r, 0, "version"))
                .collect::<StoreResult<Vec<_>>>()?
        })
    }

    /// Runs `sql` in the store's schema (test support: corrupting or
    /// inspecting what the store keeps).
    pub async fn execute_for_test(&self, sql: &str) -> StoreResult<()> {
        with_client!(self, |c| {
            c.batch_execute(sql).await?;
        })
    }
}

#[cfg(feature = "testing")]
impl PostgresStore {
    /// Whether this store's connections to the database use TLS (test
    /// support).
    pub async fn tls_in_use(&self) -> StoreResult<bool> {
        with_client!(self, |c| {
            let row = query_one(c, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await?;
            codec::col::<bool>(&row, 0, "ssl")?
        })
    }
}
