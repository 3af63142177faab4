//! Connection setup and schema migrations.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tessera_core::{StoreError, StoreResult};

use crate::Synchronous;
use crate::error::SqlResultExt;

/// How long a connection waits for a lock held by another connection (or
/// another process, e.g. an operator's `sqlite3` shell) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of WAL kept after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// WAL pages (64 MiB of 4 KiB pages) after which the writer checkpoints
/// by itself.
const AUTOCHECKPOINT_BACKSTOP: i64 = 16 * 1024;

/// Enough for every distinct statement a connection runs, so none is ever
/// re-prepared (the default of 16 is smaller than the writer's set).
const STATEMENT_CACHE: usize = 64;

/// The schema, one entry per version: entry `i` takes the database from
/// `user_version = i` to `i + 1`. Entries are append-only; a released
/// migration is never edited.
///
/// Notes on version 1:
/// - `expires_at` is a stored generated column, so the index the sweeper and
///   `count_active` use can never disagree with the two expiries it derives
///   from, whatever statement writes them.
/// - Timestamps are INTEGER Unix milliseconds, what `Timestamp` holds.
/// - `STRICT` makes SQLite refuse a value of the wrong type instead of
///   storing it, so a bug cannot write something we later fail to decode.
/// - `events.id` is AUTOINCREMENT so ids are never reused, even after the
///   newest events are deleted: it is a public cursor.
pub(crate) const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE sessions (
    handle              TEXT    NOT NULL PRIMARY KEY,
    token_hash          BLOB    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    subject             TEXT    NOT NULL,
    version             INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    last_seen_at        INTEGER NOT NULL,
    idle_timeout_ms     INTEGER NOT NULL,
    idle_expires_at     INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL
        GENERATED ALWAYS AS (min(idle_expires_at, absolute_expires_at)) STORED,
    auth_level          INTEGER NOT NULL,
    auth_methods        TEXT    NOT NULL,
    auth_time           INTEGER NOT NULL,
    device_user_agent   TEXT,
    device_ip           TEXT,
    device_label        TEXT    NOT NULL,
    binding             TEXT,
    data                TEXT    NOT NULL,
    revoked_at          INTEGER,
    revoke_reason       TEXT,
    CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
) STRICT;
CREATE INDEX sessions_subject ON sessions (subject);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    handle  TEXT    NOT NULL,
    reason  TEXT
) STRICT;
CREATE INDEX events_subject ON events (subject);
CREATE INDEX events_handle ON events (handle);

CREATE TABLE api_keys (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    hash       BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
",
    // Version 2: refresh-token families and signing keys.
    // - A family belongs to a session: deleting the session (the sweeper)
    //   deletes its families, and a family's token hashes go with it, by
    //   cascade in the same statement. The writer connection enables
    //   `foreign_keys`; the core always creates a session before its families.
    // - `refresh_tokens` keeps every hash a family ever issued, consumed ones
    //   included: that is how a replayed token is recognised.
    // - The newest signing key is the greatest (`activates_at`, `kid`); the
    //   index answers that with one step from its end.
    r"
CREATE TABLE refresh_families (
    id                 TEXT    NOT NULL PRIMARY KEY,
    handle             TEXT    NOT NULL REFERENCES sessions (handle) ON DELETE CASCADE,
    session_token_hash BLOB    NOT NULL CHECK (length(session_token_hash) = 32),
    client_id          TEXT    NOT NULL,
    scope              TEXT    NOT NULL,
    audience           TEXT    NOT NULL,
    generation         INTEGER NOT NULL CHECK (generation >= 0),
    created_at         INTEGER NOT NULL,
    rotated_at         INTEGER NOT NULL,
    current_sealed     BLOB,
    binding            TEXT,
    revoked_at         INTEGER,
    revoke_reason      TEXT,
    CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
) STRICT;
CREATE INDEX refresh_families_handle ON refresh_families (handle);

CREATE TABLE refresh_tokens (
    hash       BLOB    NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    family_id  TEXT    NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    generation INTEGER NOT NULL CHECK (generation >= 0)
) STRICT, WITHOUT ROWID;
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE signing_keys (
    kid            TEXT    NOT NULL PRIMARY KEY,
    alg            TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    activates_at   INTEGER NOT NULL,
    private_sealed BLOB    NOT NULL,
    public_jwk     TEXT    NOT NULL
) STRICT;
CREATE INDEX signing_keys_activates_at ON signing_keys (activates_at, kid);
",
    // Version 3: fewer pages written per refresh rotation. A rotation wrote
    // three scattered b-tree pages for the refresh tables (the family row,
    // the token hash, and the `refresh_tokens_family` index entry, plus the
    // foreign-key probe of the family for the insert); this keeps the first
    // two. Refresh rotation over HTTP ran 4–14 % faster in alternating
    // runs (and 25 % lower p99).
    // - `refresh_families` is WITHOUT ROWID: rotation and lookup find it by
    //   `id` in one b-tree instead of the id index and then the table.
    // - `refresh_tokens` loses its family index and foreign key. Each token
    //   instead names the one it replaced (`previous`), and the family its
    //   newest (`current_hash`), so a family's hashes form a chain that can
    //   be walked from its head without an index.
    // - Deleting a family (the cascade from its session) queues the head of
    //   its chain in `refresh_tokens_gc`; the sweeper walks and deletes the
    //   chain later in bounded steps. Until then the orphaned hashes are
    //   invisible: every lookup joins the family, which is gone.
    // - Events lose their `handle` index, the other scattered page each
    //   rotation's `refreshed` event wrote (+10–13 % in alternating runs).
    //   A query by handle alone looks up the handle's subject and walks the
    //   subject index: from `sessions` while the session lives, and from
    //   `ended_sessions` (filled by a trigger as sessions are deleted) after.
    // Existing rows get their links here, once (through a temporary index
    // on the old table), and ended sessions their subjects from one pass
    // over the events.
    r"
CREATE TABLE refresh_families_v3 (
    id                 TEXT    NOT NULL PRIMARY KEY,
    handle             TEXT    NOT NULL REFERENCES sessions (handle) ON DELETE CASCADE,
    session_token_hash BLOB    NOT NULL CHECK (length(session_token_hash) = 32),
    client_id          TEXT    NOT NULL,
    scope              TEXT    NOT NULL,
    audience           TEXT    NOT NULL,
    generation         INTEGER NOT NULL CHECK (generation >= 0),
    created_at         INTEGER NOT NULL,
    rotated_at         INTEGER NOT NULL,
    current_sealed     BLOB,
    binding            TEXT,
    revoked_at         INTEGER,
    revoke_reason      TEXT,
    current_hash       BLOB    NOT NULL CHECK (length(current_hash) = 32),
    CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
) STRICT, WITHOUT ROWID;

CREATE TABLE refresh_tokens_v3 (
    hash       BLOB    NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    family_id  TEXT    NOT NULL,
    generation INTEGER NOT NULL CHECK (generation >= 0),
    previous   BLOB    CHECK (previous IS NULL OR length(previous) = 32)
) STRICT, WITHOUT ROWID;

-- Each link below is one search, not a walk over the family's hashes.
CREATE INDEX refresh_tokens_v2_generation ON refresh_tokens (family_id, generation);

INSERT INTO refresh_families_v3 (id, handle, session_token_hash, client_id, scope, audience, generation,
        created_at, rotated_at, current_sealed, binding, revoked_at, revoke_reason, current_hash)
    SELECT f.id, f.handle, f.session_token_hash, f.client_id, f.scope, f.audience, f.generation,
        f.created_at, f.rotated_at, f.current_sealed, f.binding, f.revoked_at, f.revoke_reason,
        coalesce((SELECT t.hash FROM refresh_tokens t WHERE t.family_id = f.id AND t.generation = f.generation),
                 zeroblob(32))
    FROM refresh_families f;

INSERT INTO refresh_tokens_v3 (hash, family_id, generation, previous)
    SELECT t.hash, t.family_id, t.generation,
        (SELECT p.hash FROM refresh_tokens p WHERE p.family_id = t.family_id AND p.generation = t.generation - 1)
    FROM refresh_tokens t;

DROP TABLE refresh_tokens;
DROP TABLE refresh_families;
ALTER TABLE refresh_families_v3 RENAME TO refresh_families;
ALTER TABLE refresh_tokens_v3 RENAME TO refresh_tokens;
CREATE INDEX refresh_families_handle ON refresh_families (handle);

CREATE TABLE refresh_tokens_gc (
    head BLOB NOT NULL PRIMARY KEY CHECK (length(head) = 32)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER refresh_families_deleted AFTER DELETE ON refresh_families
BEGIN
    INSERT OR IGNORE INTO refresh_tokens_gc (head) VALUES (old.current_hash);
END;

CREATE TABLE ended_sessions (
    handle  TEXT NOT NULL PRIMARY KEY,
    subject TEXT NOT NULL
) STRICT, WITHOUT ROWID;

INSERT OR IGNORE INTO ended_sessions (handle, subject)
    SELECT e.handle, e.subject FROM events e
    WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.handle = e.handle);

CREATE TRIGGER sessions_deleted AFTER DELETE ON sessions
BEGIN
    INSERT OR IGNORE INTO ended_sessions (handle, subject) VALUES (old.handle, old.subject);
END;

DROP INDEX events_handle;
",
    // Version 4: sealed successors are kept only for the reuse grace window (SPEC §5:
    // a copy of the store yields no refresh token but those rotated within
    // the last grace window). The sweeper clears the older ones in bounded
    // batches, oldest first, through this partial index, which holds only
    // the families that still have one: those rotated within about the
    // last grace window (at most a minute) plus one clearing interval.
    // Its cost per rotation is one entry added near the index's right end
    // (rotations arrive in `rotated_at` order) and, for a family rotated
    // again inside the window, one removed next to it: a page or two the
    // whole group commit shares, not a scattered page per rotation as an
    // index on a random key would be. A bounded scan of `refresh_families`
    // instead would cost nothing per rotation but read every family on
    // each clearing pass. Existing sealed successors are cleared by the
    // first sweeps after the upgrade.
    r"
CREATE INDEX refresh_families_sealed ON refresh_families (rotated_at) WHERE current_sealed IS NOT NULL;
",
    // Version 5: the revocation feed from indexes, and revoked signing keys.
    // - The feed reads only `revoked` events: the follow-up by id (`id >
    //   after`) and the snapshot's start (the first revocation at or after a
    //   time). Both indexes are partial, over `revoked` events alone, so the
    //   events every refresh rotation and login append (`refreshed`,
    //   `created`) write no extra index page; the queries name the kind as
    //   the literal `'revoked'`, which is what lets SQLite use them.
    // - `signing_keys.revoked_at`: set by `tessera keys revoke`, which also
    //   empties `private_sealed`; the row stays as the record of it.
    r"
CREATE INDEX events_revoked_id ON events (id) WHERE kind = 'revoked';
CREATE INDEX events_revoked_at ON events (at) WHERE kind = 'revoked';
ALTER TABLE signing_keys ADD COLUMN revoked_at INTEGER;
",
    // Version 6: API key scopes (SPEC §4.1), space-separated names. Keys created before
    // scopes existed keep the power they had, `admin`, so an upgrade breaks
    // no deployment; `tessera serve` warns about every admin key but the
    // bootstrap one until they are replaced by narrower keys.
    r"
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'admin';
",
    // Version 7: `ended_sessions` no longer grows forever. Each row gets the
    // time its session ended (the sweep's `now`; the session's own expiry
    // if a row is deleted some other way), and event retention deletes the
    // rows that ended before its cutoff: every event about a session
    // happens before it is deleted, so by then none is left to look up.
    // Existing rows take the time of their session's last event (0 when
    // none is left, so the next retention pass removes them).
    r"
ALTER TABLE ended_sessions ADD COLUMN ended_at INTEGER NOT NULL DEFAULT 0;
UPDATE ended_sessions SET ended_at = COALESCE(
    (SELECT max(e.at) FROM events e
     WHERE e.subject = ended_sessions.subject AND e.handle = ended_sessions.handle), 0);
CREATE INDEX ended_sessions_ended_at ON ended_sessions (ended_at);
DROP TRIGGER sessions_deleted;
CREATE TRIGGER sessions_deleted AFTER DELETE ON sessions
BEGIN
    INSERT OR IGNORE INTO ended_sessions (handle, subject, ended_at)
        VALUES (old.handle, old.subject, old.expires_at);
END;
",
    // Version 8: leases, so processes sharing the file (several services on
    // one machine, or the CLI beside the service) do each cluster-wide
    // duty once (`tessera_core::LeaseStore`). A row per duty name; an
    // expired row is taken over in place, so the table never grows past
    // the handful of duty names.
    r"
CREATE TABLE leases (
    name       TEXT NOT NULL PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
",
    // Version 9: single-use markers (`tessera_core::ReplayStore`): DPoP
    // proof `jti`s seen by any process sharing the file. Keyed by a digest
    // the core derives; the sweeper deletes expired rows through the
    // expiry index.
    r"
CREATE TABLE used_markers (
    marker     BLOB NOT NULL PRIMARY KEY,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX used_markers_expires_at ON used_markers (expires_at);
",
    // Version 10: rate-limit counters (`tessera_core::RateLimitStore`),
    // shared by every process on the file. A row per counter and window,
    // keyed by a digest the core derives; each process adds its hits in
    // batches, so a row is written a few times a second at most.
    r"
CREATE TABLE rate_counters (
    key        BLOB NOT NULL,
    window     INTEGER NOT NULL,
    hits       INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (key, window)
) STRICT, WITHOUT ROWID;
CREATE INDEX rate_counters_expires_at ON rate_counters (expires_at);
",
    // Version 11: OAuth clients registered at run time
    // (`tessera_core::ClientStore`). The registration is the core's JSON
    // text, kept as it is, so a new client setting needs no migration.
    r"
CREATE TABLE clients (
    client_id    TEXT NOT NULL PRIMARY KEY,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    registration TEXT NOT NULL
) STRICT;
",
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Creates the file if missing, owner-only on unix: it holds token hashes
/// and session data. SQLite gives the `-wal` and `-shm` files it creates
/// the same permissions as the database file.
pub(crate) fn create_file(path: &Path) -> StoreResult<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!(
            "cannot create database file {}: {e}",
            path.display()
        ))),
    }
}

fn open_flags() -> OpenFlags {
    // No URI flag: the path is a path, even if it starts with "file:".
    // NO_MUTEX: each connection is used by one thread at a time (the writer
    // thread, or the reader thread that owns it).
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

fn base_setup(conn: &Connection) -> StoreResult<()> {
    conn.busy_timeout(BUSY_TIMEOUT).store()?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Without the query-planner stability guarantee SQLite may re-plan a
    // cached statement whenever its bound values change; the profile of
    // refresh rotation showed the find_refresh JOIN re-parsed on nearly
    // every call (16% of server CPU). Our queries are all key lookups whose
    // best plan does not depend on the values.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .store()?;
    Ok(())
}

/// Runs one parameterless statement (a transaction or savepoint command)
/// from the connection's statement cache.
pub(crate) fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Page size of new database files.
const PAGE_SIZE: i64 = 2048;

/// Bytes of the database file the writer maps (address space, not memory:
/// pages are shared with the OS page cache).
const MMAP_SIZE: i64 = 1 << 30;

/// Opens the writer connection: WAL, the chosen durability, and the schema
/// brought up to date.
pub(crate) fn open_writer(path: &Path, sync: Synchronous) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(path, open_flags()).store()?;
    base_setup(&conn)?;
    // The writer's page cache survives its own commits, so the map only
    // saves it copying pages it reads for the first time.
    conn.pragma_update(None, "mmap_size", MMAP_SIZE).store()?;
    // Only takes effect on a new, empty file (before WAL and the first
    // table). Rows are small and keyed by random hashes, so each write
    // dirties a few scattered pages; smaller pages mean fewer WAL bytes per
    // commit.
    conn.pragma_update(None, "page_size", PAGE_SIZE).store()?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .store()?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Without WAL readers and the writer would block each other and the
        // reader pool would turn into SQLITE_BUSY errors under load.
        return Err(StoreError::Unavailable(format!(
            "{} cannot use WAL journaling (got {mode:?}); is it on a network file system?",
            path.display()
        )));
    }
    let sync = match sync {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync).store()?;
    conn.pragma_update(None, "foreign_keys", "ON").store()?;
    // Cleared and deleted values (a sealed refresh successor past its grace
    // window, a deleted session's row) are zeroed in the page where that
    // costs no extra I/O, rather than left in its free space for a copy of
    // the file to yield (SPEC §5).
    conn.pragma_update(None, "secure_delete", "FAST").store()?;
    // A burst can grow the WAL far past its usual size, and SQLite reuses
    // the file rather than shrinking it; this truncates it back after a
    // checkpoint so one spike does not hold the disk space for good.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
        .store()?;
    // Checkpoints run on their own thread (see `writer`); this only bounds
    // the WAL if that thread cannot keep up or has stopped.
    conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_BACKSTOP)
        .store()?;
    migrate(&conn)?;
    Ok(conn)
}

/// Opens the connection the background checkpointer uses.
pub(crate) fn open_checkpointer(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(path, open_flags()).store()?;
    base_setup(&conn)?;
    Ok(conn)
}

/// Opens a reader connection. `query_only` turns an accidental write
/// through a reader into an error instead of a second writer.
///
/// Readers do not map the file. A reader drops its page cache at the first
/// read after any commit, and with a map SQLite also unmaps the whole file
/// then (`pagerBeginReadTransaction`), so under writes every re-read page
/// cost a page fault, and every commit a `munmap` with its TLB shootdown
/// across cores. Plain `pread` copies of 2 KiB pages are cheaper: refresh
/// rotation over HTTP ran 6–9 % faster without the map in alternating runs.
pub(crate) fn open_reader(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(path, open_flags()).store()?;
    base_setup(&conn)?;
    conn.pragma_update(None, "query_only", "ON").store()?;
    Ok(conn)
}

/// Applies the pending migrations in one IMMEDIATE transaction, so two
/// processes opening the same new file cannot both migrate it, and a crash
/// half-way leaves the previous version intact.
pub(crate) fn migrate(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch("BEGIN IMMEDIATE").store()?;
    let result = apply_pending(conn);
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = conn.execute_batch(end).store();
    result.and(ended)
}

fn apply_pending(conn: &Connection) -> StoreResult<()> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .store()?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "the database schema is version {current}, newer than this build of tessera understands \
             ({SCHEMA_VERSION}); run a newer tessera or restore a backup"
        )));
    }
    if current < 0 {
        return Err(StoreError::Unavailable(format!(
            "the database has an invalid schema version ({current})"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        conn.execute_batch(sql).store()?;
        tracing::info!(schema_version = i + 1, "applied SQLite schema migration");
    }
    if current < SCHEMA_VERSION {
        conn.pragma_update(None, "user_version", SCHEMA_VERSION).store()?;
    }
    Ok(())
}
