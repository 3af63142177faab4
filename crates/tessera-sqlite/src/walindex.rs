//! A lock-free "has anything been committed?" check, from the WAL-index
//! header every SQLite connection on the file shares.
//!
//! Every commit, by any connection in any process, rewrites the header at
//! the start of the `-shm` file (it carries a per-commit counter, the last
//! WAL frame and a running checksum of the WAL), and a WAL restart changes
//! its salts. So two equal readings mean nothing was committed between
//! them, and a row read in between is still what a fresh read would return.
//! That lets a read be answered from memory without weakening revocation:
//! a revocation committed anywhere changes the header before its writer is
//! told "done", and the next check misses.
//!
//! The header is read the way SQLite reads it (`walIndexTryHdr`): copy 0,
//! a barrier, copy 1 (writers store them in the opposite order), then the
//! two must agree and carry a valid checksum; anything else reads as "no
//! header", which callers treat as "changed". The format is shared by every
//! SQLite version that can open the file at the same time, so it is stable
//! (`WALINDEX_MAX_VERSION` has been 3007000 since SQLite 3.7.0); the version
//! field is checked anyway.

use std::ffi::c_void;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering, fence};

use rusqlite::{Connection, ffi};

/// `WalIndexHdr`: 48 bytes, as 12 native-endian words.
const HDR_WORDS: usize = 12;
/// Size SQLite maps the wal-index in (`WALINDEX_PGSZ`); the header is at
/// the start of region 0.
const REGION_SIZE: i32 = 32 * 1024;
/// `WALINDEX_MAX_VERSION`.
const INDEX_VERSION: u32 = 3_007_000;

/// A WAL-index header as read: equal values, equal database contents.
pub(crate) type Header = [u32; HDR_WORDS];

/// The shared-memory wal-index of one open connection.
pub(crate) struct WalIndex {
    // Region 0 of the wal-index as SQLite mapped it for the connection it
    // was taken from. It stays mapped while that connection is open in WAL
    // mode; the owner (`Readers`) keeps it open for as long as this lives.
    hdr: NonNull<AtomicU32>,
}

// SAFETY: the pointer is only read through atomics, and the mapping it
// points into is shared memory meant for concurrent access from any thread
// and process.
unsafe impl Send for WalIndex {}
// SAFETY: as above; `header` takes `&self` and only loads.
unsafe impl Sync for WalIndex {}

impl WalIndex {
    /// The wal-index of `conn`, which must have run a read in WAL mode (so
    /// the wal-index is open and mapped) and must outlive the result.
    /// `None` if the VFS has no shared-memory methods or refuses.
    pub(crate) fn of(conn: &Connection) -> Option<WalIndex> {
        let mut file: *mut ffi::sqlite3_file = ptr::null_mut();
        // SAFETY: `handle` is the live connection; FILE_POINTER writes the
        // main database's `sqlite3_file*` into `file`.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                conn.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_FILE_POINTER,
                ptr::from_mut(&mut file).cast::<c_void>(),
            )
        };
        if rc != ffi::SQLITE_OK || file.is_null() {
            return None;
        }
        // SAFETY: SQLite returned a valid open file; its methods table
        // lives as long as the file.
        let methods = unsafe { (*file).pMethods };
        if methods.is_null() {
            return None;
        }
        // SAFETY: as above. xShmMap exists from version 2 of the methods.
        let shm_map = unsafe {
            if (*methods).iVersion < 2 {
                return None;
            }
            (*methods).xShmMap?
        };
        let mut region: *mut c_void = ptr::null_mut();
        // SAFETY: region 0 is already mapped for this connection (it has
        // read in WAL mode), so with `extend = 0` this returns the existing
        // mapping, exactly as SQLite's own `walIndexPage` does.
        let rc = unsafe { shm_map(file, 0, REGION_SIZE, 0, &mut region) };
        if rc != ffi::SQLITE_OK {
            return None;
        }
        let index = WalIndex {
            hdr: NonNull::new(region.cast::<AtomicU32>())?,
        };
        index.header()?;
        Some(index)
    }

    fn word(&self, i: usize) -> u32 {
        debug_assert!(i < 2 * HDR_WORDS);
        // SAFETY: the two header copies are the first 96 bytes of a mapped
        // 32 KiB region, 4-byte aligned (the mapping is page aligned).
        unsafe { self.hdr.add(i).as_ref() }.load(Ordering::Acquire)
    }

    /// The current header, or `None` while a writer is rewriting it (or it
    /// is not valid): callers treat that as "changed".
    pub(crate) fn header(&self) -> Option<Header> {
        let mut first = [0u32; HDR_WORDS];
        let mut second = [0u32; HDR_WORDS];
        for (i, w) in first.iter_mut().enumerate() {
            *w = self.word(i);
        }
        fence(Ordering::SeqCst);
        for (i, w) in second.iter_mut().enumerate() {
            *w = self.word(HDR_WORDS + i);
        }
        // isInit is the byte at offset 12 (word 3, first byte in memory).
        let is_init = first[3].to_ne_bytes()[0];
        if first != second || is_init == 0 || first[0] != INDEX_VERSION {
            return None;
        }
        // The checksum over the first 40 bytes (`walChecksumBytes` with
        // native byte order), as SQLite verifies it before trusting a header.
        let (mut s1, mut s2) = (0u32, 0u32);
        for pair in first[..10].chunks_exact(2) {
            s1 = s1.wrapping_add(pair[0]).wrapping_add(s2);
            s2 = s2.wrapping_add(pair[1]).wrapping_add(s1);
        }
        (s1 == first[10] && s2 == first[11]).then_some(first)
    }
}
