//! `redis://`, `rediss://`, `redis+cluster://`, `redis+sentinel://` —
//! Tessera's store for several processes over one Redis.
//!
//! [`RedisStore`] implements every store capability of `tessera_core`
//! ([`SessionStore`], [`RefreshStore`], [`EventStore`], [`SigningKeyStore`],
//! [`ApiKeyStore`], [`LeaseStore`], [`ReplayStore`], [`RateLimitStore`], [`StoreHealth`]). Each state-changing
//! method is one Lua script (one atomic step on the server, one round
//! trip); a read is one command or one read-only script. The key layout is in [`layout`].
//!
//! Every failure becomes a [`StoreError`]: a lost connection or a timeout
//! is [`StoreError::Unavailable`] (the faces answer 503), a value that does
//! not decode is [`StoreError::Corrupt`]; nothing here panics on what Redis
//! holds. The connection (`conn`) reconnects by itself when Redis comes
//! back: to one server (`redis://`, `rediss://`), a Redis Cluster
//! (`redis+cluster://`) or the master Sentinels name (`redis+sentinel://`);
//! the URL forms are in [`RedisOptions`]' docs and docs/configuration.md.
//!
//! Sessions read by token hash are cached in the process (see [`cache`]:
//! invalidations published by the scripts themselves, a cache used only
//! while its subscription is live), so repeated verifications need no
//! round trip; `?cache=off` turns that off.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod cache;
mod codec;
mod conn;
pub mod layout;
mod options;
mod scripts;
#[cfg(feature = "testing")]
pub mod testing;
mod value;

mod events;
mod keys;
mod leases;
mod refresh;
mod sessions;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use redis::{Cmd, ScriptInvocation, Value};
use tessera_core::store::WindowTotals;
use tessera_core::{
    ApiKeyRecord, ApiKeyStore, ClientRecord, ClientStore, CreateOptions, CreateOutcome, Event, EventKind,
    EventQuery, EventStore, LeaseStore, NewEvent, RateLimitStore, RefreshFamily, RefreshLookup, RefreshStore,
    ReplayStore, RevokeReason, Rotation, SessionRecord, SessionStore, SigningKeyRecord, SigningKeyStore,
    StoreError, StoreHealth, StoreResult, Timestamp, TokenHash,
};

pub use cache::{CacheOptions, CacheStats};
pub use options::{OptionsError, RedisOptions};

use crate::cache::{Lookup, SessionCache};
use crate::codec::{corrupt, event_args, pack_handle, reason_code, unpack_handle};
use crate::scripts::SCRIPTS;
use crate::value::{array, bytes, int, pairs, text};

/// Buckets one script call walks at most (sweep, count, revoke-all), so no
/// call holds the server for long.
const BUCKETS_PER_CALL: u32 = 1024;

/// Events one `XRANGE` reads at most while filtering.
const EVENT_CHUNK: usize = 1000;

/// A complete [`tessera_core::Store`] on one Redis (see the crate docs).
/// Cloning shares the connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: conn::Conn,
    options: RedisOptions,
    /// The bucket count in force (stored in Redis by the first process),
    /// read on first use.
    buckets: tokio::sync::OnceCell<u32>,
    /// Where the next sweep starts, so successive sweeps spread the work.
    sweep_cursor: AtomicU32,
    /// Sessions by token hash; `None` with `cache=off`.
    cache: Option<SessionCache>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.options.prefix)
            .field("buckets", &self.inner.buckets.get())
            .finish_non_exhaustive()
    }
}

/// A script that finds a value it cannot read answers `CORRUPT …`; every
/// other failure (connection, timeout, a refused command) means Redis could
/// not answer.
pub(crate) fn map_err(e: redis::RedisError) -> StoreError {
    if e.code() == Some("CORRUPT") {
        StoreError::Corrupt(e.detail().unwrap_or("a stored value").to_owned())
    } else {
        StoreError::Unavailable(format!("redis: {e}"))
    }
}

impl RedisStore {
    /// Connects to the Redis a store URL names (`redis://`, `rediss://`,
    /// `redis+cluster://`, `redis+sentinel://`; see [`RedisOptions`]); the
    /// store's own options come from its query.
    pub async fn connect(url: &str) -> StoreResult<RedisStore> {
        Self::open_lazy(url)?.ready().await
    }

    /// Checks the layout (connecting) and gives the session cache its
    /// subscription's time to come up.
    async fn ready(self) -> StoreResult<RedisStore> {
        self.buckets().await?;
        // Caching starts with the subscription; without it the store works
        // uncached until the subscriber gets through.
        if let Some(c) = &self.inner.cache {
            c.wait_live(self.inner.options.connect_timeout).await;
        }
        Ok(self)
    }

    /// Connects to `redis_url` (passed to the `redis` crate as is) with
    /// `options`. Fails if Redis cannot be reached, or if its keys under
    /// the prefix were laid out differently (another bucket count).
    pub async fn connect_with(redis_url: &str, options: RedisOptions) -> StoreResult<RedisStore> {
        Self::open_lazy_with(redis_url, options)?.ready().await
    }

    /// Like [`connect`](Self::connect), without waiting for Redis: the
    /// connection is made (and the layout checked) on first use, so a
    /// process can start while Redis is down and answer "unavailable"
    /// until it is back. Must be called within a Tokio runtime.
    pub fn open_lazy(url: &str) -> StoreResult<RedisStore> {
        let (target, options) =
            options::RedisTarget::parse(url).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Self::open_target(&target, options)
    }

    /// [`open_lazy`](Self::open_lazy) with explicit options, for one server
    /// (`redis_url` goes to the `redis` crate as is).
    pub fn open_lazy_with(redis_url: &str, options: RedisOptions) -> StoreResult<RedisStore> {
        Self::open_target(&options::RedisTarget::Single(redis_url.to_owned()), options)
    }

    /// Like [`connect`](Self::connect) with the options given instead of
    /// those of the URL's query (which must have none of the store's).
    pub async fn connect_url_with(url: &str, options: RedisOptions) -> StoreResult<RedisStore> {
        let (target, _) =
            options::RedisTarget::parse(url).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Self::open_target(&target, options)?.ready().await
    }

    fn open_target(target: &options::RedisTarget, options: RedisOptions) -> StoreResult<RedisStore> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::Unavailable(
                "a Redis store must be opened within a Tokio runtime".into(),
            ));
        }
        let conn = conn::Conn::open_lazy(target, &options)?;
        let cache = match options.cache.enabled {
            true => Some(SessionCache::start(
                &options.cache,
                conn.pubsub_connector(target, &options)?,
                layout::key(&options.prefix, layout::INVALIDATIONS, b""),
                (
                    options.connect_timeout + options.response_timeout,
                    options.response_timeout,
                ),
            )),
            false => None,
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                options,
                buckets: tokio::sync::OnceCell::new(),
                sweep_cursor: AtomicU32::new(0),
                cache,
            }),
        })
    }

    /// The options in force.
    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    /// What the session cache has done so far; `None` with `cache=off`.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.inner.cache.as_ref().map(SessionCache::stats)
    }

    /// Waits (at most `within`) until the session cache is subscribed to
    /// invalidations, so reads are cached from then on; false if it is not
    /// (or the cache is off).
    pub async fn wait_cache_live(&self, within: std::time::Duration) -> bool {
        match &self.inner.cache {
            Some(c) => c.wait_live(within).await,
            None => false,
        }
    }

    /// The number of index buckets (see [`layout`]), as stored in Redis.
    pub async fn buckets(&self) -> StoreResult<u32> {
        self.inner
            .buckets
            .get_or_try_init(|| {
                let mut conn = self.inner.conn.clone();
                async move { layout::check_meta(&mut conn, &self.inner.options).await }
            })
            .await
            .copied()
    }

    fn key(&self, kind: u8, id: &[u8]) -> Vec<u8> {
        layout::key(&self.inner.options.prefix, kind, id)
    }

    /// A script call with the arguments every script starts with.
    async fn script(&self, s: &'static redis::Script) -> StoreResult<ScriptInvocation<'static>> {
        let buckets = self.buckets().await?;
        let mut inv = s.prepare_invoke();
        inv.key(self.key(layout::META, b""))
            .arg(self.inner.options.prefix.as_bytes())
            .arg(buckets)
            .arg(self.inner.options.grace_ms());
        Ok(inv)
    }

    async fn run(&self, inv: &ScriptInvocation<'_>) -> StoreResult<Value> {
        let mut conn = self.inner.conn.clone();
        inv.invoke_async(&mut conn).await.map_err(map_err)
    }

    /// Runs a script that changes sessions (wrapped by `scripts.rs`): evicts
    /// the sessions it names from this process's cache before the caller
    /// sees its answer, which it returns.
    ///
    /// Until that answer arrives, whether the script ran is unknown: a
    /// timeout or a lost connection may come after Redis carried it out
    /// (its invalidation then reaches the subscriber late, or never when
    /// the subscription is gone too), and a caller whose future is
    /// dropped (the service's request timeout) never sees an answer. So a
    /// call that ends any other way than with its answer drops this
    /// process's whole cache: a revoke answered 503 or 408 is never
    /// followed by a "valid" served from memory.
    async fn run_changing(&self, inv: &ScriptInvocation<'_>) -> StoreResult<Value> {
        let pending = cache::Pending::new(self.inner.cache.as_ref());
        let v = self.run(inv).await?;
        pending.answered();
        let mut it = array(v, "script answer")?.into_iter();
        let answer = it.next().unwrap_or(Value::Nil);
        let names = bytes(it.next().unwrap_or(Value::Nil), "invalidations")?;
        if let Some(c) = &self.inner.cache {
            c.evict_names(&names);
        }
        Ok(answer)
    }

    /// After a conditional write found a session changed by someone else:
    /// the copy the caller read may be one whose invalidation was still
    /// on its way; wait for it, so the retry reads the new record.
    async fn settle(&self) {
        if let Some(c) = &self.inner.cache {
            c.barrier().await;
        }
    }

    async fn cmd(&self, cmd: &Cmd) -> StoreResult<Value> {
        let mut conn = self.inner.conn.clone();
        cmd.query_async(&mut conn).await.map_err(map_err)
    }

    fn push_events(inv: &mut ScriptInvocation<'_>, events: &[NewEvent]) -> StoreResult<()> {
        inv.arg(events.len());
        for e in events {
            for a in event_args(e)? {
                inv.arg(a);
            }
        }
        Ok(())
    }

    fn session(handle_packed: &[u8], record: &[u8]) -> StoreResult<SessionRecord> {
        codec::decode_session(unpack_handle(handle_packed)?, record)
    }

    /// Runs a bucket-walking script from `start` until it has done `want`
    /// (or, with `want` = None, over every bucket once); returns the total
    /// and the bucket where it stopped.
    async fn walk(
        &self,
        script: &'static redis::Script,
        changing: bool,
        lead: &[Vec<u8>],
        start: u32,
        want: Option<u32>,
    ) -> StoreResult<(u64, u32)> {
        let nb = self.buckets().await?;
        let (mut b, mut visited, mut done) = (start % nb, 0u32, 0u64);
        while visited < nb {
            let n = (nb - b).min(BUCKETS_PER_CALL).min(nb - visited);
            let mut inv = self.script(script).await?;
            for a in lead {
                inv.arg(a);
            }
            if let Some(w) = want {
                inv.arg(u64::from(w) - done);
            }
            inv.arg(b).arg(n);
            let v = if changing {
                self.run_changing(&inv).await?
            } else {
                self.run(&inv).await?
            };
            let (got, stop) = match want {
                Some(_) => {
                    let a = array(v, "bucket walk")?;
                    let mut it = a.into_iter();
                    let got = int(it.next().unwrap_or(Value::Nil), "bucket walk")?;
                    let stop = int(it.next().unwrap_or(Value::Nil), "bucket walk")?;
                    (got, stop)
                }
                None => (int(v, "bucket walk")?, i64::from(b + n)),
            };
            done += u64::try_from(got).map_err(|e| corrupt("bucket walk", e))?;
            let stop = u32::try_from(stop).map_err(|e| corrupt("bucket walk", e))?;
            if want.is_some_and(|w| done >= u64::from(w)) {
                return Ok((done, stop % nb));
            }
            visited += n;
            b = (b + n) % nb;
        }
        Ok((done, b))
    }
}

/// The Redis client for `redis_url`; for `rediss://`, with the CA file of
/// the options if there is one, else the system's trust store.
fn client(redis_url: &str, options: &RedisOptions) -> StoreResult<redis::Client> {
    if redis_url.starts_with("rediss:") {
        // The redis crate builds its rustls config from the process's
        // default provider; install aws-lc-rs unless one already is.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    match &options.tls_ca {
        Some(path) => {
            let root_cert = std::fs::read(path).map_err(|e| {
                StoreError::Unavailable(format!("cannot read tls_ca {}: {e}", path.display()))
            })?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            };
            redis::Client::build_with_tls(redis_url, certs).map_err(map_err)
        }
        None => redis::Client::open(redis_url).map_err(map_err),
    }
}

fn millis(t: Timestamp) -> i64 {
    t.unix_millis()
}

/// A refresh lookup with its session, as `find_refresh_with_session` answers.
type Found = (RefreshLookup, Option<Arc<SessionRecord>>);
