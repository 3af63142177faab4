//! Abuse limits: "at most N requests per window" per subject (an address,
//! an API key, a client), counted in the store so that every process over
//! one store enforces one limit.
//!
//! A request never waits for the store. Each process counts locally and
//! decides from what it knows — the deployment's total for the window as
//! of its last [`sync`](RateLimiter::sync) plus its own hits since — and a
//! background task calls `sync` every interval (100 ms by default), which
//! adds the local hits to the store's counter and reads back the
//! deployment's total. The decision therefore costs a hash-map lookup under
//! a mutex, and the limit is exact on one node. Across nodes a node knows
//! the others' hits as of its last sync that had something of its own to
//! add, so the limit can be exceeded by at most what each node admits for
//! one subject within one sync interval before that sync tells it the
//! total.
//!
//! The estimate is a sliding window: the previous fixed window's total,
//! weighted by how much of it still overlaps the last `window`, plus the
//! current window's. Refused requests are not counted, so a client that
//! slows down to the limit gets through again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use aws_lc_rs::digest;

use crate::store::{RateLimitStore, StoreResult, WindowTotals};
use crate::time::Clock;

/// One limit: at most `requests` per `window_secs`. Zero requests turns
/// it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub requests: u64,
    pub window_secs: u32,
}

impl Limit {
    pub const fn new(requests: u64, window_secs: u32) -> Limit {
        Limit {
            requests,
            window_secs,
        }
    }

    pub const fn is_off(&self) -> bool {
        self.requests == 0 || self.window_secs == 0
    }
}

/// A named limit. The name goes into the stored counter's key, so every
/// process must give one rule one name; the tag tells rules apart locally
/// (distinct per rule within one limiter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub tag: u8,
    pub limit: Limit,
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the limit: try again in this many seconds (at least 1).
    Limited {
        retry_after_secs: u64,
    },
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        matches!(self, Decision::Allowed)
    }
}

/// Subjects are kept inline up to this length, longer ones by their
/// SHA-256: a local key never allocates.
const INLINE: usize = 32;
/// The subject length that marks a rule's overflow counter (see
/// [`RateLimiter::with_max_entries`]); real subjects are at most 32.
const OVERFLOW: u8 = u8::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LocalKey {
    tag: u8,
    len: u8,
    bytes: [u8; INLINE],
}

impl LocalKey {
    fn new(tag: u8, subject: &[u8]) -> LocalKey {
        let mut bytes = [0u8; INLINE];
        if subject.len() <= INLINE {
            bytes[..subject.len()].copy_from_slice(subject);
            LocalKey {
                tag,
                len: subject.len() as u8,
                bytes,
            }
        } else {
            bytes.copy_from_slice(digest::digest(&digest::SHA256, subject).as_ref());
            // Lengths 33..=64 mark a digested subject, so a 32-byte subject
            // equal to some digest is still another key.
            LocalKey {
                tag,
                len: INLINE as u8 + 1,
                bytes,
            }
        }
    }

    fn overflow(tag: u8) -> LocalKey {
        LocalKey {
            tag,
            len: OVERFLOW,
            bytes: [0; INLINE],
        }
    }

    /// The stored counter's key: the same on every process for one rule
    /// name and subject.
    fn digest(&self, name: &str) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"tessera-rate-limit\0");
        ctx.update(name.as_bytes());
        ctx.update(&[0, self.len]);
        ctx.update(&self.bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

#[derive(Debug)]
struct Entry {
    name: &'static str,
    window_ms: u64,
    /// The window (index) the counts below belong to.
    window: u64,
    /// The deployment's total for `window` at the last sync.
    synced: u64,
    /// Local hits being added to the store by a sync now.
    in_flight: u64,
    /// Local hits not yet handed to a sync.
    pending: u64,
    /// The deployment's total for `window - 1`.
    previous: u64,
    /// Hits of `window - 1` no sync has taken yet (the window rolled
    /// first): still owed to the store.
    carried: u64,
}

impl Entry {
    fn current(&self) -> u64 {
        self.synced + self.in_flight + self.pending
    }

    /// Moves the entry to `window`, the previous window's count becoming
    /// the weight of the slide.
    fn roll(&mut self, window: u64) {
        if window == self.window {
            return;
        }
        if window == self.window + 1 {
            self.previous = self.current();
            self.carried = self.pending;
        } else {
            // Two windows on, the old hits weigh nothing; the store's
            // count of them would be dropped unread, so they are too.
            self.previous = 0;
            self.carried = 0;
        }
        self.window = window;
        self.synced = 0;
        self.in_flight = 0;
        self.pending = 0;
    }
}

/// The local side of the limits; see the module docs.
pub struct RateLimiter {
    store: Arc<dyn RateLimitStore>,
    clock: Arc<dyn Clock>,
    max_entries: usize,
    entries: Mutex<HashMap<LocalKey, Entry>>,
    /// One sync at a time (a second caller returns at once).
    syncing: AtomicBool,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

/// Counters kept locally at most, by default.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

impl RateLimiter {
    pub fn new(store: Arc<dyn RateLimitStore>, clock: Arc<dyn Clock>) -> RateLimiter {
        RateLimiter {
            store,
            clock,
            max_entries: DEFAULT_MAX_ENTRIES,
            entries: Mutex::new(HashMap::new()),
            syncing: AtomicBool::new(false),
        }
    }

    /// Caps the local counters. Past the cap, a subject without a counter
    /// shares its rule's one overflow counter until a sync drops idle
    /// ones: memory stays bounded when a flood of addresses arrives, at
    /// the cost of limiting those newcomers together.
    pub fn with_max_entries(mut self, max: usize) -> RateLimiter {
        self.max_entries = max.max(1);
        self
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<LocalKey, Entry>> {
        // A panic elsewhere cannot leave a count half-updated: every
        // update is a few integer assignments.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one request of `subject` under `rule` if the limit allows
    /// it; a refused request is not counted.
    pub fn check(&self, rule: &Rule, subject: &[u8]) -> Decision {
        self.decide(rule, subject, Mode::Count)
    }

    /// What [`check`](Self::check) would answer, counting nothing.
    pub fn peek(&self, rule: &Rule, subject: &[u8]) -> Decision {
        self.decide(rule, subject, Mode::Peek)
    }

    /// Counts one event (a failed attempt) whatever the limit says.
    pub fn add(&self, rule: &Rule, subject: &[u8]) {
        self.decide(rule, subject, Mode::Add);
    }

    fn decide(&self, rule: &Rule, subject: &[u8], mode: Mode) -> Decision {
        let limit = rule.limit;
        if limit.is_off() {
            return Decision::Allowed;
        }
        let window_ms = u64::from(limit.window_secs) * 1000;
        let now = u64::try_from(self.clock.now().unix_millis()).unwrap_or(0);
        let window = now / window_ms;
        let elapsed = now % window_ms;

        let mut entries = self.lock();
        let mut key = LocalKey::new(rule.tag, subject);
        if !entries.contains_key(&key) && entries.len() >= self.max_entries {
            key = LocalKey::overflow(rule.tag);
        }
        if mode == Mode::Peek && !entries.contains_key(&key) {
            return Decision::Allowed;
        }
        let entry = entries.entry(key).or_insert_with(|| Entry {
            name: rule.name,
            window_ms,
            window,
            synced: 0,
            in_flight: 0,
            pending: 0,
            previous: 0,
            carried: 0,
        });
        entry.roll(window);
        let current = entry.current();
        let decision = limited(limit.requests, window_ms, elapsed, entry.previous, current);
        match (mode, decision) {
            (Mode::Add, _) | (Mode::Count, Decision::Allowed) => entry.pending += 1,
            _ => {}
        }
        decision
    }

    /// Adds every local count to the store and reads back the deployment's
    /// totals; drops counters idle for two windows. On a store error the
    /// hits stay counted locally for the next sync, and the error is
    /// returned after every counter was tried.
    pub async fn sync(&self) -> StoreResult<()> {
        if self.syncing.swap(true, Ordering::Acquire) {
            return Ok(());
        }
        let _one = SyncGuard(&self.syncing);
        let now_ts = self.clock.now();
        let now = u64::try_from(now_ts.unix_millis()).unwrap_or(0);
        let mut batch = Vec::new();
        {
            let mut entries = self.lock();
            entries.retain(|_, e| {
                let current_window = now / e.window_ms;
                // Idle: nothing to add and nothing counted in the windows
                // that still weigh.
                !(e.pending == 0 && e.in_flight == 0 && e.carried == 0 && e.window + 1 < current_window)
            });
            for (key, e) in entries.iter_mut() {
                if e.carried > 0 {
                    // Owed to the previous window; a failure drops them
                    // (the window is over, and they weigh locally through
                    // `previous` already).
                    batch.push((*key, e.name, e.window - 1, e.window_ms, e.carried));
                    e.carried = 0;
                }
                if e.pending > 0 {
                    batch.push((*key, e.name, e.window, e.window_ms, e.pending));
                    e.in_flight += e.pending;
                    e.pending = 0;
                }
            }
        }
        let mut first_error = None;
        for (key, name, window, window_ms, hits) in batch {
            // Kept for the window and the next, which weighs it.
            let expires = i64::try_from((window + 2).saturating_mul(window_ms)).unwrap_or(i64::MAX);
            let result = self
                .store
                .add_hits(
                    &key.digest(name),
                    window,
                    hits,
                    crate::Timestamp::from_unix_millis(expires),
                    now_ts,
                )
                .await;
            let mut entries = self.lock();
            let Some(e) = entries.get_mut(&key) else { continue };
            match result {
                Ok(totals) => settle(e, window, hits, totals),
                Err(err) => {
                    if e.window == window {
                        e.in_flight = e.in_flight.saturating_sub(hits);
                        e.pending += hits;
                    }
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Deletes expired counters from the store, `batch` at a time (the
    /// sweeper's round); returns how many went.
    pub async fn sweep(&self, batch: u32) -> StoreResult<u64> {
        let batch = batch.max(1);
        let mut total = 0u64;
        loop {
            let n = self.store.sweep_counters(self.clock.now(), batch).await?;
            total += u64::from(n);
            if n < batch {
                return Ok(total);
            }
        }
    }

    /// How many subjects are counted locally now.
    pub fn local_counters(&self) -> usize {
        self.lock().len()
    }
}

/// Ends a sync, however its future ends (also when dropped mid-way).
struct SyncGuard<'a>(&'a AtomicBool);

impl Drop for SyncGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Count,
    Peek,
    Add,
}

/// Records a sync's answer for the window it added to.
fn settle(e: &mut Entry, window: u64, hits: u64, totals: WindowTotals) {
    if e.window == window {
        e.in_flight = e.in_flight.saturating_sub(hits);
        // The store's total includes these hits (and every earlier sync's).
        e.synced = e.synced.max(totals.current);
        e.previous = e.previous.max(totals.previous);
    } else if e.window == window + 1 {
        // The window rolled while the sync ran: its total is now the
        // previous one.
        e.previous = e.previous.max(totals.current);
    }
}

/// The sliding-window decision for one more request, and when a refused
/// client may try again.
fn limited(limit: u64, window_ms: u64, elapsed: u64, previous: u64, current: u64) -> Decision {
    let remaining = window_ms - elapsed;
    // previous × remaining / window, in integers (u128: no overflow).
    let weighted = (u128::from(previous) * u128::from(remaining) / u128::from(window_ms)) as u64;
    if weighted.saturating_add(current).saturating_add(1) <= limit {
        return Decision::Allowed;
    }
    // Allowed at `t` into a window once ⌊previous × (window − t) / window⌋
    // + current + 1 ≤ limit, i.e. previous × (window − t) < (limit −
    // current) × window: the first such `t` is window − ⌊((limit − current)
    // × window − 1) / previous⌋.
    let first_fit = |previous: u64, current: u64| -> u64 {
        let room = u128::from(limit - current) * u128::from(window_ms) - 1;
        let slack = room / u128::from(previous.max(1));
        window_ms.saturating_sub(u64::try_from(slack).unwrap_or(u64::MAX))
    };
    let wait_ms = if current < limit {
        first_fit(previous, current).saturating_sub(elapsed).max(1)
    } else {
        // Not before this window ends; then this window's count is the one
        // that slides down.
        remaining + first_fit(current, 0)
    };
    Decision::Limited {
        retry_after_secs: wait_ms.div_ceil(1000).max(1),
    }
}

#[cfg(test)]
mod tests;
