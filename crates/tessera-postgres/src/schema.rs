//! The schema and its migrations, applied when a process first reaches the
//! database.
//!
//! `schema_version` holds one row per applied migration. Every process
//! migrates in one transaction under a transaction-level advisory lock (per
//! schema), so several nodes starting at once apply each migration exactly
//! once: the first takes the lock and migrates, the others wait for its
//! commit, then find nothing left to do. DDL is transactional in
//! PostgreSQL, so a migration that fails leaves nothing half-applied.

use tessera_core::{StoreError, StoreResult};

/// The schema, one entry per version: entry `i` takes the database from
/// version `i` to `i + 1`. Entries are append-only; a released migration is
/// never edited.
///
/// Notes on version 1:
/// - Timestamps are `bigint` Unix milliseconds, what `Timestamp` holds
///   (the caller's clock, never the database's).
/// - `sessions.expires_at` is a stored generated column, so the index the
///   sweeper and `count_active` use can never disagree with the expiries
///   it derives from.
/// - Event ids come from a sequence, read in commit order under an
///   advisory lock: see `events.rs`.
/// - A family belongs to its session and its tokens to the family: the
///   sweeper deletes a session and the cascade takes the rest in the same
///   statement.
pub(crate) const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE sessions (
    handle              text     NOT NULL PRIMARY KEY,
    token_hash          bytea    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    subject             text     NOT NULL,
    version             bigint   NOT NULL,
    created_at          bigint   NOT NULL,
    last_seen_at        bigint   NOT NULL,
    idle_timeout_ms     bigint   NOT NULL,
    idle_expires_at     bigint   NOT NULL,
    absolute_expires_at bigint   NOT NULL,
    expires_at          bigint   NOT NULL
        GENERATED ALWAYS AS (LEAST(idle_expires_at, absolute_expires_at)) STORED,
    auth_level          smallint NOT NULL,
    auth_methods        text     NOT NULL,
    auth_time           bigint   NOT NULL,
    device_user_agent   text,
    device_ip           text,
    device_label        text     NOT NULL,
    binding             text,
    data                text     NOT NULL,
    revoked_at          bigint,
    revoke_reason       text,
    CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
);
CREATE INDEX sessions_subject ON sessions (subject);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Event ids; never reused (a sequence never goes back), see `events.rs`
-- for how readers still see them in commit order.
CREATE SEQUENCE event_ids AS bigint START WITH 1 MINVALUE 1;

CREATE TABLE events (
    id      bigint NOT NULL PRIMARY KEY,
    at      bigint NOT NULL,
    kind    text   NOT NULL,
    subject text   NOT NULL,
    handle  text   NOT NULL,
    reason  text
);
CREATE INDEX events_subject ON events (subject, id);
CREATE INDEX events_handle ON events (handle, id);
CREATE INDEX events_kind ON events (kind, id);
CREATE INDEX events_revoked_at ON events (at) WHERE kind = 'revoked';

CREATE TABLE api_keys (
    id         text   NOT NULL PRIMARY KEY,
    name       text   NOT NULL,
    hash       bytea  NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at bigint NOT NULL,
    revoked_at bigint,
    scopes     text   NOT NULL
);

CREATE TABLE refresh_families (
    id                 text   NOT NULL PRIMARY KEY,
    handle             text   NOT NULL REFERENCES sessions (handle) ON DELETE CASCADE,
    session_token_hash bytea  NOT NULL CHECK (length(session_token_hash) = 32),
    client_id          text   NOT NULL,
    scope              text   NOT NULL,
    audience           text   NOT NULL,
    generation         bigint NOT NULL CHECK (generation >= 0),
    created_at         bigint NOT NULL,
    rotated_at         bigint NOT NULL,
    current_sealed     bytea,
    binding            text,
    revoked_at         bigint,
    revoke_reason      text,
    CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
);
CREATE INDEX refresh_families_handle ON refresh_families (handle);
CREATE INDEX refresh_families_sealed ON refresh_families (rotated_at) WHERE current_sealed IS NOT NULL;

CREATE TABLE refresh_tokens (
    hash       bytea  NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    family_id  text   NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    generation bigint NOT NULL CHECK (generation >= 0)
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE signing_keys (
    kid            text   NOT NULL PRIMARY KEY,
    alg            text   NOT NULL,
    created_at     bigint NOT NULL,
    activates_at   bigint NOT NULL,
    private_sealed bytea  NOT NULL,
    public_jwk     text   NOT NULL,
    revoked_at     bigint
);
CREATE INDEX signing_keys_activates_at ON signing_keys (activates_at, kid);

CREATE TABLE leases (
    name       text   NOT NULL PRIMARY KEY,
    holder     text   NOT NULL,
    expires_at bigint NOT NULL
);

CREATE TABLE used_markers (
    marker     bytea  NOT NULL PRIMARY KEY,
    expires_at bigint NOT NULL
);
CREATE INDEX used_markers_expires_at ON used_markers (expires_at);

CREATE TABLE rate_counters (
    key        bytea  NOT NULL,
    window_no  bigint NOT NULL,
    hits       bigint NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (key, window_no)
);
CREATE INDEX rate_counters_expires_at ON rate_counters (expires_at);
",
    // Version 2: OAuth clients registered at run time (`tessera clients
    // create`). The registration is the core's JSON text, kept byte for
    // byte, so a new client setting needs no migration.
    r"
CREATE TABLE clients (
    client_id    text   NOT NULL PRIMARY KEY,
    created_at   bigint NOT NULL,
    revoked_at   bigint,
    registration text   NOT NULL
);
CREATE INDEX clients_created_at ON clients (created_at, client_id);
",
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings the schema of `client`'s connection (its `search_path`) to
/// [`SCHEMA_VERSION`], creating `schema` first if given.
pub(crate) async fn migrate(client: &mut deadpool_postgres::Object, schema: Option<&str>) -> StoreResult<()> {
    let tx = client.transaction().await.map_err(crate::error::map)?;
    // Not the "already exists, skipping" notices of every start after the
    // first.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(crate::error::map)?;
    // One lock per schema: nodes of different deployments sharing a
    // database do not wait for each other.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('tessera-migrate:' || $1, 0))",
        &[&schema.unwrap_or("")],
    )
    .await
    .map_err(crate::error::map)?;
    if let Some(s) = schema {
        // `s` is a checked plain identifier (see `options`).
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
            .await
            .map_err(crate::error::map)?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    integer     NOT NULL PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(crate::error::map)?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await
        .map_err(crate::error::map)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "the database schema is at version {current}, newer than this build's {SCHEMA_VERSION}: \
             run the newer tessera, or restore a backup taken before the upgrade"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql).await.map_err(crate::error::map)?;
        tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&version])
            .await
            .map_err(crate::error::map)?;
        tracing::info!(version, "applied PostgreSQL schema migration");
    }
    tx.commit().await.map_err(crate::error::map)
}
