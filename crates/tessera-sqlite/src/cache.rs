//! One reader connection's sessions by token hash, valid only while the
//! database is unchanged.
//!
//! Each entry remembers the connection's `PRAGMA data_version` under which
//! it was read; a lookup only hits if the version is still exactly that, so
//! any commit by any other connection or process (a revocation, a touch, a
//! login) makes every entry miss. There is no time-based validity at all: a
//! hit returns what the SQL read would, minus the index search and the
//! decoding.
//!
//! A reader thread owns its cache, so there are no locks. Direct-mapped
//! slots keyed by the (uniformly random) token hash bound the memory; a
//! collision or a stale entry simply misses.

use std::sync::Arc;

use tessera_core::SessionRecord;

const SLOTS: usize = 4096;

struct Entry {
    version: i64,
    hash: [u8; 32],
    record: Arc<SessionRecord>,
}

pub(crate) struct SessionCache {
    slots: Box<[Option<Entry>]>,
}

fn slot(hash: &[u8; 32]) -> usize {
    let mut low = [0u8; 8];
    low.copy_from_slice(&hash[..8]);
    (u64::from_le_bytes(low) % SLOTS as u64) as usize
}

impl SessionCache {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| None).collect(),
        }
    }

    /// The session stored under `hash`, if it was read at `version`.
    pub(crate) fn get(&self, hash: &[u8; 32], version: i64) -> Option<Arc<SessionRecord>> {
        match &self.slots[slot(hash)] {
            Some(e) if e.hash == *hash && e.version == version => Some(Arc::clone(&e.record)),
            _ => None,
        }
    }

    /// Remembers a session read at `version` or later.
    pub(crate) fn put(&mut self, hash: &[u8; 32], version: i64, record: Arc<SessionRecord>) {
        self.slots[slot(hash)] = Some(Entry {
            version,
            hash: *hash,
            record,
        });
    }

    /// Drops the entry for `hash`, if there is one.
    pub(crate) fn forget(&mut self, hash: &[u8; 32]) {
        let s = &mut self.slots[slot(hash)];
        if s.as_ref().is_some_and(|e| e.hash == *hash) {
            *s = None;
        }
    }
}
