//! Reader threads: a small fixed pool, each owning one read-only connection.
//!
//! WAL lets readers run beside the writer, each on its own snapshot. Every
//! SQLite call runs on one of these threads, never on the caller's (an
//! async runtime's worker): a read can wait up to the busy timeout for a
//! lock another process holds, or sit behind a WAL recovery, and on a
//! worker thread that would stall every request the worker serves. A read
//! is queued here and its caller awaits the answer.
//!
//! Each thread keeps the sessions it read by token hash (see `cache`) and
//! answers a repeated read from memory while `PRAGMA data_version` on its
//! own connection shows that no other connection (the writer, the CLI, an
//! app embedding the library on the same file) has committed since: SQLite
//! documents that value to change whenever any other connection commits.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tessera_core::{SessionRecord, StoreError, StoreResult};
use tokio::sync::oneshot;

use crate::cache::SessionCache;
use crate::error::SqlResultExt;
use crate::{ops, schema};

/// What a reader thread lends a job: its connection and its session cache.
pub(crate) struct Reader {
    conn: Connection,
    sessions: SessionCache,
}

impl Reader {
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// `get_by_token`, answered from memory when no other connection has
    /// committed since the session was last read on this connection.
    fn session_by_token(&mut self, hash: &[u8; 32]) -> StoreResult<Option<Arc<SessionRecord>>> {
        let version = data_version(&self.conn)?;
        if let Some(hit) = self.sessions.get(hash, version) {
            return Ok(Some(hit));
        }
        // The read below runs in a transaction of its own, after the one
        // that read `version`, so it sees at least that state: the entry is
        // never older than the version it is filed under, and any commit
        // after it changes the version the next lookup compares.
        let found = ops::get_by_token(&self.conn, hash)?.map(Arc::new);
        match &found {
            Some(rec) => self.sessions.put(hash, version, Arc::clone(rec)),
            None => self.sessions.forget(hash),
        }
        Ok(found)
    }
}

fn data_version(c: &Connection) -> StoreResult<i64> {
    c.prepare_cached("PRAGMA data_version")
        .store()?
        .query_row([], |r| r.get(0))
        .store()
}

type Job = Box<dyn FnOnce(&mut Reader) + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// The threads waiting for work, most recently idle last. A new read
    /// wakes that one: under light load one thread serves every read, so
    /// its cache and its connection's page cache stay warm, instead of the
    /// reads rotating over threads that each warm up their own. A busy
    /// pool has none idle and costs no wake-up call per read.
    idle: Vec<usize>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// One per thread, all used with `queue`.
    ready: Box<[Condvar]>,
}

pub(crate) struct Readers {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Readers {
    /// Opens `n` reader connections (at least one), each on its own thread.
    pub(crate) fn open(path: &Path, n: usize) -> StoreResult<Self> {
        let conns = (0..n.max(1))
            .map(|_| schema::open_reader(path))
            .collect::<StoreResult<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: conns.iter().map(|_| Condvar::new()).collect(),
        });
        let mut readers = Readers {
            shared: Arc::clone(&shared),
            threads: Vec::with_capacity(conns.len()),
        };
        for (i, conn) in conns.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            let reader = Reader {
                conn,
                sessions: SessionCache::new(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("tessera-sqlite-read-{i}"))
                .spawn(move || run(i, reader, &shared))
                .map_err(|e| StoreError::Unavailable(format!("cannot start a SQLite reader thread: {e}")))?;
            // On an error above, dropping `readers` stops the threads started.
            readers.threads.push(thread);
        }
        Ok(readers)
    }

    /// Runs `f` on a reader thread and waits for its answer.
    pub(crate) async fn call<R, F>(&self, f: F) -> StoreResult<R>
    where
        F: FnOnce(&mut Reader) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |reader| {
            // A bug in one read must not take the thread, and with it a
            // share of every later read, down.
            let r = catch_unwind(AssertUnwindSafe(|| f(reader))).unwrap_or_else(|_| {
                tracing::error!("a SQLite read panicked");
                Err(StoreError::Unavailable(
                    "internal error in a SQLite reader".into(),
                ))
            });
            // The caller may have gone away; nothing was changed.
            let _ = tx.send(r);
        });
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if q.closed {
                return Err(stopped());
            }
            q.jobs.push_back(job);
            if let Some(i) = q.idle.pop() {
                self.shared.ready[i].notify_one();
            }
        }
        // A dropped sender means every reader thread is gone.
        rx.await.map_err(|_| stopped())?
    }

    /// A read of a session by token hash, through the reader's cache.
    pub(crate) async fn session_by_token(&self, hash: [u8; 32]) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.call(move |r| r.session_by_token(&hash)).await
    }

    /// A plain read on a reader's connection.
    pub(crate) async fn with<R, F>(&self, f: F) -> StoreResult<R>
    where
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        self.call(move |r| f(r.conn())).await
    }

    /// Whether every reader thread still runs.
    pub(crate) fn is_running(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the SQLite reader threads have stopped".into())
}

impl Drop for Readers {
    fn drop(&mut self) {
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.closed = true;
        }
        for cv in &self.shared.ready[..] {
            cv.notify_all();
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a SQLite reader thread panicked");
            }
        }
    }
}

fn run(me: usize, mut reader: Reader, shared: &Shared) {
    loop {
        let job = {
            let mut q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                // Queued reads are answered before a close takes effect.
                if q.closed {
                    return;
                }
                q.idle.push(me);
                q = shared.ready[me].wait(q).unwrap_or_else(PoisonError::into_inner);
                // Woken by a read, which took this thread off the list, or
                // spuriously, which did not.
                q.idle.retain(|&i| i != me);
            }
        };
        job(&mut reader);
    }
}
