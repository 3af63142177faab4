//! `redis://`, `rediss://`, `redis+cluster://`, `redis+sentinel://` —
//! Tessera's store for several processes over one Redis.
//!
//! [`RedisStore`] implements every store capability of `tessera_core`
//! ([`SessionStore`], [`RefreshStore`], [`EventStore`], [`SigningKeyStore`],
//! [`ApiKeyStore`], [`LeaseStore`], [`StoreHealth`]). Each state-changing
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

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use redis::{Cmd, ScriptInvocation, Value};
use tessera_core::{
    ApiKeyRecord, ApiKeyStore, CreateOptions, CreateOutcome, Event, EventKind, EventQuery, EventStore,
    LeaseStore, NewEvent, RefreshFamily, RefreshLookup, RefreshStore, RevokeReason, Rotation, SessionRecord,
    SessionStore, SigningKeyRecord, SigningKeyStore, StoreError, StoreHealth, StoreResult, Timestamp,
    TokenHash,
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
    async fn run_changing(&self, inv: &ScriptInvocation<'_>) -> StoreResult<Value> {
        let v = self.run(inv).await?;
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

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
    ) -> StoreResult<CreateOutcome> {
        let record = codec::encode_session(session)?;
        let mut inv = self.script(&SCRIPTS.create).await?;
        inv.arg(pack_handle(&session.handle))
            .arg(record)
            .arg(millis(opts.now));
        match &opts.replace {
            Some((h, v)) => inv.arg(pack_handle(h)).arg(v.to_string()),
            None => inv.arg("").arg(""),
        };
        match opts.max_per_subject {
            Some(m) => inv.arg(m),
            None => inv.arg(""),
        };
        Self::push_events(&mut inv, events)?;
        let out = array(self.run_changing(&inv).await?, "create")?;
        let mut it = out.into_iter();
        match text(it.next().unwrap_or(Value::Nil), "create")?.as_str() {
            "dup" => Err(StoreError::Duplicate),
            "conflict" => {
                self.settle().await;
                Ok(CreateOutcome::Conflict)
            }
            "ok" => Ok(CreateOutcome::Created {
                evicted: it
                    .map(|v| unpack_handle(&bytes(v, "create")?))
                    .collect::<StoreResult<_>>()?,
            }),
            other => Err(corrupt("create", format!("unexpected answer {other:?}"))),
        }
    }

    async fn get(&self, handle: &str) -> StoreResult<Option<Arc<SessionRecord>>> {
        let packed = pack_handle(handle);
        let v = self
            .cmd(redis::cmd("GET").arg(self.key(layout::SESSION, &packed)))
            .await?;
        match v {
            Value::Nil => Ok(None),
            v => Ok(Some(Arc::new(codec::decode_session(
                handle.to_owned(),
                &bytes(v, "session")?,
            )?))),
        }
    }

    async fn get_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Arc<SessionRecord>>> {
        let ticket = match self.inner.cache.as_ref().map(|c| c.lookup(hash)) {
            Some(Lookup::Hit(s)) => return Ok(Some(s)),
            Some(Lookup::Miss(t)) => t,
            None => None,
        };
        let found = self.read_by_token(hash).await?;
        if let (Some(c), Some(t), Some(s)) = (&self.inner.cache, ticket, &found) {
            c.insert(t, Arc::clone(s));
        }
        Ok(found)
    }

    async fn touch(
        &self,
        handle: &str,
        token_hash: &TokenHash,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.touch).await?;
        inv.arg(pack_handle(handle))
            .arg(&token_hash.0[..])
            .arg(millis(last_seen_at))
            .arg(millis(idle_expires_at));
        let matched = int(self.run_changing(&inv).await?, "touch")? == 1;
        if !matched && let Some(c) = &self.inner.cache {
            // Revoked or re-keyed by someone else: the copy here is stale
            // (its invalidation may still be on its way), and the caller
            // reads the session again next.
            c.evict(token_hash);
        }
        Ok(matched)
    }

    async fn update(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let record = codec::encode_session(session)?;
        let mut inv = self.script(&SCRIPTS.update).await?;
        inv.arg(pack_handle(&session.handle))
            .arg(record)
            .arg(expected_version.to_string());
        Self::push_events(&mut inv, events)?;
        match int(self.run_changing(&inv).await?, "update")? {
            1 => Ok(true),
            0 => {
                self.settle().await;
                Ok(false)
            }
            -1 => Err(StoreError::Duplicate),
            n => Err(corrupt("update", format!("unexpected answer {n}"))),
        }
    }

    async fn list_by_subject(&self, subject: &str) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let mut inv = self.script(&SCRIPTS.list_by_subject).await?;
        inv.arg(subject.as_bytes());
        pairs(self.run(&inv).await?, "list_by_subject")?
            .into_iter()
            .map(|(hc, rec)| {
                Ok(Arc::new(Self::session(
                    &bytes(hc, "list_by_subject")?,
                    &bytes(rec, "list_by_subject")?,
                )?))
            })
            .collect()
    }

    async fn revoke_subject(
        &self,
        subject: &str,
        except: Option<&str>,
        reason: RevokeReason,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        let mut inv = self.script(&SCRIPTS.revoke_subject).await?;
        inv.arg(subject.as_bytes())
            .arg(except.map(pack_handle).unwrap_or_default())
            .arg(reason_code(reason))
            .arg(millis(now));
        array(self.run_changing(&inv).await?, "revoke_subject")?
            .into_iter()
            .map(|v| unpack_handle(&bytes(v, "revoke_subject")?))
            .collect()
    }

    async fn revoke_all_active(&self, reason: RevokeReason, now: Timestamp, batch: u32) -> StoreResult<u32> {
        if batch == 0 {
            return Ok(0);
        }
        let lead = [
            reason_code(reason).to_string().into_bytes(),
            millis(now).to_string().into_bytes(),
        ];
        let (n, _) = self
            .walk(&SCRIPTS.revoke_all, true, &lead, 0, Some(batch))
            .await?;
        u32::try_from(n).map_err(|e| corrupt("revoke_all_active", e))
    }

    async fn sweep(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        if batch == 0 {
            return Ok(0);
        }
        let lead = [millis(now).to_string().into_bytes()];
        let start = self.inner.sweep_cursor.load(Ordering::Relaxed);
        let (n, stop) = self.walk(&SCRIPTS.sweep, true, &lead, start, Some(batch)).await?;
        self.inner.sweep_cursor.store(stop, Ordering::Relaxed);
        u32::try_from(n).map_err(|e| corrupt("sweep", e))
    }

    async fn count_active(&self, now: Timestamp) -> StoreResult<u64> {
        let lead = [millis(now).to_string().into_bytes()];
        Ok(self.walk(&SCRIPTS.count_active, false, &lead, 0, None).await?.0)
    }
}

impl RedisStore {
    /// `get_by_token` from Redis.
    async fn read_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Arc<SessionRecord>>> {
        let mut inv = self.script(&SCRIPTS.get_by_token).await?;
        inv.arg(&hash.0[..]);
        let v = self.run(&inv).await?;
        if matches!(v, Value::Nil) {
            return Ok(None);
        }
        let mut it = array(v, "get_by_token")?.into_iter();
        let hc = bytes(it.next().unwrap_or(Value::Nil), "get_by_token")?;
        let rec = bytes(it.next().unwrap_or(Value::Nil), "get_by_token")?;
        let s = Self::session(&hc, &rec)?;
        // The index keys the first half of the hash: the record decides.
        Ok((s.token_hash == *hash).then(|| Arc::new(s)))
    }

    async fn find(&self, hash: &TokenHash, with_session: bool) -> StoreResult<Option<Found>> {
        let mut inv = self.script(&SCRIPTS.family_find).await?;
        inv.arg(&hash.0[..]).arg(if with_session { "1" } else { "0" });
        let v = self.run(&inv).await?;
        if matches!(v, Value::Nil) {
            return Ok(None);
        }
        let mut it = array(v, "find_refresh")?.into_iter();
        let generation: u64 = text(it.next().unwrap_or(Value::Nil), "find_refresh")?
            .parse()
            .map_err(|e| corrupt("refresh token index", e))?;
        let fid = text(it.next().unwrap_or(Value::Nil), "find_refresh")?;
        let fields = value::field_pairs(it.next().unwrap_or(Value::Nil), "refresh family")?;
        let family = codec::decode_family(fid, &fields)?;
        let session = match it.next().unwrap_or(Value::Nil) {
            Value::Nil | Value::Boolean(false) => None,
            v => Some(Arc::new(codec::decode_session(
                family.handle.clone(),
                &bytes(v, "session")?,
            )?)),
        };
        Ok(Some((
            RefreshLookup {
                family: Arc::new(family),
                generation,
            },
            session,
        )))
    }
}

type Found = (RefreshLookup, Option<Arc<SessionRecord>>);

#[async_trait]
impl RefreshStore for RedisStore {
    async fn create_refresh_family(
        &self,
        family: &RefreshFamily,
        first: &TokenHash,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        let mut inv = self.script(&SCRIPTS.family_create).await?;
        inv.arg(family.id.as_bytes())
            .arg(pack_handle(&family.handle))
            .arg(codec::encode_family(family)?)
            .arg(family.generation.to_string())
            .arg(millis(family.rotated_at))
            .arg(family.current_sealed.as_deref().unwrap_or_default())
            .arg(if family.current_sealed.is_some() { "1" } else { "0" })
            .arg(&first.0[..]);
        match family.revoked {
            Some(r) => inv.arg(millis(r.at)).arg(reason_code(r.reason)),
            None => inv.arg("").arg(""),
        };
        Self::push_events(&mut inv, events)?;
        let out = array(self.run(&inv).await?, "create_refresh_family")?;
        match text(
            out.into_iter().next().unwrap_or(Value::Nil),
            "create_refresh_family",
        )?
        .as_str()
        {
            "ok" => Ok(()),
            "dup" => Err(StoreError::Duplicate),
            "nosession" => Err(StoreError::Unavailable(format!(
                "refresh family for session {}, which is not stored",
                family.handle
            ))),
            other => Err(corrupt(
                "create_refresh_family",
                format!("unexpected answer {other:?}"),
            )),
        }
    }

    async fn find_refresh(&self, hash: &TokenHash) -> StoreResult<Option<RefreshLookup>> {
        Ok(self.find(hash, false).await?.map(|(l, _)| l))
    }

    async fn find_refresh_with_session(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshLookup, Option<Arc<SessionRecord>>)>> {
        // One script: the token, its family and the session from one
        // snapshot, in one round trip.
        self.find(hash, true).await
    }

    async fn rotate_refresh(&self, r: &Rotation<'_>, events: &[NewEvent]) -> StoreResult<bool> {
        let Some(next) = r.expected_generation.checked_add(1) else {
            return Ok(false);
        };
        let mut inv = self.script(&SCRIPTS.family_rotate).await?;
        inv.arg(r.family_id.as_bytes())
            .arg(r.expected_generation.to_string())
            .arg(next.to_string())
            .arg(&r.successor.0[..])
            .arg(r.successor_sealed.unwrap_or_default())
            .arg(if r.successor_sealed.is_some() { "1" } else { "0" })
            .arg(millis(r.now));
        match &r.touch {
            Some(t) => inv
                .arg("1")
                .arg(pack_handle(t.handle))
                .arg(&t.token_hash.0[..])
                .arg(millis(t.last_seen_at))
                .arg(millis(t.idle_expires_at)),
            None => inv.arg("0").arg("").arg("").arg(0).arg(0),
        };
        Self::push_events(&mut inv, events)?;
        match int(self.run_changing(&inv).await?, "rotate_refresh")? {
            1 => Ok(true),
            0 => Ok(false),
            -1 => Err(StoreError::Duplicate),
            n => Err(corrupt("rotate_refresh", format!("unexpected answer {n}"))),
        }
    }

    async fn clear_sealed_successors(&self, rotated_before: Timestamp, batch: u32) -> StoreResult<u32> {
        if batch == 0 {
            return Ok(0);
        }
        let mut inv = self.script(&SCRIPTS.family_clear_sealed).await?;
        inv.arg(millis(rotated_before)).arg(batch);
        let n = int(self.run(&inv).await?, "clear_sealed_successors")?;
        u32::try_from(n).map_err(|e| corrupt("clear_sealed_successors", e))
    }

    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        reason: RevokeReason,
        now: Timestamp,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.family_revoke).await?;
        inv.arg(family_id.as_bytes())
            .arg(millis(now))
            .arg(reason_code(reason));
        Self::push_events(&mut inv, events)?;
        Ok(int(self.run(&inv).await?, "revoke_refresh_family")? == 1)
    }

    async fn refresh_families_of(&self, handle: &str) -> StoreResult<Vec<Arc<RefreshFamily>>> {
        let mut inv = self.script(&SCRIPTS.families_of).await?;
        inv.arg(pack_handle(handle));
        pairs(self.run(&inv).await?, "refresh_families_of")?
            .into_iter()
            .map(|(id, fields)| {
                let id = text(id, "refresh_families_of")?;
                let fields = value::field_pairs(fields, "refresh family")?;
                Ok(Arc::new(codec::decode_family(id, &fields)?))
            })
            .collect()
    }
}

impl RedisStore {
    /// Up to `count` stream entries after `after`, decoded.
    async fn read_events(&self, after: u64, count: usize) -> StoreResult<Vec<Event>> {
        let v = self
            .cmd(
                redis::cmd("XRANGE")
                    .arg(self.key(layout::EVENTS, b""))
                    .arg(format!("(0-{after}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        array(v, "events")?
            .into_iter()
            .map(|entry| {
                let mut it = array(entry, "event")?.into_iter();
                let id = text(it.next().unwrap_or(Value::Nil), "event id")?;
                let fields = value::field_pairs(it.next().unwrap_or(Value::Nil), "event")?;
                codec::decode_event(&id, &fields)
            })
            .collect()
    }

    async fn newest_event_id(&self) -> StoreResult<u64> {
        let v = self
            .cmd(
                redis::cmd("XREVRANGE")
                    .arg(self.key(layout::EVENTS, b""))
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        match array(v, "events")?.into_iter().next() {
            None => Ok(0),
            Some(entry) => {
                let mut it = array(entry, "event")?.into_iter();
                let id = text(it.next().unwrap_or(Value::Nil), "event id")?;
                id.strip_prefix("0-")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| corrupt("event id", id))
            }
        }
    }
}

#[async_trait]
impl EventStore for RedisStore {
    async fn events(&self, q: &EventQuery) -> StoreResult<Vec<Event>> {
        let limit = usize::try_from(q.limit).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let filtered = q.subject.is_some() || q.handle.is_some() || q.kind.is_some();
        let mut after = q.after;
        loop {
            let chunk = if filtered {
                EVENT_CHUNK
            } else {
                (limit - out.len()).min(EVENT_CHUNK)
            };
            let page = self.read_events(after, chunk).await?;
            let n = page.len();
            for e in page {
                after = e.id;
                let keep = q.subject.as_deref().is_none_or(|s| e.event.subject == s)
                    && q.handle.as_deref().is_none_or(|h| e.event.handle == h)
                    && q.kind.is_none_or(|k| e.event.kind == k);
                if keep {
                    out.push(e);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
            if n < chunk {
                return Ok(out);
            }
        }
    }

    async fn events_cursor_since(&self, kind: EventKind, since: Timestamp) -> StoreResult<u64> {
        if kind == EventKind::Revoked {
            let mut inv = self.script(&SCRIPTS.events_cursor).await?;
            inv.arg(millis(since));
            let n = int(self.run(&inv).await?, "events_cursor_since")?;
            return u64::try_from(n).map_err(|e| corrupt("events_cursor_since", e));
        }
        // No index for the other kinds: a walk of the log, as in SQLite.
        let mut first: Option<u64> = None;
        let mut after = 0;
        loop {
            let page = self.read_events(after, EVENT_CHUNK).await?;
            let n = page.len();
            for e in page {
                after = e.id;
                if e.event.kind == kind && e.event.at >= since && first.is_none_or(|f| e.id < f) {
                    first = Some(e.id);
                }
            }
            if n < EVENT_CHUNK {
                break;
            }
        }
        match first {
            Some(id) => Ok(id.saturating_sub(1)),
            None => self.newest_event_id().await,
        }
    }

    async fn delete_events_before(&self, cutoff: Timestamp, batch: u32) -> StoreResult<u32> {
        if batch == 0 {
            return Ok(0);
        }
        let mut inv = self.script(&SCRIPTS.events_delete).await?;
        inv.arg(millis(cutoff)).arg(batch);
        let n = int(self.run(&inv).await?, "delete_events_before")?;
        u32::try_from(n).map_err(|e| corrupt("delete_events_before", e))
    }
}

#[async_trait]
impl SigningKeyStore for RedisStore {
    async fn insert_signing_key(&self, key: &SigningKeyRecord, if_newest: Option<&str>) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.key_insert).await?;
        inv.arg(key.kid.as_bytes())
            .arg(codec::encode_signing_key(key)?)
            .arg(&key.private_sealed[..])
            .arg(millis(key.activates_at))
            .arg(if if_newest.is_some() { "1" } else { "0" })
            .arg(if_newest.unwrap_or_default().as_bytes())
            .arg(key.revoked_at.map(|t| millis(t).to_string()).unwrap_or_default());
        match int(self.run(&inv).await?, "insert_signing_key")? {
            1 => Ok(true),
            0 => Ok(false),
            -1 => Err(StoreError::Duplicate),
            n => Err(corrupt("insert_signing_key", format!("unexpected answer {n}"))),
        }
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let inv = self.script(&SCRIPTS.keys_all).await?;
        pairs(self.run(&inv).await?, "signing_keys")?
            .into_iter()
            .map(|(kid, fields)| {
                codec::decode_signing_key(
                    text(kid, "signing key")?,
                    &value::field_pairs(fields, "signing key")?,
                )
            })
            .collect()
    }

    async fn delete_signing_key(&self, kid: &str) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.key_delete).await?;
        inv.arg(kid.as_bytes());
        Ok(int(self.run(&inv).await?, "delete_signing_key")? == 1)
    }

    async fn revoke_signing_key(&self, kid: &str, now: Timestamp) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.key_revoke).await?;
        inv.arg(kid.as_bytes()).arg(millis(now));
        Ok(int(self.run(&inv).await?, "revoke_signing_key")? == 1)
    }
}

#[async_trait]
impl ApiKeyStore for RedisStore {
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        let mut inv = self.script(&SCRIPTS.api_insert).await?;
        inv.arg(key.id.as_bytes())
            .arg(&key.hash.0[..])
            .arg(codec::encode_api_key(key)?)
            .arg(millis(key.created_at))
            .arg(key.revoked_at.map(|t| millis(t).to_string()).unwrap_or_default());
        match int(self.run(&inv).await?, "insert_api_key")? {
            1 => Ok(()),
            -1 => Err(StoreError::Duplicate),
            n => Err(corrupt("insert_api_key", format!("unexpected answer {n}"))),
        }
    }

    async fn api_key_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<ApiKeyRecord>> {
        let mut inv = self.script(&SCRIPTS.api_by_hash).await?;
        inv.arg(&hash.0[..]);
        let v = self.run(&inv).await?;
        if matches!(v, Value::Nil) {
            return Ok(None);
        }
        let mut it = array(v, "api_key_by_hash")?.into_iter();
        let id = text(it.next().unwrap_or(Value::Nil), "API key")?;
        let fields = value::field_pairs(it.next().unwrap_or(Value::Nil), "API key")?;
        codec::decode_api_key(id, &fields).map(Some)
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let inv = self.script(&SCRIPTS.api_all).await?;
        pairs(self.run(&inv).await?, "list_api_keys")?
            .into_iter()
            .map(|(id, fields)| {
                codec::decode_api_key(text(id, "API key")?, &value::field_pairs(fields, "API key")?)
            })
            .collect()
    }

    async fn revoke_api_key(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        let mut inv = self.script(&SCRIPTS.api_revoke).await?;
        inv.arg(id.as_bytes()).arg(millis(now));
        Ok(int(self.run(&inv).await?, "revoke_api_key")? == 1)
    }
}

impl RedisStore {
    async fn lease(
        &self,
        op: &str,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut inv = SCRIPTS.lease.prepare_invoke();
        inv.key(self.key(layout::LEASE, name.as_bytes()))
            .arg(op)
            .arg(holder.as_bytes())
            .arg(millis(now))
            .arg(tessera_core::store::ttl_millis(ttl));
        Ok(int(self.run(&inv).await?, "lease")? == 1)
    }
}

#[async_trait]
impl LeaseStore for RedisStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.lease("acquire", name, holder, ttl, now).await
    }

    async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.lease("renew", name, holder, ttl, now).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool> {
        self.lease(
            "release",
            name,
            holder,
            std::time::Duration::ZERO,
            Timestamp::from_unix_millis(0),
        )
        .await
    }
}

#[async_trait]
impl StoreHealth for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        match self.cmd(&redis::cmd("PING")).await? {
            Value::SimpleString(s) if s == "PONG" => Ok(()),
            Value::BulkString(b) if b == b"PONG" => Ok(()),
            other => Err(StoreError::Unavailable(format!(
                "redis answered PING with {other:?}"
            ))),
        }
    }
}
