//! A VFS shim for the writer connection that sends each commit's WAL frames
//! to the kernel in one `pwrite` instead of two per page.
//!
//! SQLite appends a WAL frame as two writes, its 24-byte header and then the
//! page. A refresh rotation dirties a handful of scattered pages, so a batch
//! of rotations cost a dozen `pwrite` calls per rotation, each paying the
//! system call, the inode lock and an mtime update: a tenth of the server's
//! CPU in the rotation profile, all of it on the writer thread every other
//! write waits for.
//!
//! New frames appended to a `-wal` file are collected in memory and written
//! in one call (a write before the furthest one so far rewrites a frame of
//! the open transaction and goes straight out, after what is pending):
//! - right after the page of a commit frame (a frame header whose "database
//!   size after commit" field is non-zero), inside the same `xWrite`, so the
//!   commit's own write reports any I/O error, and before SQLite publishes
//!   the frames in the wal-index header for other connections to read;
//! - before any other operation on that file (read, sync, size, truncate,
//!   close, file control), so SQLite never observes the file without its own
//!   writes, and `synchronous=FULL` still syncs everything it wrote;
//! - when a non-contiguous write arrives, or the next append would take the
//!   buffer past [`MAX_WRITE`]: the unix VFS silently truncates a single
//!   write to 17 bits of length (it only ever expects pages), so larger
//!   commits go out in 64 KiB pieces, still ~30 frames per call.
//!
//! Frames are never published before they are written, and a crash loses at
//! most the buffered frames of a commit that had not returned yet, exactly
//! what a crash between SQLite's own two writes would lose. Every other
//! file, and every other method, is passed straight to the default VFS,
//! which also opens the real files: they stay ordinary unix files sharing
//! locks with the connections that do not use this shim.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::mem::{align_of, size_of};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections pass to `sqlite3_open_v2` to use the shim.
pub(crate) const NAME: &CStr = c"tessera-wal-batch";

/// Most bytes written in one call: at least one page of the largest size
/// (64 KiB), and below the unix VFS's 128 KiB limit per write.
const MAX_WRITE: usize = 64 * 1024;

/// Size of a WAL frame header: page number, database size after commit
/// (non-zero only in a commit frame), salts and checksums.
const FRAME_HEADER: c_int = 24;

/// Registers the shim over the default VFS (once per process) and returns
/// its name, or `None` if there is no default VFS to wrap.
pub(crate) fn register() -> Option<&'static CStr> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, which
        // stays registered for the life of the process.
        let real = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
        if real.is_null() {
            return false;
        }
        // SAFETY: `real` is a valid VFS (above).
        let real_ref = unsafe { &*real };
        let Ok(real_size) = usize::try_from(real_ref.szOsFile) else {
            return false;
        };
        let Ok(sz_os_file) = c_int::try_from(REAL_OFFSET + real_size) else {
            return false;
        };
        let vfs = Box::new(ffi::sqlite3_vfs {
            // Version 2 (xCurrentTimeInt64) is all SQLite's core uses of a
            // VFS beyond version 1; the system-call hooks of version 3 are
            // only for tests of the unix VFS itself.
            iVersion: 2,
            szOsFile: sz_os_file,
            mxPathname: real_ref.mxPathname,
            pNext: ptr::null_mut(),
            zName: NAME.as_ptr(),
            pAppData: real.cast::<c_void>(),
            xOpen: Some(x_open),
            xDelete: Some(x_delete),
            xAccess: Some(x_access),
            xFullPathname: Some(x_full_pathname),
            xDlOpen: Some(x_dl_open),
            xDlError: Some(x_dl_error),
            xDlSym: Some(x_dl_sym),
            xDlClose: Some(x_dl_close),
            xRandomness: Some(x_randomness),
            xSleep: Some(x_sleep),
            xCurrentTime: Some(x_current_time),
            xGetLastError: Some(x_get_last_error),
            xCurrentTimeInt64: Some(x_current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        });
        // Registered VFSes must live for the rest of the process.
        let vfs = Box::into_raw(vfs);
        // SAFETY: `vfs` is a complete, leaked VFS; 0 = not the default.
        unsafe { ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK }
    });
    ok.then_some(NAME)
}

/// The file object SQLite allocates (`szOsFile` bytes) for the shim: this
/// header, then the default VFS's own file object at [`REAL_OFFSET`].
#[repr(C)]
struct ShimFile {
    /// What SQLite sees: `pMethods` points at one of the `METHODS_V*`.
    base: ffi::sqlite3_file,
    /// The default VFS's file, inside this same allocation.
    real: *mut ffi::sqlite3_file,
    /// `Some` for a `-wal` file: the pending appends.
    wal: *mut WalBuffer,
}

const REAL_OFFSET: usize = size_of::<ShimFile>().next_multiple_of(align_of::<u64>());

struct WalBuffer {
    data: Vec<u8>,
    /// File offset of `data[0]`.
    start: i64,
    /// End of the furthest write so far (buffered or not). Only writes at
    /// or past it, new frames, are buffered; a write before it rewrites a
    /// frame of the open transaction (a page written twice, or the
    /// checksums SQLite redoes before committing such a transaction) and
    /// goes straight out, so nothing is left behind once the commit page
    /// is written. The WAL header (offset 0) starts the file over.
    end: i64,
    /// The last frame header appended was a commit frame's; its page is
    /// the next write.
    commit_next: bool,
}

fn real_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY (callers): `vfs` is the shim, whose pAppData is the real VFS.
    unsafe { (*vfs).pAppData.cast::<ffi::sqlite3_vfs>() }
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real_vfs = real_vfs(vfs);
    let shim = file.cast::<ShimFile>();
    // SAFETY: SQLite gives us `szOsFile` writable bytes at `file`, so the
    // real file object fits at REAL_OFFSET.
    let real = unsafe { file.cast::<u8>().add(REAL_OFFSET).cast::<ffi::sqlite3_file>() };
    // SAFETY: as above; the header is written before anything reads it,
    // and `pMethods` stays NULL until the real file is open.
    unsafe {
        ptr::write(
            shim,
            ShimFile {
                base: ffi::sqlite3_file {
                    pMethods: ptr::null(),
                },
                real,
                wal: ptr::null_mut(),
            },
        );
    }
    // SAFETY: the real VFS opens its own file object, with itself as the
    // VFS (the unix VFS keeps it to find its locking style).
    let rc = unsafe {
        match (*real_vfs).xOpen {
            Some(open) => open(real_vfs, name, real, flags, out_flags),
            None => return ffi::SQLITE_CANTOPEN,
        }
    };
    // SQLite calls xClose whenever pMethods is set, even after a failed
    // open: mirror the real file so its xClose runs exactly when it should.
    // SAFETY: `real` was just initialised by the real xOpen.
    let real_methods = unsafe { (*real).pMethods };
    if real_methods.is_null() {
        return rc;
    }
    // SAFETY: a non-null methods table of an open file.
    let version = unsafe { (*real_methods).iVersion };
    let methods: &'static ffi::sqlite3_io_methods = match version {
        ..=1 => &METHODS_V1,
        2 => &METHODS_V2,
        _ => &METHODS_V3,
    };
    // SAFETY: `shim` was initialised above.
    unsafe {
        (*shim).base.pMethods = methods;
        if rc == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_WAL != 0 {
            (*shim).wal = Box::into_raw(Box::new(WalBuffer {
                data: Vec::with_capacity(MAX_WRITE),
                start: 0,
                end: 0,
                commit_next: false,
            }));
        }
    }
    rc
}

/// The shim's header and the real file behind `file`.
///
/// # Safety
/// `file` must be a file opened by [`x_open`].
unsafe fn parts<'a>(file: *mut ffi::sqlite3_file) -> (*mut ffi::sqlite3_file, Option<&'a mut WalBuffer>) {
    let shim = file.cast::<ShimFile>();
    // SAFETY: per the contract; `wal` is null or the Box from x_open, used
    // by one connection (one thread) at a time, as SQLite uses the file.
    unsafe { ((*shim).real, (*shim).wal.as_mut()) }
}

/// The real file's methods table.
///
/// # Safety
/// `real` must be an open file of the real VFS.
unsafe fn methods<'a>(real: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    // SAFETY: per the contract, an open file has a methods table.
    unsafe { &*(*real).pMethods }
}

/// Writes out the pending appends, if any. On error they are dropped: the
/// transaction they belong to fails with that error.
///
/// # Safety
/// `real` must be the open real file the buffer belongs to.
unsafe fn flush(real: *mut ffi::sqlite3_file, buf: &mut WalBuffer) -> c_int {
    if buf.data.is_empty() {
        return ffi::SQLITE_OK;
    }
    let rc = match c_int::try_from(buf.data.len()) {
        // SAFETY: `real` is open; the slice is valid for its length.
        Ok(len) => unsafe {
            match methods(real).xWrite {
                Some(write) => write(real, buf.data.as_ptr().cast::<c_void>(), len, buf.start),
                None => ffi::SQLITE_IOERR_WRITE,
            }
        },
        Err(_) => ffi::SQLITE_IOERR_WRITE,
    };
    buf.data.clear();
    rc
}

/// Flushes `file`'s pending appends before another operation on it.
///
/// # Safety
/// `file` must be a file opened by [`x_open`].
unsafe fn settle(file: *mut ffi::sqlite3_file) -> (*mut ffi::sqlite3_file, c_int) {
    // SAFETY: per the contract.
    let (real, wal) = unsafe { parts(file) };
    let rc = match wal {
        // SAFETY: the buffer belongs to `real`.
        Some(buf) => unsafe { flush(real, buf) },
        None => ffi::SQLITE_OK,
    };
    (real, rc)
}

/// Flushes `file`'s pending appends, then runs `op` with the real file and
/// its methods; a failed flush is returned instead.
///
/// # Safety
/// `file` must be a file opened by [`x_open`].
unsafe fn settled(
    file: *mut ffi::sqlite3_file,
    op: impl FnOnce(*mut ffi::sqlite3_file, &ffi::sqlite3_io_methods) -> c_int,
) -> c_int {
    // SAFETY: per the contract.
    let (real, rc) = unsafe { settle(file) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    // SAFETY: `real` is the open real file.
    op(real, unsafe { methods(real) })
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes only files it opened through x_open.
    let (real, flushed) = unsafe { settle(file) };
    // SAFETY: as above; the real file is closed once, here.
    let closed = unsafe {
        match methods(real).xClose {
            Some(close) => close(real),
            None => ffi::SQLITE_OK,
        }
    };
    let shim = file.cast::<ShimFile>();
    // SAFETY: the Box from x_open, freed once; SQLite frees the rest.
    unsafe {
        if !(*shim).wal.is_null() {
            drop(Box::from_raw((*shim).wal));
            (*shim).wal = ptr::null_mut();
        }
    }
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amt: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite calls this on files it opened through x_open.
    let (real, wal) = unsafe { parts(file) };
    // SAFETY (closure): forwarding the caller's arguments to the real file.
    let direct = || unsafe {
        match methods(real).xWrite {
            Some(write) => write(real, data, amt, offset),
            None => ffi::SQLITE_IOERR_WRITE,
        }
    };
    let (Some(buf), Ok(len)) = (wal, usize::try_from(amt)) else {
        return direct();
    };
    if offset == 0 {
        buf.end = 0;
    }
    if len > MAX_WRITE || offset < buf.end {
        // Larger than any page, or a rewrite: out now, after what is
        // pending, so writes reach the file in SQLite's order.
        // SAFETY: the buffer belongs to `real`.
        let rc = unsafe { flush(real, buf) };
        buf.end = buf.end.max(offset + i64::from(amt));
        return if rc == ffi::SQLITE_OK { direct() } else { rc };
    }
    buf.end = offset + i64::from(amt);
    let buffered_to = buf.start + buf.data.len() as i64;
    if !buf.data.is_empty() && (offset != buffered_to || buf.data.len() + len > MAX_WRITE) {
        // SAFETY: the buffer belongs to `real`.
        let rc = unsafe { flush(real, buf) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    if buf.data.is_empty() {
        buf.start = offset;
    }
    // SAFETY: SQLite passes `amt` readable bytes at `data`.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
    buf.data.extend_from_slice(bytes);
    if amt == FRAME_HEADER {
        buf.commit_next = bytes[4..8] != [0; 4];
        return ffi::SQLITE_OK;
    }
    // The page of a commit frame: out before SQLite publishes the commit
    // (even if the buffer was flushed just before this page went in).
    if std::mem::take(&mut buf.commit_next) {
        // SAFETY: the buffer belongs to `real`.
        return unsafe { flush(real, buf) };
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amt: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite calls this on files it opened through x_open, and the
    // real methods get its arguments unchanged.
    unsafe {
        settled(file, |real, m| {
            m.xRead
                .map_or(ffi::SQLITE_IOERR_READ, |f| f(real, data, amt, offset))
        })
    }
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: SQLite calls this on files it opened through x_open, and the
    // real methods get its arguments unchanged.
    unsafe {
        settled(file, |real, m| {
            if let (_, Some(buf)) = parts(file) {
                buf.end = buf.end.min(size);
            }
            m.xTruncate.map_or(ffi::SQLITE_IOERR_TRUNCATE, |f| f(real, size))
        })
    }
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: SQLite calls this on files it opened through x_open, and the
    // real methods get its arguments unchanged.
    unsafe {
        settled(file, |real, m| {
            m.xSync.map_or(ffi::SQLITE_IOERR_FSYNC, |f| f(real, flags))
        })
    }
}

unsafe extern "C" fn x_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: SQLite calls this on files it opened through x_open, and the
    // real methods get its arguments unchanged.
    unsafe {
        settled(file, |real, m| {
            m.xFileSize.map_or(ffi::SQLITE_IOERR_FSTAT, |f| f(real, size))
        })
    }
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: SQLite calls this on files it opened through x_open, and the
    // real methods get its arguments unchanged.
    unsafe {
        settled(file, |real, m| {
            m.xLock.map_or(ffi::SQLITE_IOERR_LOCK, |f| f(real, level))
        })
    }
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: SQLite calls this on files it opened through x_open, and the
    // real methods get its arguments unchanged.
    unsafe {
        settled(file, |real, m| {
            m.xUnlock.map_or(ffi::SQLITE_IOERR_UNLOCK, |f| f(real, level))
        })
    }
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: SQLite calls this on files it opened through x_open.
    let (real, _) = unsafe { parts(file) };
    // SAFETY: forwarding.
    unsafe {
        match methods(real).xCheckReservedLock {
            Some(f) => f(real, out),
            None => ffi::SQLITE_IOERR_CHECKRESERVEDLOCK,
        }
    }
}

unsafe extern "C" fn x_file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: SQLite calls this on files it opened through x_open, and the
    // real methods get its arguments unchanged.
    unsafe {
        settled(file, |real, m| {
            m.xFileControl.map_or(ffi::SQLITE_NOTFOUND, |f| f(real, op, arg))
        })
    }
}

unsafe extern "C" fn x_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this on files it opened through x_open.
    let (real, _) = unsafe { parts(file) };
    // SAFETY: forwarding.
    unsafe { methods(real).xSectorSize.map_or(4096, |f| f(real)) }
}

unsafe extern "C" fn x_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this on files it opened through x_open.
    let (real, _) = unsafe { parts(file) };
    // SAFETY: forwarding.
    unsafe { methods(real).xDeviceCharacteristics.map_or(0, |f| f(real)) }
}

unsafe extern "C" fn x_shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: SQLite calls this on files it opened through x_open.
    let (real, _) = unsafe { parts(file) };
    // SAFETY: forwarding; only installed when the real table has it.
    unsafe {
        match methods(real).xShmMap {
            Some(f) => f(real, region, size, extend, out),
            None => ffi::SQLITE_IOERR_SHMMAP,
        }
    }
}

unsafe extern "C" fn x_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: as in x_shm_map.
    let (real, _) = unsafe { parts(file) };
    // SAFETY: forwarding.
    unsafe {
        match methods(real).xShmLock {
            Some(f) => f(real, offset, n, flags),
            None => ffi::SQLITE_IOERR_SHMLOCK,
        }
    }
}

unsafe extern "C" fn x_shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: as in x_shm_map.
    let (real, _) = unsafe { parts(file) };
    // SAFETY: forwarding.
    unsafe {
        if let Some(f) = methods(real).xShmBarrier {
            f(real);
        }
    }
}

unsafe extern "C" fn x_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: as in x_shm_map.
    let (real, _) = unsafe { parts(file) };
    // SAFETY: forwarding.
    unsafe {
        match methods(real).xShmUnmap {
            Some(f) => f(real, delete),
            None => ffi::SQLITE_OK,
        }
    }
}

unsafe extern "C" fn x_fetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    amt: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: as in x_read; settled first, since a mapping must show this
    // file's own writes. Only installed when the real table has xFetch.
    unsafe {
        settled(file, |real, m| match m.xFetch {
            Some(f) => f(real, offset, amt, out),
            None => {
                *out = ptr::null_mut();
                ffi::SQLITE_OK
            }
        })
    }
}

unsafe extern "C" fn x_unfetch(file: *mut ffi::sqlite3_file, offset: i64, page: *mut c_void) -> c_int {
    // SAFETY: as in x_shm_map.
    let (real, _) = unsafe { parts(file) };
    // SAFETY: forwarding.
    unsafe {
        match methods(real).xUnfetch {
            Some(f) => f(real, offset, page),
            None => ffi::SQLITE_OK,
        }
    }
}

const fn methods_table(version: c_int) -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        iVersion: version,
        xClose: Some(x_close),
        xRead: Some(x_read),
        xWrite: Some(x_write),
        xTruncate: Some(x_truncate),
        xSync: Some(x_sync),
        xFileSize: Some(x_file_size),
        xLock: Some(x_lock),
        xUnlock: Some(x_unlock),
        xCheckReservedLock: Some(x_check_reserved_lock),
        xFileControl: Some(x_file_control),
        xSectorSize: Some(x_sector_size),
        xDeviceCharacteristics: Some(x_device_characteristics),
        xShmMap: if version >= 2 { Some(x_shm_map) } else { None },
        xShmLock: if version >= 2 { Some(x_shm_lock) } else { None },
        xShmBarrier: if version >= 2 { Some(x_shm_barrier) } else { None },
        xShmUnmap: if version >= 2 { Some(x_shm_unmap) } else { None },
        xFetch: if version >= 3 { Some(x_fetch) } else { None },
        xUnfetch: if version >= 3 { Some(x_unfetch) } else { None },
    }
}

// One table per version of the real file's table, so SQLite sees exactly
// the optional methods the real file has (no shared memory without
// xShmMap, no mapping without xFetch).
static METHODS_V1: ffi::sqlite3_io_methods = methods_table(1);
static METHODS_V2: ffi::sqlite3_io_methods = methods_table(2);
static METHODS_V3: ffi::sqlite3_io_methods = methods_table(3);

unsafe extern "C" fn x_delete(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, sync_dir: c_int) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarding to the real VFS, with itself as the VFS.
    unsafe {
        (*real)
            .xDelete
            .map_or(ffi::SQLITE_IOERR_DELETE, |f| f(real, name, sync_dir))
    }
}

unsafe extern "C" fn x_access(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarding.
    unsafe {
        (*real)
            .xAccess
            .map_or(ffi::SQLITE_IOERR_ACCESS, |f| f(real, name, flags, out))
    }
}

unsafe extern "C" fn x_full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarding.
    unsafe {
        (*real)
            .xFullPathname
            .map_or(ffi::SQLITE_CANTOPEN, |f| f(real, name, n, out))
    }
}

unsafe extern "C" fn x_dl_open(vfs: *mut ffi::sqlite3_vfs, name: *const c_char) -> *mut c_void {
    let real = real_vfs(vfs);
    // SAFETY: forwarding.
    unsafe { (*real).xDlOpen.map_or(ptr::null_mut(), |f| f(real, name)) }
}

unsafe extern "C" fn x_dl_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) {
    let real = real_vfs(vfs);
    // SAFETY: forwarding.
    unsafe {
        if let Some(f) = (*real).xDlError {
            f(real, n, out);
        }
    }
}

unsafe extern "C" fn x_dl_sym(
    vfs: *mut ffi::sqlite3_vfs,
    handle: *mut c_void,
    symbol: *const c_char,
) -> Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)> {
    let real = real_vfs(vfs);
    // SAFETY: forwarding.
    unsafe { (*real).xDlSym.and_then(|f| f(real, handle, symbol)) }
}

unsafe extern "C" fn x_dl_close(vfs: *mut ffi::sqlite3_vfs, handle: *mut c_void) {
    let real = real_vfs(vfs);
    // SAFETY: forwarding.
    unsafe {
        if let Some(f) = (*real).xDlClose {
            f(real, handle);
        }
    }
}

unsafe extern "C" fn x_randomness(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarding.
    unsafe { (*real).xRandomness.map_or(0, |f| f(real, n, out)) }
}

unsafe extern "C" fn x_sleep(vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarding.
    unsafe { (*real).xSleep.map_or(0, |f| f(real, micros)) }
}

unsafe extern "C" fn x_current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarding.
    unsafe { (*real).xCurrentTime.map_or(ffi::SQLITE_ERROR, |f| f(real, out)) }
}

unsafe extern "C" fn x_get_last_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarding.
    unsafe { (*real).xGetLastError.map_or(0, |f| f(real, n, out)) }
}

unsafe extern "C" fn x_current_time_int64(vfs: *mut ffi::sqlite3_vfs, out: *mut i64) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarding; version 2 of the real VFS has it.
    unsafe {
        if (*real).iVersion >= 2
            && let Some(f) = (*real).xCurrentTimeInt64
        {
            return f(real, out);
        }
        let mut days = 0.0;
        let rc = x_current_time(vfs, &mut days);
        *out = (days * 86_400_000.0) as i64;
        rc
    }
}
