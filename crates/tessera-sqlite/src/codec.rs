//! Rows to records and back.
//!
//! Encoding happens on the caller's task, before a write is queued, so the
//! writer thread (the one serial resource) only binds ready values.

use rusqlite::types::ValueRef;
use rusqlite::{Row, ToSql};
use serde_json::{Map, Value};
use tessera_core::{
    ApiKeyRecord, ApiKeyScope, AuthInfo, Binding, DeviceInfo, Event, EventKind, NewEvent, RefreshFamily,
    Revocation, RevokeReason, SessionRecord, SigningAlg, SigningKeyRecord, StoreError, StoreResult,
    Timestamp, TokenHash,
};

use crate::error::{SqlResultExt, corrupt};

/// The session columns, in the order [`decode_session`] reads them (a macro
/// so queries can be `concat!`ed into `&'static str`s). With a table alias
/// (`session_columns!("s.")`) each column is qualified, for joins.
macro_rules! session_columns {
    () => {
        $crate::codec::session_columns!("")
    };
    ($t:literal) => {
        concat!(
            $t,
            "handle, ",
            $t,
            "token_hash, ",
            $t,
            "subject, ",
            $t,
            "version, ",
            $t,
            "created_at, ",
            $t,
            "last_seen_at, ",
            $t,
            "idle_timeout_ms, ",
            $t,
            "idle_expires_at, ",
            $t,
            "absolute_expires_at, ",
            $t,
            "auth_level, ",
            $t,
            "auth_methods, ",
            $t,
            "auth_time, ",
            $t,
            "device_user_agent, ",
            $t,
            "device_ip, ",
            $t,
            "device_label, ",
            $t,
            "binding, ",
            $t,
            "data, ",
            $t,
            "revoked_at, ",
            $t,
            "revoke_reason"
        )
    };
}
pub(crate) use session_columns;

/// A session as bound to SQL parameters.
#[derive(Debug, Clone)]
pub(crate) struct SessionRow {
    pub handle: String,
    pub token_hash: [u8; 32],
    pub subject: String,
    pub version: i64,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub idle_timeout_ms: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub auth_level: i64,
    pub auth_methods: String,
    pub auth_time: i64,
    pub device_user_agent: Option<String>,
    pub device_ip: Option<String>,
    pub device_label: String,
    pub binding: Option<String>,
    pub data: String,
    pub revoked_at: Option<i64>,
    pub revoke_reason: Option<&'static str>,
}

pub(crate) fn version_to_sql(v: u64) -> StoreResult<i64> {
    i64::try_from(v)
        .map_err(|_| StoreError::Unavailable(format!("session version {v} does not fit the store")))
}

fn json<T: serde::Serialize + ?Sized>(what: &str, v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Unavailable(format!("cannot encode {what}: {e}")))
}

impl SessionRow {
    pub(crate) fn encode(s: &SessionRecord) -> StoreResult<Self> {
        Ok(Self {
            handle: s.handle.clone(),
            token_hash: s.token_hash.0,
            subject: s.subject.clone(),
            version: version_to_sql(s.version)?,
            created_at: s.created_at.unix_millis(),
            last_seen_at: s.last_seen_at.unix_millis(),
            idle_timeout_ms: s.idle_timeout_ms,
            idle_expires_at: s.idle_expires_at.unix_millis(),
            absolute_expires_at: s.absolute_expires_at.unix_millis(),
            auth_level: i64::from(s.auth.level),
            auth_methods: json("auth.methods", &s.auth.methods)?,
            auth_time: s.auth.time.unix_millis(),
            device_user_agent: s.device.user_agent.clone(),
            device_ip: s.device.ip.clone(),
            device_label: s.device.label.clone(),
            binding: s.binding.as_ref().map(|b| json("binding", b)).transpose()?,
            data: json("data", &s.data)?,
            revoked_at: s.revoked.map(|r| r.at.unix_millis()),
            revoke_reason: s.revoked.map(|r| r.reason.as_str()),
        })
    }
}

impl SessionRow {
    /// The values of [`session_columns!`], in order, as `?1`..`?19`.
    pub(crate) fn params(&self) -> [&dyn ToSql; 19] {
        [
            &self.handle,
            &self.token_hash,
            &self.subject,
            &self.version,
            &self.created_at,
            &self.last_seen_at,
            &self.idle_timeout_ms,
            &self.idle_expires_at,
            &self.absolute_expires_at,
            &self.auth_level,
            &self.auth_methods,
            &self.auth_time,
            &self.device_user_agent,
            &self.device_ip,
            &self.device_label,
            &self.binding,
            &self.data,
            &self.revoked_at,
            &self.revoke_reason,
        ]
    }
}

fn ts(row: &Row<'_>, i: usize) -> StoreResult<Timestamp> {
    Ok(Timestamp::from_unix_millis(row.get(i).store()?))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

fn hash(what: &str, b: &[u8]) -> StoreResult<TokenHash> {
    TokenHash::from_slice(b).ok_or_else(|| corrupt(what, format!("expected 32 bytes, found {}", b.len())))
}

fn reason(s: &str) -> StoreResult<RevokeReason> {
    s.parse()
        .map_err(|()| corrupt("revoke reason", format!("unknown value {s:?}")))
}

/// A TEXT column borrowed from the row: the JSON columns are parsed
/// straight from SQLite's buffer instead of a copy of it.
fn text<'r>(row: &'r Row<'_>, i: usize, what: &str) -> StoreResult<&'r str> {
    row.get_ref(i).store()?.as_str().map_err(|e| corrupt(what, e))
}

fn opt_text<'r>(row: &'r Row<'_>, i: usize, what: &str) -> StoreResult<Option<&'r str>> {
    row.get_ref(i)
        .store()?
        .as_str_or_null()
        .map_err(|e| corrupt(what, e))
}

/// Session data is usually empty; that needs no JSON parser.
fn data_map(s: &str) -> StoreResult<Map<String, Value>> {
    if s == "{}" {
        Ok(Map::new())
    } else {
        from_json("data", s)
    }
}

/// Reads the [`session_columns!`] starting at column `at`.
pub(crate) fn decode_session(row: &Row<'_>, at: usize) -> StoreResult<SessionRecord> {
    let version: i64 = row.get(at + 3).store()?;
    let level: i64 = row.get(at + 9).store()?;
    let revoked = revocation(
        row.get(at + 17).store()?,
        opt_text(row, at + 18, "revoke_reason")?,
    )?;
    Ok(SessionRecord {
        handle: row.get(at).store()?,
        token_hash: hash(
            "token_hash",
            row.get_ref(at + 1)
                .store()?
                .as_blob()
                .map_err(|e| corrupt("token_hash", e))?,
        )?,
        subject: row.get(at + 2).store()?,
        version: u64::try_from(version).map_err(|_| corrupt("version", version))?,
        created_at: ts(row, at + 4)?,
        last_seen_at: ts(row, at + 5)?,
        idle_timeout_ms: row.get(at + 6).store()?,
        idle_expires_at: ts(row, at + 7)?,
        absolute_expires_at: ts(row, at + 8)?,
        auth: AuthInfo {
            level: u8::try_from(level).map_err(|_| corrupt("auth.level", level))?,
            methods: from_json("auth.methods", text(row, at + 10, "auth.methods")?)?,
            time: ts(row, at + 11)?,
        },
        device: DeviceInfo {
            user_agent: row.get(at + 12).store()?,
            ip: row.get(at + 13).store()?,
            label: row.get(at + 14).store()?,
        },
        binding: opt_text(row, at + 15, "binding")?
            .map(|b| from_json::<Binding>("binding", b))
            .transpose()?,
        data: data_map(text(row, at + 16, "data")?)?,
        revoked,
    })
}

/// Reads `id, at, kind, subject, handle, reason`.
pub(crate) fn decode_event(row: &Row<'_>) -> StoreResult<Event> {
    let id: i64 = row.get(0).store()?;
    let kind: String = row.get(2).store()?;
    let why: Option<String> = row.get(5).store()?;
    Ok(Event {
        id: u64::try_from(id).map_err(|_| corrupt("event id", id))?,
        event: NewEvent {
            at: ts(row, 1)?,
            kind: kind
                .parse::<EventKind>()
                .map_err(|()| corrupt("event kind", format!("unknown value {kind:?}")))?,
            subject: row.get(3).store()?,
            handle: row.get(4).store()?,
            reason: why.as_deref().map(reason).transpose()?,
        },
    })
}

/// Reads `id, name, hash, created_at, revoked_at, scopes`.
pub(crate) fn decode_api_key(row: &Row<'_>) -> StoreResult<ApiKeyRecord> {
    let revoked_at: Option<i64> = row.get(4).store()?;
    let scopes: String = row.get(5).store()?;
    Ok(ApiKeyRecord {
        id: row.get(0).store()?,
        name: row.get(1).store()?,
        hash: hash(
            "api key hash",
            row.get_ref(2)
                .store()?
                .as_blob()
                .map_err(|e| corrupt("api key hash", e))?,
        )?,
        created_at: ts(row, 3)?,
        revoked_at: revoked_at.map(Timestamp::from_unix_millis),
        // A name this build does not know (written by a newer one) grants
        // nothing here, rather than making the key unusable or wider.
        scopes: ApiKeyScope::normalize(
            scopes
                .split_ascii_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect(),
        ),
    })
}

/// The refresh-family columns, in the order [`decode_family`] reads them.
/// With a table alias (`family_columns!("f.")`) each column is qualified.
macro_rules! family_columns {
    () => {
        $crate::codec::family_columns!("")
    };
    ($t:literal) => {
        concat!(
            $t,
            "id, ",
            $t,
            "handle, ",
            $t,
            "session_token_hash, ",
            $t,
            "client_id, ",
            $t,
            "scope, ",
            $t,
            "audience, ",
            $t,
            "generation, ",
            $t,
            "created_at, ",
            $t,
            "rotated_at, ",
            $t,
            "current_sealed, ",
            $t,
            "binding, ",
            $t,
            "revoked_at, ",
            $t,
            "revoke_reason"
        )
    };
}
pub(crate) use family_columns;

/// How many [`family_columns!`] there are.
const FAMILY_COLUMNS: usize = 13;

/// A refresh family as bound to SQL parameters.
#[derive(Debug, Clone)]
pub(crate) struct FamilyRow {
    pub id: String,
    pub handle: String,
    pub session_token_hash: [u8; 32],
    pub client_id: String,
    pub scope: String,
    pub audience: String,
    pub generation: i64,
    pub created_at: i64,
    pub rotated_at: i64,
    pub current_sealed: Option<Vec<u8>>,
    pub binding: Option<String>,
    pub revoked_at: Option<i64>,
    pub revoke_reason: Option<&'static str>,
}

/// A generation as SQLite stores it (a signed 64-bit integer).
pub(crate) fn generation_to_sql(g: u64) -> StoreResult<i64> {
    i64::try_from(g)
        .map_err(|_| StoreError::Unavailable(format!("refresh generation {g} does not fit the store")))
}

impl FamilyRow {
    pub(crate) fn encode(f: &RefreshFamily) -> StoreResult<Self> {
        Ok(Self {
            id: f.id.clone(),
            handle: f.handle.clone(),
            session_token_hash: f.session_token_hash.0,
            client_id: f.client_id.clone(),
            scope: json("scope", &f.scope)?,
            audience: json("audience", &f.audience)?,
            generation: generation_to_sql(f.generation)?,
            created_at: f.created_at.unix_millis(),
            rotated_at: f.rotated_at.unix_millis(),
            current_sealed: f.current_sealed.clone(),
            binding: f.binding.as_ref().map(|b| json("binding", b)).transpose()?,
            revoked_at: f.revoked.map(|r| r.at.unix_millis()),
            revoke_reason: f.revoked.map(|r| r.reason.as_str()),
        })
    }

    /// The values of [`family_columns!`], in order, as `?1`..`?13`.
    pub(crate) fn params(&self) -> [&dyn ToSql; FAMILY_COLUMNS] {
        [
            &self.id,
            &self.handle,
            &self.session_token_hash,
            &self.client_id,
            &self.scope,
            &self.audience,
            &self.generation,
            &self.created_at,
            &self.rotated_at,
            &self.current_sealed,
            &self.binding,
            &self.revoked_at,
            &self.revoke_reason,
        ]
    }
}

fn revocation(at: Option<i64>, why: Option<&str>) -> StoreResult<Option<Revocation>> {
    match (at, why) {
        (None, None) => Ok(None),
        (Some(at), Some(r)) => Ok(Some(Revocation {
            at: Timestamp::from_unix_millis(at),
            reason: reason(r)?,
        })),
        _ => Err(corrupt("revocation", "revoked_at and revoke_reason disagree")),
    }
}

fn blob_hash(row: &Row<'_>, i: usize, what: &str) -> StoreResult<TokenHash> {
    hash(
        what,
        row.get_ref(i).store()?.as_blob().map_err(|e| corrupt(what, e))?,
    )
}

fn generation(row: &Row<'_>, i: usize) -> StoreResult<u64> {
    let g: i64 = row.get(i).store()?;
    u64::try_from(g).map_err(|_| corrupt("generation", g))
}

/// Reads the [`family_columns!`] starting at column `at`.
pub(crate) fn decode_family(row: &Row<'_>, at: usize) -> StoreResult<RefreshFamily> {
    Ok(RefreshFamily {
        id: row.get(at).store()?,
        handle: row.get(at + 1).store()?,
        session_token_hash: blob_hash(row, at + 2, "session_token_hash")?,
        client_id: row.get(at + 3).store()?,
        scope: from_json("scope", text(row, at + 4, "scope")?)?,
        audience: from_json("audience", text(row, at + 5, "audience")?)?,
        generation: generation(row, at + 6)?,
        created_at: ts(row, at + 7)?,
        rotated_at: ts(row, at + 8)?,
        current_sealed: row.get(at + 9).store()?,
        binding: opt_text(row, at + 10, "binding")?
            .map(|b| from_json::<Binding>("binding", b))
            .transpose()?,
        revoked: revocation(
            row.get(at + 11).store()?,
            opt_text(row, at + 12, "revoke_reason")?,
        )?,
    })
}

/// Reads a generation at column 0 followed by the [`family_columns!`].
pub(crate) fn decode_lookup(row: &Row<'_>) -> StoreResult<(u64, RefreshFamily)> {
    Ok((generation(row, 0)?, decode_family(row, 1)?))
}

/// Column of the first [`session_columns!`] after a lookup's generation and
/// [`family_columns!`].
const LOOKUP_SESSION_AT: usize = 1 + FAMILY_COLUMNS;

/// Reads what [`decode_lookup`] reads, followed by the [`session_columns!`]
/// of an outer join: `None` if they are NULL (no such session).
pub(crate) fn decode_lookup_with_session(row: &Row<'_>) -> StoreResult<LookupWithSession> {
    let (generation, family) = decode_lookup(row)?;
    // `handle` is NOT NULL in `sessions`: NULL means the join found no row.
    let session = match row.get_ref(LOOKUP_SESSION_AT).store()? {
        ValueRef::Null => None,
        _ => Some(decode_session(row, LOOKUP_SESSION_AT)?),
    };
    Ok((generation, family, session))
}

/// A token's generation, its family, and the family's session if it exists.
pub(crate) type LookupWithSession = (u64, RefreshFamily, Option<SessionRecord>);

/// Reads `kid, alg, created_at, activates_at, private_sealed, public_jwk`.
pub(crate) fn decode_signing_key(row: &Row<'_>) -> StoreResult<SigningKeyRecord> {
    let alg: String = row.get(1).store()?;
    Ok(SigningKeyRecord {
        kid: row.get(0).store()?,
        alg: alg
            .parse::<SigningAlg>()
            .map_err(|()| corrupt("signing key alg", format!("unknown value {alg:?}")))?,
        created_at: ts(row, 2)?,
        activates_at: ts(row, 3)?,
        private_sealed: row.get(4).store()?,
        public_jwk: row.get(5).store()?,
        revoked_at: row
            .get::<_, Option<i64>>(6)
            .store()?
            .map(Timestamp::from_unix_millis),
    })
}

#[cfg(test)]
mod tests;
