//! The single writer: one connection on a dedicated thread, with group commit.
//!
//! SQLite allows one writer at a time, and what a write costs is mostly the
//! commit (a WAL append, plus an fsync with `synchronous=FULL`). So the
//! thread takes one job, drains whatever else is already queued, and runs
//! the lot in one `BEGIN IMMEDIATE` transaction, each job inside its own
//! SAVEPOINT. A job that fails rolls back only its savepoint and gets its
//! own error; the others commit together and are answered after the one
//! COMMIT, so no caller is told "done" before its write is durable.
//!
//! Under no load a batch is one job, so latency is one commit; under load
//! the batch grows and the commit cost is shared.
//!
//! Savepoints are not free: SAVEPOINT and RELEASE are two more statements
//! per job, and every page a job changes is first copied to the savepoint
//! journal. Jobs almost never fail, so a batch first runs without them; if
//! a job does fail, the transaction is rolled back, the failed job keeps
//! its error, and the others are run again, each in its own savepoint. That
//! is why jobs are `FnMut`: they are functions of the database state and
//! their captured arguments, so running one again on the same state does
//! the same thing.
//!
//! Checkpoints (copying the WAL back into the main file, two fsyncs each)
//! run on a second thread with its own connection, nudged after commits and
//! at most every [`CHECKPOINT_GAP`]. Left to SQLite's auto-checkpoint they
//! would run inside a commit on the writer thread and stall every queued
//! write for those fsyncs: in `benches/sqlite.rs` that roughly doubled the
//! slowest samples and the mean of single creates (the median is the same).
//! A checkpoint is not a write transaction, so this does not add a writer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tessera_core::{StoreError, StoreResult};
use tokio::sync::oneshot;

use crate::schema::exec;

/// Most jobs in one transaction: bounds how long the writer holds the lock
/// and how much work one failed commit throws away.
const MAX_BATCH: usize = 256;

/// Least time between two background checkpoints: under a stream of
/// commits this batches their fsyncs, and keeps the WAL to what a busy
/// writer appends in that time.
const CHECKPOINT_GAP: Duration = Duration::from_millis(100);

/// A queued write, type-erased so one channel carries every operation.
trait Job: Send {
    /// Runs on the writer connection inside the batch's transaction (and
    /// maybe the job's savepoint). Returns whether to keep its changes. May
    /// be called again after its changes were rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Replies to the caller. `lost` says why the changes the job kept were
    /// not committed after all.
    fn finish(self: Box<Self>, lost: Option<&str>);
}

struct Call<F, R> {
    f: F,
    result: Option<StoreResult<R>>,
    reply: oneshot::Sender<StoreResult<R>>,
}

impl<F, R> Job for Call<F, R>
where
    F: FnMut(&Connection) -> StoreResult<R> + Send,
    R: Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let f = &mut self.f;
        // A bug in one operation must not take the writer, and with it
        // every later write, down.
        let r = catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or_else(|_| {
            tracing::error!("a SQLite write job panicked; its savepoint is rolled back");
            Err(StoreError::Unavailable(
                "internal error in the SQLite writer".into(),
            ))
        });
        let keep = r.is_ok();
        self.result = Some(r);
        keep
    }

    fn finish(self: Box<Self>, lost: Option<&str>) {
        let reply = match (self.result, lost) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), None) => Ok(v),
            (_, Some(why)) => Err(StoreError::Unavailable(why.to_owned())),
            (None, None) => Err(StoreError::Unavailable("the write was not run".into())),
        };
        // The caller may have gone away (its future dropped); the write
        // stands regardless, as it would with any database.
        let _ = self.reply.send(reply);
    }
}

pub(crate) struct Writer {
    tx: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
    checkpointer: Option<JoinHandle<()>>,
}

fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) -> StoreResult<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| StoreError::Unavailable(format!("cannot start thread {name}: {e}")))
}

impl Writer {
    /// Starts the writer on `conn` and the checkpointer on `checkpoint_conn`.
    pub(crate) fn spawn(conn: Connection, checkpoint_conn: Connection) -> StoreResult<Self> {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        // Capacity 1: nudges that arrive while one is pending coalesce.
        let (nudge, nudged) = mpsc::sync_channel::<()>(1);
        // The checkpointer stops when the writer thread, holding the only
        // nudge sender, ends.
        let checkpointer = spawn_named("tessera-sqlite-checkpoint", move || {
            checkpoint_loop(&checkpoint_conn, &nudged)
        })?;
        let thread = spawn_named("tessera-sqlite-writer", move || run(&conn, &rx, &nudge))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            checkpointer: Some(checkpointer),
        })
    }

    /// Queues `f` and waits for the commit of the batch it lands in.
    pub(crate) async fn call<R, F>(&self, f: F) -> StoreResult<R>
    where
        F: FnMut(&Connection) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        let stopped = || StoreError::Unavailable("the SQLite writer thread has stopped".into());
        let (reply, rx) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Call {
            f,
            result: None,
            reply,
        });
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        // A dropped reply sender means the thread died with the job queued.
        rx.await.map_err(|_| stopped())?
    }

    pub(crate) fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Closes the queue and waits for the thread to finish the jobs already
    /// in it and close its connection.
    pub(crate) fn shutdown(&mut self) {
        drop(self.tx.take());
        for t in [self.thread.take(), self.checkpointer.take()]
            .into_iter()
            .flatten()
        {
            if t.join().is_err() {
                tracing::error!("a SQLite store thread panicked");
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(conn: &Connection, rx: &mpsc::Receiver<Box<dyn Job>>, nudge: &mpsc::SyncSender<()>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    // recv() fails once every sender is gone and the queue is empty.
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if commit_batch(conn, &mut batch) {
            // Full means a nudge is already pending; the checkpointer gone
            // means the auto-checkpoint backstop takes over.
            let _ = nudge.try_send(());
        }
    }
}

fn checkpoint_loop(conn: &Connection, nudged: &mpsc::Receiver<()>) {
    let mut pending = false;
    loop {
        if !pending && nudged.recv().is_err() {
            return;
        }
        pending = false;
        // PASSIVE never waits for readers or the writer; whatever it cannot
        // copy now is copied next time.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry after the next commit");
        }
        let until = Instant::now() + CHECKPOINT_GAP;
        loop {
            match nudged.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(()) => pending = true,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// Runs and commits one batch, answering every job; true if it committed.
fn commit_batch(conn: &Connection, batch: &mut Vec<Box<dyn Job>>) -> bool {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let why = format!("cannot start a write transaction: {e}");
        for job in batch.drain(..) {
            job.finish(Some(&why));
        }
        return false;
    }
    let mut failed = None;
    for (i, job) in batch.iter_mut().enumerate() {
        // A job that errs, or an error that made SQLite end the
        // transaction, sends the batch down the savepoint path.
        if !job.run(conn) || conn.is_autocommit() {
            failed = Some(i);
            break;
        }
    }
    let Some(i) = failed else {
        let lost = exec(conn, "COMMIT").err().map(|e| {
            tracing::error!(error = %e, jobs = batch.len(), "SQLite commit failed");
            format!("the commit failed: {e}")
        });
        if lost.is_some() && !conn.is_autocommit() {
            let _ = exec(conn, "ROLLBACK");
        }
        for job in batch.drain(..) {
            job.finish(lost.as_deref());
        }
        return lost.is_none();
    };
    if !conn.is_autocommit()
        && let Err(e) = exec(conn, "ROLLBACK")
    {
        // The transaction is still open with unknown changes in it: nothing
        // of this batch can be committed.
        let why = format!("the write was rolled back: {e}");
        for job in batch.drain(..) {
            job.finish(Some(&why));
        }
        return false;
    }
    // The failed job's changes are gone with the rollback; it answers with
    // its own error (or, if it had none, the transaction's loss).
    let failed_job = batch.remove(i);
    failed_job.finish(Some("SQLite rolled back the write transaction"));
    commit_in_savepoints(conn, batch)
}

/// Runs and commits one batch with a savepoint per job, answering every
/// job; true if it committed.
fn commit_in_savepoints(conn: &Connection, batch: &mut Vec<Box<dyn Job>>) -> bool {
    // Jobs that ran in the open transaction and wait for its outcome.
    let mut pending: Vec<Box<dyn Job>> = Vec::with_capacity(batch.len());
    for mut job in batch.drain(..) {
        if conn.is_autocommit()
            && let Err(e) = exec(conn, "BEGIN IMMEDIATE")
        {
            job.finish(Some(&format!("cannot start a write transaction: {e}")));
            continue;
        }
        if let Err(e) = exec(conn, "SAVEPOINT job") {
            job.finish(Some(&format!("cannot open a savepoint: {e}")));
            continue;
        }
        let end = if job.run(conn) {
            exec(conn, "RELEASE job")
        } else {
            exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"))
        };
        let lost = match end {
            Err(e) => Some(e.to_string()),
            // Some errors (I/O, disk full) make SQLite roll back the whole
            // transaction, taking the earlier jobs' changes with it.
            Ok(()) if conn.is_autocommit() => Some("SQLite rolled back the write transaction".to_owned()),
            Ok(()) => None,
        };
        if let Some(e) = lost {
            let why = format!("the write was rolled back: {e}");
            if !conn.is_autocommit() {
                let _ = exec(conn, "ROLLBACK");
            }
            for j in pending.drain(..) {
                j.finish(Some(&why));
            }
            job.finish(Some(&why));
            continue;
        }
        pending.push(job);
    }
    if conn.is_autocommit() {
        return false;
    }
    let lost = exec(conn, "COMMIT").err().map(|e| {
        tracing::error!(error = %e, jobs = pending.len(), "SQLite commit failed");
        format!("the commit failed: {e}")
    });
    if lost.is_some() && !conn.is_autocommit() {
        let _ = exec(conn, "ROLLBACK");
    }
    for j in pending {
        j.finish(lost.as_deref());
    }
    lost.is_none()
}
