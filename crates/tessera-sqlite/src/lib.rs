//! `sqlite://` — Tessera's embedded, durable store.
//!
//! [`SqliteStore`] implements every store capability of `tessera_core`
//! ([`SessionStore`], [`RefreshStore`], [`EventStore`], [`SigningKeyStore`],
//! [`ApiKeyStore`], [`LeaseStore`], [`StoreHealth`]) on one SQLite file in
//! WAL mode:
//!
//! - **Writes** go through one connection owned by a dedicated thread
//!   (`writer`), which batches whatever is queued into one transaction
//!   ("group commit") with a savepoint per operation, so each trait method
//!   stays one atomic step while concurrent writers share the commit. A
//!   second thread checkpoints the WAL so commits never wait for it.
//! - **Reads** run on a small pool of reader threads, each with its own
//!   read-only connection (`readers`); WAL lets them run beside the writer
//!   on consistent snapshots. A session read by token hash is reused while
//!   `PRAGMA data_version` on the reader's connection shows that no other
//!   connection, in this process or another, has committed since (`cache`).
//! - No SQLite call runs on the caller's thread once the store is open: an
//!   async runtime's workers only queue work and await it, so a lock wait
//!   or a checkpoint never stalls them. [`SqliteStore::open`] itself blocks
//!   (it may migrate the schema): call it at startup, or from a blocking
//!   task.
//!
//! Only SQLite's public interface is used: the default VFS, documented
//! pragmas, no shared-memory layouts. Only token hashes are stored. Every
//! failure becomes a [`StoreError`]; nothing here panics on bad input or a
//! bad file.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod cache;
mod codec;
mod error;
mod ops;
mod readers;
mod schema;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tessera_core::store::WindowTotals;
use tessera_core::{
    ApiKeyRecord, ApiKeyStore, ClientRecord, ClientStore, CreateOptions, CreateOutcome, Event, EventKind,
    EventQuery, EventStore, LeaseStore, NewEvent, RateLimitStore, RefreshFamily, RefreshLookup, RefreshStore,
    ReplayStore, RevokeReason, Rotation, SessionRecord, SessionStore, SigningKeyRecord, SigningKeyStore,
    StoreError, StoreHealth, StoreResult, Timestamp, TokenHash,
};

use crate::codec::{FamilyRow, SessionRow};
use crate::readers::Readers;
use crate::writer::Writer;

/// Token hashes one writer job of the refresh-token collector deletes at
/// most (a few milliseconds of the writer's time).
const GC_STEPS: u32 = 500;

/// How hard a commit tries to reach the disk (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Commits survive a crash of the process (`kill -9`); an OS crash or
    /// power loss may drop the last few. The WAL is fsynced at checkpoints.
    #[default]
    Normal,
    /// Every commit is fsynced: commits also survive power loss. Group
    /// commit shares one fsync among the writes queued together.
    Full,
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// Reader connections (0 is taken as 1).
    pub readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Normal,
            readers: 4,
        }
    }
}

/// A complete [`tessera_core::Store`] on a SQLite file. Dropping it finishes the queued
/// writes, stops the writer thread and closes the file.
pub struct SqliteStore {
    path: PathBuf,
    // The readers are declared first so they close before the writer, which
    // as the last connection checkpoints the WAL into the main file.
    readers: Readers,
    writer: Writer,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("writer_running", &self.writer.is_running())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it, owner-only, if missing) the database at `path`
    /// and brings its schema up to date. Refuses a database written by a
    /// newer version of Tessera.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref();
        schema::create_file(path)?;
        let writer_conn = schema::open_writer(path, options.synchronous).map_err(|e| context(e, path))?;
        let checkpoint_conn = schema::open_checkpointer(path).map_err(|e| context(e, path))?;
        let readers = Readers::open(path, options.readers).map_err(|e| context(e, path))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            readers,
            writer: Writer::spawn(writer_conn, checkpoint_conn)?,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    fn stop_writer(&mut self) {
        self.writer.shutdown();
    }
}

fn context(e: StoreError, path: &Path) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("{}: {m}", path.display())),
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("{}: {m}", path.display())),
        d @ StoreError::Duplicate => d,
    }
}

fn shared(r: StoreResult<Option<SessionRecord>>) -> StoreResult<Option<Arc<SessionRecord>>> {
    r.map(|o| o.map(Arc::new))
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
    ) -> StoreResult<CreateOutcome> {
        let job = ops::Create {
            row: SessionRow::encode(session)?,
            replace: opts.replace.clone(),
            max_per_subject: opts.max_per_subject,
            now: opts.now,
            events: events.to_vec(),
        };
        self.writer.call(move |c| ops::create(c, &job)).await
    }

    async fn get(&self, handle: &str) -> StoreResult<Option<Arc<SessionRecord>>> {
        let handle = handle.to_owned();
        shared(self.readers.with(move |c| ops::get(c, &handle)).await)
    }

    async fn get_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.readers.session_by_token(*hash.as_bytes()).await
    }

    async fn touch(
        &self,
        handle: &str,
        token_hash: &TokenHash,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> StoreResult<bool> {
        let handle = handle.to_owned();
        let hash = *token_hash.as_bytes();
        self.writer
            .call(move |c| ops::touch(c, &handle, &hash, last_seen_at, idle_expires_at))
            .await
    }

    async fn update(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let row = SessionRow::encode(session)?;
        let events = events.to_vec();
        self.writer
            .call(move |c| ops::update(c, &row, expected_version, &events))
            .await
    }

    async fn list_by_subject(&self, subject: &str) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let subject = subject.to_owned();
        let all = self
            .readers
            .scan(move |c| ops::list_by_subject(c, &subject))
            .await?;
        Ok(all.into_iter().map(Arc::new).collect())
    }

    async fn revoke_subject(
        &self,
        subject: &str,
        except: Option<&str>,
        reason: RevokeReason,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        let subject = subject.to_owned();
        let except = except.map(str::to_owned);
        self.writer
            .call(move |c| ops::revoke_subject(c, &subject, except.as_deref(), reason, now))
            .await
    }

    async fn revoke_all_active(&self, reason: RevokeReason, now: Timestamp, batch: u32) -> StoreResult<u32> {
        self.writer
            .call(move |c| ops::revoke_all_active(c, reason, now, batch))
            .await
    }

    async fn sweep(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        if batch == 0 {
            return Ok(0);
        }
        let n = self.writer.call(move |c| ops::sweep(c, now, batch)).await?;
        if n < batch {
            // The end of a sweep round: delete the token hashes of the
            // families it (and earlier rounds) deleted, one bounded writer
            // job at a time so requests interleave.
            while self
                .writer
                .call(|c| ops::collect_refresh_tokens(c, GC_STEPS))
                .await?
                == GC_STEPS
            {}
        }
        Ok(n)
    }

    async fn count_active(&self, now: Timestamp) -> StoreResult<u64> {
        self.readers.scan(move |c| ops::count_active(c, now)).await
    }
}

#[async_trait]
impl RefreshStore for SqliteStore {
    async fn create_refresh_family(
        &self,
        family: &RefreshFamily,
        first: &TokenHash,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        let row = FamilyRow::encode(family)?;
        let first = *first.as_bytes();
        let events = events.to_vec();
        self.writer
            .call(move |c| ops::create_refresh_family(c, &row, &first, &events))
            .await
    }

    async fn create_with_refresh_family(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> StoreResult<CreateOutcome> {
        let job = ops::Create {
            row: SessionRow::encode(session)?,
            replace: opts.replace.clone(),
            max_per_subject: opts.max_per_subject,
            now: opts.now,
            events: events.to_vec(),
        };
        let family = FamilyRow::encode(family)?;
        let first = *first.as_bytes();
        // One writer job, so one savepoint: an error from the family's
        // inserts (a duplicate) rolls the session back with it.
        self.writer
            .call(move |c| {
                let out = ops::create(c, &job)?;
                if matches!(out, CreateOutcome::Created { .. }) {
                    ops::create_refresh_family(c, &family, &first, &[])?;
                }
                Ok(out)
            })
            .await
    }

    async fn update_with_refresh_family(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> StoreResult<bool> {
        let row = SessionRow::encode(session)?;
        let events = events.to_vec();
        let family = FamilyRow::encode(family)?;
        let first = *first.as_bytes();
        // One writer job, one savepoint (see `create_with_refresh_family`).
        self.writer
            .call(move |c| {
                let swapped = ops::update(c, &row, expected_version, &events)?;
                if swapped {
                    ops::create_refresh_family(c, &family, &first, &[])?;
                }
                Ok(swapped)
            })
            .await
    }

    async fn find_refresh(&self, hash: &TokenHash) -> StoreResult<Option<RefreshLookup>> {
        let hash = *hash.as_bytes();
        let found = self.readers.with(move |c| ops::find_refresh(c, &hash)).await?;
        Ok(found.map(|(generation, family)| RefreshLookup {
            family: Arc::new(family),
            generation,
        }))
    }

    async fn find_refresh_with_session(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshLookup, Option<Arc<SessionRecord>>)>> {
        // One statement on one reader: one read transaction, not two.
        let hash = *hash.as_bytes();
        let found = self
            .readers
            .with(move |c| ops::find_refresh_with_session(c, &hash))
            .await?;
        Ok(found.map(|(generation, family, session)| {
            let lookup = RefreshLookup {
                family: Arc::new(family),
                generation,
            };
            (lookup, session.map(Arc::new))
        }))
    }

    async fn rotate_refresh(&self, r: &Rotation<'_>, events: &[NewEvent]) -> StoreResult<bool> {
        let job = ops::Rotate {
            family_id: r.family_id.to_owned(),
            expected_generation: r.expected_generation,
            successor: *r.successor.as_bytes(),
            successor_sealed: r.successor_sealed.map(<[u8]>::to_vec),
            now: r.now,
            touch: r.touch.map(|t| {
                (
                    t.handle.to_owned(),
                    *t.token_hash.as_bytes(),
                    t.last_seen_at,
                    t.idle_expires_at,
                )
            }),
            bind: r
                .bind
                .map(|b| serde_json::to_string(b).map_err(|e| StoreError::Corrupt(format!("binding: {e}"))))
                .transpose()?,
            events: events.to_vec(),
        };
        self.writer.call(move |c| ops::rotate_refresh(c, &job)).await
    }

    async fn clear_sealed_successors(&self, rotated_before: Timestamp, batch: u32) -> StoreResult<u32> {
        if batch == 0 {
            return Ok(0);
        }
        self.writer
            .call(move |c| ops::clear_sealed_successors(c, rotated_before, batch))
            .await
    }

    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        reason: RevokeReason,
        now: Timestamp,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let family_id = family_id.to_owned();
        let events = events.to_vec();
        self.writer
            .call(move |c| ops::revoke_refresh_family(c, &family_id, reason, now, &events))
            .await
    }

    async fn refresh_families_of(&self, handle: &str) -> StoreResult<Vec<Arc<RefreshFamily>>> {
        let handle = handle.to_owned();
        let all = self
            .readers
            .with(move |c| ops::refresh_families_of(c, &handle))
            .await?;
        Ok(all.into_iter().map(Arc::new).collect())
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<Event>> {
        let query = query.clone();
        self.readers.scan(move |c| ops::events(c, &query)).await
    }

    async fn events_cursor_since(&self, kind: EventKind, since: Timestamp) -> StoreResult<u64> {
        self.readers
            .with(move |c| ops::events_cursor_since(c, kind, since))
            .await
    }

    async fn delete_events_before(&self, cutoff: Timestamp, batch: u32) -> StoreResult<u32> {
        if batch == 0 {
            return Ok(0);
        }
        self.writer
            .call(move |c| ops::delete_events_before(c, cutoff, batch))
            .await
    }

    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let events = events.to_vec();
        self.writer.call(move |c| ops::append_events(c, &events)).await
    }
}

#[async_trait]
impl SigningKeyStore for SqliteStore {
    async fn insert_signing_key(&self, key: &SigningKeyRecord, if_newest: Option<&str>) -> StoreResult<bool> {
        let key = key.clone();
        let if_newest = if_newest.map(str::to_owned);
        self.writer
            .call(move |c| ops::insert_signing_key(c, &key, if_newest.as_deref()))
            .await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        self.readers.with(ops::signing_keys).await
    }

    async fn delete_signing_key(&self, kid: &str) -> StoreResult<bool> {
        let kid = kid.to_owned();
        self.writer.call(move |c| ops::delete_signing_key(c, &kid)).await
    }

    async fn revoke_signing_key(&self, kid: &str, now: Timestamp) -> StoreResult<bool> {
        let kid = kid.to_owned();
        self.writer
            .call(move |c| ops::revoke_signing_key(c, &kid, now))
            .await
    }
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        let key = key.clone();
        self.writer.call(move |c| ops::insert_api_key(c, &key)).await
    }

    async fn api_key_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<ApiKeyRecord>> {
        let hash = *hash.as_bytes();
        self.readers.with(move |c| ops::api_key_by_hash(c, &hash)).await
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        self.readers.with(ops::list_api_keys).await
    }

    async fn revoke_api_key(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        let id = id.to_owned();
        self.writer.call(move |c| ops::revoke_api_key(c, &id, now)).await
    }
}

#[async_trait]
impl ClientStore for SqliteStore {
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()> {
        let client = client.clone();
        self.writer.call(move |c| ops::insert_client(c, &client)).await
    }

    async fn client_by_id(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        let id = client_id.to_owned();
        self.readers.with(move |c| ops::client_by_id(c, &id)).await
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        self.readers.with(ops::list_clients).await
    }

    async fn revoke_client(&self, client_id: &str, now: Timestamp) -> StoreResult<bool> {
        let id = client_id.to_owned();
        self.writer.call(move |c| ops::revoke_client(c, &id, now)).await
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (name, holder, ttl) = (
            name.to_owned(),
            holder.to_owned(),
            tessera_core::store::ttl_millis(ttl),
        );
        self.writer
            .call(move |c| ops::acquire_lease(c, &name, &holder, ttl, now))
            .await
    }

    async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (name, holder, ttl) = (
            name.to_owned(),
            holder.to_owned(),
            tessera_core::store::ttl_millis(ttl),
        );
        self.writer
            .call(move |c| ops::renew_lease(c, &name, &holder, ttl, now))
            .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.writer
            .call(move |c| ops::release_lease(c, &name, &holder))
            .await
    }
}

#[async_trait]
impl ReplayStore for SqliteStore {
    async fn use_once(&self, marker: &[u8; 32], expires_at: Timestamp, now: Timestamp) -> StoreResult<bool> {
        let marker = *marker;
        self.writer
            .call(move |c| ops::use_once(c, &marker, expires_at, now))
            .await
    }

    async fn sweep_markers(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        if batch == 0 {
            return Ok(0);
        }
        self.writer.call(move |c| ops::sweep_markers(c, now, batch)).await
    }
}

#[async_trait]
impl RateLimitStore for SqliteStore {
    async fn add_hits(
        &self,
        key: &[u8; 32],
        window: u64,
        hits: u64,
        expires_at: Timestamp,
        _now: Timestamp,
    ) -> StoreResult<WindowTotals> {
        let key = *key;
        self.writer
            .call(move |c| ops::add_hits(c, &key, window, hits, expires_at))
            .await
    }

    async fn sweep_counters(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        if batch == 0 {
            return Ok(0);
        }
        self.writer
            .call(move |c| ops::sweep_counters(c, now, batch))
            .await
    }
}

#[async_trait]
impl StoreHealth for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        if !self.writer.is_running() {
            return Err(StoreError::Unavailable(
                "the SQLite writer thread has stopped".into(),
            ));
        }
        if !self.readers.is_running() {
            return Err(StoreError::Unavailable(
                "a SQLite reader thread has stopped".into(),
            ));
        }
        self.readers.with(ops::ping).await
    }
}

#[cfg(test)]
mod tests;
