//! The per-process cache of sessions read by token hash, kept true by
//! invalidations every script publishes.
//!
//! A repeated `get_by_token` of the same session is answered from memory,
//! so verifying a session needs no Redis round trip. What keeps that
//! correct on many nodes:
//!
//! - **Invalidations from inside the scripts.** Every script that changes
//!   a session (revoke, update, touch, sweep, revoke-subject, revoke-all,
//!   a create that replaces or evicts, a rotation that slides its
//!   session) collects the token index fields (first 16 bytes of the token
//!   hash) of the sessions it changed, publishes them on `‹prefix›i` in
//!   the same atomic step (`scripts.rs`) and returns them to its caller,
//!   which evicts them at once (a process reads its own writes). Every
//!   process subscribes on a connection of its own and evicts on receipt.
//! - **Only while the subscription is known live.** The cache has a
//!   generation, odd while subscribed: a loss of the subscription (the
//!   connection ends, a heartbeat `PING` on it goes unanswered) makes it
//!   even, which drops every entry at once; it becomes odd again only once
//!   a new `SUBSCRIBE` is confirmed. An entry is served only in the
//!   generation it was read in, and a read taken in an earlier generation
//!   is never stored.
//! - **A read that raced an invalidation is not stored.** Each slot counts
//!   the invalidations that reached it; a read notes the count before it
//!   asks Redis and stores its answer only if the count has not moved
//!   (with the generation unchanged).
//! - **Time.** An entry is served for at most `ttl` after it was read (a
//!   second line of defence), and the core still checks every session's
//!   own expiry on every read.
//! - **A lost compare-and-swap waits.** When a conditional write finds the
//!   session changed (another node wrote it), the caller may hold a copy
//!   read just before the invalidation arrived; `SessionCache::barrier`
//!   sends a `PING` on the subscription and returns once everything
//!   published before it has been applied, so the caller's retry reads
//!   the new record.
//!
//! Size: `max_entries` direct-mapped slots in 16 shards (one lock each),
//! allocated on first use; a new entry replaces whatever held its slot,
//! so eviction costs nothing. Only the session itself is cached, never an
//! absence: a session that does not exist yet cannot be stale.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::aio::{PubSub, PubSubSink, PubSubStream};
use tessera_core::{SessionRecord, TokenHash};
use tokio::sync::{mpsc, oneshot, watch};

use crate::options::OptionsError;

/// The options of the cache; in a store URL, `cache=off`,
/// `cache_ttl_ms=N` and `cache_size=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOptions {
    /// Whether sessions are cached at all (`cache=on|off`, default on).
    pub enabled: bool,
    /// How long an entry is served after it was read from Redis, however
    /// live the subscription (`cache_ttl_ms`, default 5000, at most 60000).
    pub ttl: Duration,
    /// How many sessions are kept at most (`cache_size`, default 100000).
    pub max_entries: usize,
}

impl CacheOptions {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
    pub const MAX_TTL: Duration = Duration::from_secs(60);
    pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
    /// The store URL's query keys the cache reads.
    pub(crate) const KEYS: [&'static str; 3] = ["cache", "cache_ttl_ms", "cache_size"];

    /// No caching: every read goes to Redis.
    pub fn off() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Sets the option a store URL's query pair names (one of
    /// [`KEYS`](Self::KEYS)).
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<(), OptionsError> {
        match key {
            "cache" => {
                self.enabled = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(OptionsError(format!("cache {value:?}: on or off"))),
                }
            }
            "cache_ttl_ms" => {
                let max = Self::MAX_TTL.as_millis();
                let ms = value
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| (1..=max).contains(&u128::from(*ms)))
                    .ok_or_else(|| {
                        OptionsError(format!("cache_ttl_ms {value:?}: 1 to {max} milliseconds"))
                    })?;
                self.ttl = Duration::from_millis(ms);
            }
            "cache_size" => {
                self.max_entries = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        OptionsError(format!(
                            "cache_size {value:?}: a number of sessions, at least 1 (cache=off turns the cache off)"
                        ))
                    })?;
            }
            other => return Err(OptionsError(format!("{other} is not a cache option"))),
        }
        Ok(())
    }
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl: Self::DEFAULT_TTL,
            max_entries: Self::DEFAULT_MAX_ENTRIES,
        }
    }
}

/// What the cache has done so far ([`RedisStore::cache_stats`](crate::RedisStore::cache_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from memory.
    pub hits: u64,
    /// Reads that went to Redis.
    pub misses: u64,
    /// Sessions named by invalidations (received or returned by this
    /// process's own writes).
    pub invalidations: u64,
    /// Times the subscription was lost (and the cache dropped).
    pub losses: u64,
    /// Whether the subscription is live now (the cache is in use).
    pub live: bool,
}

const SHARDS: usize = 16;
/// Bytes of a token hash an invalidation names (the token index field).
pub(crate) const NAME_LEN: usize = 16;
/// How often the subscription proves it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

struct Entry {
    record: Arc<SessionRecord>,
    read_at: Instant,
    generation: u64,
}

#[derive(Default)]
struct Slot {
    entry: Option<Entry>,
    /// Invalidations that reached this slot (see the module docs).
    seq: u32,
}

#[derive(Default)]
struct Shard {
    /// Empty until the shard is first used.
    slots: Vec<Slot>,
}

/// A miss: what a read must bring back to [`SessionCache::insert`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    generation: u64,
    seq: u32,
}

pub(crate) enum Lookup {
    Hit(Arc<SessionRecord>),
    /// Read Redis; store the answer with the ticket, if there is one.
    Miss(Option<Ticket>),
}

/// Connects a new pub/sub connection (to the Redis the store uses).
pub(crate) type Connector =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = redis::RedisResult<PubSub>> + Send>> + Send + Sync>;

/// Pub/sub connections to the Redis `client` names.
pub(crate) fn connector(client: &redis::Client) -> Connector {
    let client = client.clone();
    Arc::new(move || {
        let client = client.clone();
        Box::pin(async move { client.get_async_pubsub().await })
    })
}

struct Core {
    shards: Box<[Mutex<Shard>]>,
    slots_per_shard: usize,
    ttl: Duration,
    /// Odd while the subscription is live; bumped on every loss and every
    /// confirmed (re)subscription.
    generation: AtomicU64,
    live: watch::Sender<u64>,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    losses: AtomicU64,
}

/// The cache of one store (shared by its clones); dropping it stops its
/// subscriber.
pub(crate) struct SessionCache {
    core: Arc<Core>,
    barriers: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

fn head(name: &[u8]) -> u64 {
    let mut h = [0u8; 8];
    h.copy_from_slice(&name[..8]);
    u64::from_le_bytes(h)
}

fn is_live(generation: u64) -> bool {
    generation % 2 == 1
}

impl Core {
    fn new(options: &CacheOptions) -> Self {
        let per_shard = options.max_entries.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            slots_per_shard: per_shard,
            ttl: options.ttl,
            generation: AtomicU64::new(0),
            live: watch::channel(0).0,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            losses: AtomicU64::new(0),
        }
    }

    /// The shard (locked, allocated) and the slot index of a name (the
    /// first [`NAME_LEN`] bytes of a token hash; only 8 are used).
    fn slot(&self, name: &[u8]) -> (MutexGuard<'_, Shard>, usize) {
        let h = head(name);
        let shard = (h % SHARDS as u64) as usize;
        let index = ((h / SHARDS as u64) % self.slots_per_shard as u64) as usize;
        // A panic while holding the lock cannot leave a slot half-written
        // (each write is one assignment), so a poisoned lock is still good.
        let mut guard = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        if guard.slots.is_empty() {
            guard.slots.resize_with(self.slots_per_shard, Slot::default);
        }
        (guard, index)
    }

    fn lookup(&self, hash: &TokenHash, now: Instant) -> Lookup {
        let generation = self.generation.load(Ordering::Acquire);
        if !is_live(generation) {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Lookup::Miss(None);
        }
        let (shard, i) = self.slot(&hash.0);
        let slot = &shard.slots[i];
        if let Some(e) = &slot.entry
            && e.generation == generation
            && now.saturating_duration_since(e.read_at) < self.ttl
            && e.record.token_hash.ct_eq(hash)
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Lookup::Hit(Arc::clone(&e.record));
        }
        let seq = slot.seq;
        drop(shard);
        self.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Miss(Some(Ticket { generation, seq }))
    }

    /// Stores what a read that started at `ticket` found, read at `now`.
    fn insert(&self, ticket: Ticket, record: Arc<SessionRecord>, now: Instant) {
        let (mut shard, i) = self.slot(&record.token_hash.0);
        // Under the shard lock: an invalidation of this slot either came
        // before (the count moved) or comes after (and removes the entry).
        if self.generation.load(Ordering::Acquire) != ticket.generation || shard.slots[i].seq != ticket.seq {
            return;
        }
        shard.slots[i].entry = Some(Entry {
            record,
            read_at: now,
            generation: ticket.generation,
        });
    }

    /// Evicts the session an invalidation names.
    fn invalidate(&self, name: &[u8]) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        let (mut shard, i) = self.slot(name);
        let slot = &mut shard.slots[i];
        slot.seq = slot.seq.wrapping_add(1);
        if slot
            .entry
            .as_ref()
            .is_some_and(|e| e.record.token_hash.0[..NAME_LEN] == name[..NAME_LEN])
        {
            slot.entry = None;
        }
    }

    /// Applies one invalidation message: names of [`NAME_LEN`] bytes each.
    /// Anything else on the channel is not understood, so nothing cached
    /// can be trusted: the whole cache goes (and stays live).
    fn apply(&self, payload: &[u8]) {
        if payload.is_empty() || !payload.len().is_multiple_of(NAME_LEN) {
            tracing::warn!(
                bytes = payload.len(),
                "session cache: an invalidation message it cannot read; dropping the whole cache"
            );
            self.flush();
            return;
        }
        for name in payload.chunks_exact(NAME_LEN) {
            self.invalidate(name);
        }
    }

    /// A new generation that is still live: every entry and every read in
    /// flight is void.
    fn flush(&self) {
        let _ = self
            .generation
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |g| {
                is_live(g).then_some(g + 2)
            });
        self.clear();
    }

    fn lost(&self) {
        if self
            .generation
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |g| {
                is_live(g).then_some(g + 1)
            })
            .is_ok()
        {
            self.losses.fetch_add(1, Ordering::Relaxed);
            self.live.send_replace(self.generation.load(Ordering::Acquire));
        }
        // The generation alone already voids every entry; this frees them.
        self.clear();
    }

    fn went_live(&self) {
        let _ = self
            .generation
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |g| {
                (!is_live(g)).then_some(g + 1)
            });
        self.live.send_replace(self.generation.load(Ordering::Acquire));
    }

    fn clear(&self) {
        for shard in &*self.shards {
            let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
            for slot in &mut s.slots {
                slot.entry = None;
            }
        }
    }

    fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            losses: self.losses.load(Ordering::Relaxed),
            live: is_live(self.generation.load(Ordering::Acquire)),
        }
    }
}

impl SessionCache {
    /// A cache whose subscriber (a task on the current Tokio runtime)
    /// subscribes to `channel` over connections from `connect`, waiting at
    /// most `timeouts.0` for a connection and its subscription, and
    /// `timeouts.1` for each heartbeat.
    pub(crate) fn start(
        options: &CacheOptions,
        connect: Connector,
        channel: Vec<u8>,
        timeouts: (Duration, Duration),
    ) -> Self {
        let core = Arc::new(Core::new(options));
        let (barriers, requests) = mpsc::unbounded_channel();
        let subscriber = Subscriber {
            core: Arc::clone(&core),
            requests,
            connect,
            channel,
            subscribe_timeout: timeouts.0,
            heartbeat_timeout: timeouts.1,
        };
        tokio::spawn(subscriber.run());
        Self { core, barriers }
    }

    pub(crate) fn lookup(&self, hash: &TokenHash) -> Lookup {
        self.core.lookup(hash, Instant::now())
    }

    pub(crate) fn insert(&self, ticket: Ticket, record: Arc<SessionRecord>) {
        self.core.insert(ticket, record, Instant::now());
    }

    /// Evicts a session by its token hash.
    pub(crate) fn evict(&self, hash: &TokenHash) {
        self.core.invalidate(&hash.0[..NAME_LEN]);
    }

    /// Evicts what one of this process's own scripts published (its answer
    /// carries the same names), before the caller sees the answer.
    pub(crate) fn evict_names(&self, names: &[u8]) {
        if !names.is_empty() {
            self.core.apply(names);
        }
    }

    /// Returns once every invalidation published before this call has been
    /// applied (or the subscription is not live, so nothing is served).
    pub(crate) async fn barrier(&self) {
        if !is_live(self.core.generation.load(Ordering::Acquire)) {
            return;
        }
        let (tx, rx) = oneshot::channel();
        if self.barriers.send(tx).is_ok() {
            // Answered after a PING round trip on the subscription, or
            // dropped when it is lost (which drops the cache): either way
            // nothing stale is served after this.
            let _ = rx.await;
        }
    }

    /// Waits (at most `within`) until the subscription is live.
    pub(crate) async fn wait_live(&self, within: Duration) -> bool {
        let mut rx = self.core.live.subscribe();
        tokio::time::timeout(within, rx.wait_for(|g| is_live(*g)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub(crate) fn stats(&self) -> CacheStats {
        self.core.stats()
    }
}

/// A write to sessions on its way: dropped before [`Pending::answered`]
/// (an error, or the caller's future dropped), it flushes the cache, since
/// the write may have happened without this process learning what it
/// changed.
pub(crate) struct Pending<'a>(Option<&'a Core>);

impl<'a> Pending<'a> {
    pub(crate) fn new(cache: Option<&'a SessionCache>) -> Self {
        Self(cache.map(|c| &*c.core))
    }

    /// The write answered: its own invalidations say what to evict.
    pub(crate) fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.flush();
        }
    }
}

struct Subscriber {
    core: Arc<Core>,
    /// Barrier requests; closed when the store is dropped, which ends the task.
    requests: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    connect: Connector,
    channel: Vec<u8>,
    subscribe_timeout: Duration,
    heartbeat_timeout: Duration,
}

/// Why a subscription ended.
enum End {
    Lost(String),
    StoreDropped,
}

impl Subscriber {
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        let mut failing = false;
        loop {
            let attempt = tokio::select! {
                r = tokio::time::timeout(self.subscribe_timeout, subscribe(&self.connect, &self.channel)) => {
                    r.unwrap_or_else(|_| Err("subscribe timed out".into()))
                }
                () = answer_while_not_live(&mut self.requests) => return,
            };
            match attempt {
                Ok((sink, stream)) => {
                    backoff = MIN_BACKOFF;
                    self.core.went_live();
                    if failing {
                        tracing::info!("session cache: subscribed to invalidations again; caching resumes");
                    } else {
                        tracing::debug!("session cache: subscribed to invalidations");
                    }
                    let end = self.serve(sink, stream).await;
                    self.core.lost();
                    match end {
                        End::StoreDropped => return,
                        End::Lost(why) => {
                            tracing::warn!(
                                reason = %why,
                                "session cache: lost the invalidation subscription; cache dropped until it is back"
                            );
                            failing = true;
                        }
                    }
                }
                Err(why) => {
                    if failing {
                        tracing::debug!(reason = %why, "session cache: still cannot subscribe");
                    } else {
                        tracing::warn!(reason = %why, "session cache: cannot subscribe to invalidations; not caching");
                        failing = true;
                    }
                }
            }
            // A pause before the next attempt, answering barriers meanwhile.
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = answer_while_not_live(&mut self.requests) => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn serve(&mut self, mut sink: PubSubSink, mut stream: PubSubStream) -> End {
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await;
        loop {
            let mut waiters = Vec::new();
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(m) => {
                        self.core.apply(m.get_payload_bytes());
                        continue;
                    }
                    None => return End::Lost("the connection closed".into()),
                },
                req = self.requests.recv() => match req {
                    Some(tx) => {
                        waiters.push(tx);
                        while let Ok(tx) = self.requests.try_recv() {
                            waiters.push(tx);
                        }
                    }
                    None => return End::StoreDropped,
                },
                _ = beat.tick() => {}
            }
            if let Err(why) = self.ping(&mut sink, &mut stream).await {
                return End::Lost(why);
            }
            for tx in waiters {
                let _ = tx.send(());
            }
        }
    }

    /// A PING on the subscription, applying the messages that arrive
    /// meanwhile. Its answer comes after every message published before
    /// Redis ran it, and the client hands those on first: once this
    /// returns, they have all been applied.
    async fn ping(&self, sink: &mut PubSubSink, stream: &mut PubSubStream) -> Result<(), String> {
        let pong = sink.ping::<redis::Value>();
        tokio::pin!(pong);
        let deadline = tokio::time::sleep(self.heartbeat_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                msg = stream.next() => match msg {
                    Some(m) => self.core.apply(m.get_payload_bytes()),
                    None => return Err("the connection closed".into()),
                },
                r = &mut pong => {
                    r.map_err(|e| format!("heartbeat: {e}"))?;
                    break;
                }
                () = &mut deadline => return Err("heartbeat unanswered".into()),
            }
        }
        loop {
            match futures::FutureExt::now_or_never(stream.next()) {
                Some(Some(m)) => self.core.apply(m.get_payload_bytes()),
                Some(None) => return Err("the connection closed".into()),
                None => return Ok(()),
            }
        }
    }
}

async fn subscribe(connect: &Connector, channel: &[u8]) -> Result<(PubSubSink, PubSubStream), String> {
    let pubsub = connect().await.map_err(|e| e.to_string())?;
    let (mut sink, stream) = pubsub.split();
    sink.subscribe(channel).await.map_err(|e| e.to_string())?;
    Ok((sink, stream))
}

/// While not subscribed nothing is served, so a barrier has nothing to
/// wait for. Returns when the store is dropped.
async fn answer_while_not_live(requests: &mut mpsc::UnboundedReceiver<oneshot::Sender<()>>) {
    while let Some(tx) = requests.recv().await {
        let _ = tx.send(());
    }
}

#[cfg(test)]
mod tests;
