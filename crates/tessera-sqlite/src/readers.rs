//! A small fixed pool of read-only connections.
//!
//! WAL lets readers run beside the writer, each on its own snapshot. Reads
//! run directly on the calling (async) thread instead of a blocking pool:
//! they are single indexed statements answered from the page cache in
//! microseconds, less than a thread hand-off would cost. A caller that
//! finds every connection busy waits on one of them for those microseconds.
//! The one read that can scan many rows, `count_active`, is sent to the
//! blocking pool by the caller instead.
//!
//! Sessions read by token hash are also kept in a cache that is valid only
//! until the next commit by anyone (see `cache` and `walindex`), so a
//! verify of an unchanged session needs neither a connection nor a read
//! transaction and its shared-memory locks.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};

use rusqlite::Connection;
use tessera_core::{SessionRecord, StoreResult};

use crate::cache::SessionCache;
use crate::walindex::WalIndex;
use crate::{ops, schema};

pub(crate) struct Readers {
    conns: Box<[Mutex<Connection>]>,
    next: AtomicUsize,
    // Points into the shared memory of `conns[0]`, which stays open as long
    // as this does. `None` (no cache) if the VFS offers no wal-index.
    wal: Option<WalIndex>,
    sessions: SessionCache,
}

impl Readers {
    /// Opens `n` readers (at least one).
    pub(crate) fn open(path: &Path, n: usize) -> StoreResult<Self> {
        let conns = (0..n.max(1))
            .map(|_| schema::open_reader(path).map(Mutex::new))
            .collect::<StoreResult<Vec<_>>>()?;
        let wal = match conns.first() {
            Some(c) => {
                let c = c.lock().unwrap_or_else(PoisonError::into_inner);
                // A read opens and maps the wal-index.
                ops::ping(&c)?;
                WalIndex::of(&c)
            }
            None => None,
        };
        if wal.is_none() {
            tracing::warn!("no shared WAL index; session reads will not be cached");
        }
        Ok(Self {
            conns: conns.into_boxed_slice(),
            next: AtomicUsize::new(0),
            wal,
            sessions: SessionCache::new(),
        })
    }

    /// `get_by_token`, answered from memory when nothing at all has been
    /// committed since the session was last read (see `cache`).
    pub(crate) fn session_by_token(&self, hash: &[u8; 32]) -> StoreResult<Option<Arc<SessionRecord>>> {
        let Some(wal) = &self.wal else {
            return Ok(self.with(|c| ops::get_by_token(c, hash))?.map(Arc::new));
        };
        let before = wal.header();
        if let Some(h) = &before
            && let Some(hit) = self.sessions.get(hash, h)
        {
            return Ok(Some(hit));
        }
        let found = self.with(|c| ops::get_by_token(c, hash))?.map(Arc::new);
        // Equal headers around the read: its snapshot is that state.
        if let (Some(h), Some(rec)) = (before, &found)
            && wal.header() == Some(h)
        {
            self.sessions.put(hash, h, Arc::clone(rec));
        }
        Ok(found)
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&Connection) -> StoreResult<R>) -> StoreResult<R> {
        // The lowest-numbered free connection, not a rotating one: each
        // connection drops its page cache at its first read after a commit,
        // so under writes the reads between two commits should share one
        // warm cache rather than each warm up its own. The others serve
        // reads that overlap.
        for slot in &self.conns[..] {
            match slot.try_lock() {
                Ok(conn) => return f(&conn),
                // A read that panicked leaves its statement reset by unwinding;
                // the connection is fine to reuse.
                Err(TryLockError::Poisoned(p)) => return f(&p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        // All busy: queue on one, spreading such waiters out.
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let conn = self.conns[start].lock().unwrap_or_else(PoisonError::into_inner);
        f(&conn)
    }
}
