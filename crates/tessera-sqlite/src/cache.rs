//! Sessions by token hash, valid only while the database is unchanged.
//!
//! Each entry remembers the WAL-index header (see `walindex`) under which
//! it was read; a lookup only hits if the header is still exactly that, so
//! any commit by anyone (a revocation, a touch, a login) makes every entry
//! miss. There is no time-based validity at all: a hit returns precisely
//! what the SQL read would, minus the read transaction and its locks.
//!
//! It pays off when verifies outnumber commits, e.g. a backend checking the
//! same sessions between logins. Direct-mapped slots keyed by the (uniformly
//! random) token hash keep a lookup to one uncontended lock and bound the
//! memory; a collision or a stale entry simply misses.

use std::sync::{Arc, Mutex, PoisonError};

use tessera_core::SessionRecord;

use crate::walindex::Header;

const SLOTS: usize = 4096;

struct Entry {
    header: Header,
    hash: [u8; 32],
    record: Arc<SessionRecord>,
}

pub(crate) struct SessionCache {
    slots: Box<[Mutex<Option<Entry>>]>,
}

fn slot(hash: &[u8; 32]) -> usize {
    let mut low = [0u8; 8];
    low.copy_from_slice(&hash[..8]);
    (u64::from_le_bytes(low) % SLOTS as u64) as usize
}

impl SessionCache {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The session stored under `hash`, if it was read under `header`.
    pub(crate) fn get(&self, hash: &[u8; 32], header: &Header) -> Option<Arc<SessionRecord>> {
        let e = self.slots[slot(hash)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &*e {
            Some(e) if e.hash == *hash && e.header == *header => Some(Arc::clone(&e.record)),
            _ => None,
        }
    }

    /// Remembers a session read entirely under `header`.
    pub(crate) fn put(&self, hash: &[u8; 32], header: Header, record: Arc<SessionRecord>) {
        *self.slots[slot(hash)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Entry {
            header,
            hash: *hash,
            record,
        });
    }
}
