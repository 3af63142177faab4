//! Reader threads: a small fixed pool, each owning one read-only connection.
//!
//! WAL lets readers run beside the writer, each on its own snapshot. Every
//! SQLite call runs on one of these threads, never on the caller's (an
//! async runtime's worker): a read can wait up to the busy timeout for a
//! lock another process holds, or sit behind a WAL recovery, and on a
//! worker thread that would stall every request the worker serves. A read
//! is queued here and its caller awaits the answer.
//!
//! Handing a read to another thread costs little if that thread is awake,
//! and a context switch each way if it has to be woken. So a queued read
//! wakes a thread only when none is running, or when the running ones have
//! more than [`QUEUED_PER_RUNNING`] reads each waiting; a running thread
//! takes whatever is queued (up to [`MAX_BATCH`]) and runs it in one read
//! transaction. Under load one thread then answers reads back to back,
//! sharing one snapshot per batch, while the async workers keep the other
//! core. Each read in a batch was queued before the batch began, so it sees
//! every commit that finished before it was asked for. A read that may scan
//! many rows ([`Readers::scan`]) always wakes a thread of its own, so point
//! reads do not queue behind it.
//!
//! The woken thread is the one idle the shortest time: under light load
//! one thread serves every read, so its caches stay warm, instead of the
//! reads rotating over threads that each warm up their own.
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
use crate::schema::exec;
use crate::{ops, schema};

/// Queued reads per running thread above which another thread is woken.
const QUEUED_PER_RUNNING: usize = 8;

/// Times an idle thread yields the CPU and looks again before it parks.
const SPINS: u32 = 20;

/// Most reads one thread takes into one read transaction.
const MAX_BATCH: usize = 32;

/// What a reader thread lends a job: its connection and its session cache.
pub(crate) struct Reader {
    conn: Connection,
    sessions: SessionCache,
    /// `PRAGMA data_version` of the open batch transaction, once read.
    batch_version: Option<i64>,
}

impl Reader {
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// `get_by_token`, answered from memory when no other connection has
    /// committed since the session was last read on this connection.
    fn session_by_token(&mut self, hash: &[u8; 32]) -> StoreResult<Option<Arc<SessionRecord>>> {
        let version = match self.batch_version {
            Some(v) => v,
            None => {
                let v = data_version(&self.conn)?;
                if !self.conn.is_autocommit() {
                    self.batch_version = Some(v);
                }
                v
            }
        };
        if let Some(hit) = self.sessions.get(hash, version) {
            return Ok(Some(hit));
        }
        // Outside a batch this read runs in a transaction of its own, after
        // the one that read `version`, so it sees at least that state: the
        // entry is never older than the version it is filed under, and any
        // commit after it changes the version the next lookup compares.
        let found = ops::get_by_token(&self.conn, hash)?.map(Arc::new);
        match &found {
            Some(rec) => self.sessions.put(hash, version, Arc::clone(rec)),
            None => self.sessions.forget(hash),
        }
        Ok(found)
    }

    /// Runs `batch`, sharing one read transaction when there are several.
    fn run_batch(&mut self, batch: &mut Vec<Job>) {
        let shared = batch.len() > 1 && exec(&self.conn, "BEGIN").is_ok();
        for job in batch.drain(..) {
            job.run(self);
        }
        self.batch_version = None;
        // A read ends its transaction by itself only on an error that
        // rolled it back; otherwise end it here, releasing the snapshot.
        if shared
            && !self.conn.is_autocommit()
            && let Err(e) = exec(&self.conn, "COMMIT")
        {
            tracing::warn!(error = %e, "ending a SQLite read transaction failed");
            let _ = exec(&self.conn, "ROLLBACK");
        }
    }
}

fn data_version(c: &Connection) -> StoreResult<i64> {
    c.prepare_cached("PRAGMA data_version")
        .store()?
        .query_row([], |r| r.get(0))
        .store()
}

type SessionReply = oneshot::Sender<StoreResult<Option<Arc<SessionRecord>>>>;

/// A queued read. The session lookup behind every verify is its own
/// variant, held inline in the queue: boxing it would cost an allocation
/// on the caller's thread and a cross-thread free on the reader's, per
/// request.
enum Job {
    SessionByToken([u8; 32], SessionReply),
    Other(Box<dyn FnOnce(&mut Reader) + Send>),
}

impl Job {
    fn run(self, reader: &mut Reader) {
        match self {
            Job::SessionByToken(hash, tx) => {
                let r = guarded(|| reader.session_by_token(&hash));
                // The caller may have gone away; nothing was changed.
                let _ = tx.send(r);
            }
            Job::Other(f) => f(reader),
        }
    }
}

/// Runs one read, turning a panic into an error: a bug in one read must
/// not take the thread, and with it a share of every later read, down.
fn guarded<R>(f: impl FnOnce() -> StoreResult<R>) -> StoreResult<R> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        tracing::error!("a SQLite read panicked");
        Err(StoreError::Unavailable(
            "internal error in a SQLite reader".into(),
        ))
    })
}

struct Queue {
    jobs: VecDeque<Job>,
    /// The threads parked waiting for work, most recently idle last.
    idle: Vec<usize>,
    /// Threads not parked: running reads or about to look for more.
    running: usize,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// One per thread, all used with `queue`.
    ready: Box<[Condvar]>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                idle: Vec::with_capacity(conns.len()),
                running: conns.len(),
                closed: false,
            }),
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
                batch_version: None,
            };
            let thread = std::thread::Builder::new()
                .name(format!("tessera-sqlite-read-{i}"))
                .spawn(move || run(i, reader, &shared));
            match thread {
                Ok(t) => readers.threads.push(t),
                Err(e) => {
                    // Dropping `readers` stops the threads already started;
                    // this one never ran, so it never counts as running.
                    readers.shared.lock().running -= 1;
                    return Err(StoreError::Unavailable(format!(
                        "cannot start a SQLite reader thread: {e}"
                    )));
                }
            }
        }
        Ok(readers)
    }

    async fn submit<R, F>(&self, f: F, own_thread: bool) -> StoreResult<R>
    where
        F: FnOnce(&mut Reader) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Job::Other(Box::new(move |reader| {
            // The caller may have gone away; nothing was changed.
            let _ = tx.send(guarded(|| f(reader)));
        }));
        self.enqueue(job, own_thread)?;
        // A dropped sender means every reader thread is gone.
        rx.await.map_err(|_| stopped())?
    }

    fn enqueue(&self, job: Job, own_thread: bool) -> StoreResult<()> {
        let mut q = self.shared.lock();
        if q.closed {
            return Err(stopped());
        }
        q.jobs.push_back(job);
        if (own_thread || q.running == 0 || q.jobs.len() > q.running * QUEUED_PER_RUNNING)
            && let Some(i) = q.idle.pop()
        {
            q.running += 1;
            self.shared.ready[i].notify_one();
        }
        Ok(())
    }

    /// A read of a session by token hash, through the reader's cache.
    pub(crate) async fn session_by_token(&self, hash: [u8; 32]) -> StoreResult<Option<Arc<SessionRecord>>> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Job::SessionByToken(hash, tx), false)?;
        rx.await.map_err(|_| stopped())?
    }

    /// A point read (a few index searches) on a reader's connection.
    pub(crate) async fn with<R, F>(&self, f: F) -> StoreResult<R>
    where
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        self.submit(move |r| f(r.conn()), false).await
    }

    /// A read that may walk many rows: it gets a thread of its own if one
    /// is idle, so the point reads queued after it are not held up.
    pub(crate) async fn scan<R, F>(&self, f: F) -> StoreResult<R>
    where
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        self.submit(move |r| f(r.conn()), true).await
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
        self.shared.lock().closed = true;
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
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut q = shared.lock();
            let mut spins = 0;
            loop {
                if !q.jobs.is_empty() {
                    let n = q.jobs.len().min(MAX_BATCH);
                    batch.extend(q.jobs.drain(..n));
                    break;
                }
                // Queued reads are answered before a close takes effect.
                if q.closed {
                    return;
                }
                if spins < SPINS {
                    spins += 1;
                    drop(q);
                    std::thread::yield_now();
                    q = shared.lock();
                    continue;
                }
                q.running -= 1;
                q.idle.push(me);
                q = shared.ready[me].wait(q).unwrap_or_else(PoisonError::into_inner);
                // Woken by a read, which took this thread off the idle list
                // and counted it as running, or spuriously, which did not.
                if let Some(pos) = q.idle.iter().position(|&i| i == me) {
                    q.idle.remove(pos);
                    q.running += 1;
                }
            }
        }
        reader.run_batch(&mut batch);
    }
}
