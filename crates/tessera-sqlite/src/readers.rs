//! A small fixed pool of read-only connections.
//!
//! WAL lets readers run beside the writer, each on its own snapshot. Reads
//! run directly on the calling (async) thread instead of a blocking pool:
//! they are single indexed statements answered from the page cache in
//! microseconds, less than a thread hand-off would cost. A caller that
//! finds every connection busy waits on one of them for those microseconds.
//! The one read that can scan many rows, `count_active`, is sent to the
//! blocking pool by the caller instead.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, TryLockError};

use rusqlite::Connection;
use tessera_core::StoreResult;

use crate::schema;

pub(crate) struct Readers {
    conns: Box<[Mutex<Connection>]>,
    next: AtomicUsize,
}

impl Readers {
    /// Opens `n` readers (at least one).
    pub(crate) fn open(path: &Path, n: usize) -> StoreResult<Self> {
        let conns = (0..n.max(1))
            .map(|_| schema::open_reader(path).map(Mutex::new))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Self {
            conns: conns.into_boxed_slice(),
            next: AtomicUsize::new(0),
        })
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&Connection) -> StoreResult<R>) -> StoreResult<R> {
        let n = self.conns.len();
        // Start at a rotating index so concurrent callers spread out.
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            let slot = &self.conns[(start + i) % n];
            match slot.try_lock() {
                Ok(conn) => return f(&conn),
                // A read that panicked leaves its statement reset by unwinding;
                // the connection is fine to reuse.
                Err(TryLockError::Poisoned(p)) => return f(&p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let conn = self.conns[start].lock().unwrap_or_else(PoisonError::into_inner);
        f(&conn)
    }
}
