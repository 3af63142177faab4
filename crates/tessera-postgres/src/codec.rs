//! Rows to records and back. Timestamps are `bigint` Unix milliseconds,
//! what `Timestamp` holds; list and map fields are JSON text, byte for byte
//! what the SQLite store keeps.

use serde_json::{Map, Value};
use tessera_core::{
    ApiKeyRecord, ApiKeyScope, AuthInfo, Binding, DeviceInfo, Event, EventKind, NewEvent, RefreshFamily,
    Revocation, RevokeReason, SessionRecord, SigningAlg, SigningKeyRecord, StoreError, StoreResult,
    Timestamp, TokenHash,
};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

/// The session columns, in the order [`decode_session`] reads them. With a
/// table alias (`session_columns!("s.")`) each column is qualified.
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

/// A session as bound to SQL parameters (`$1`..`$19` in [`session_columns!`] order).
#[derive(Debug, Clone)]
pub(crate) struct SessionRow {
    pub handle: String,
    pub token_hash: Vec<u8>,
    pub subject: String,
    pub version: i64,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub idle_timeout_ms: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub auth_level: i16,
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

pub(crate) fn to_i64(what: &str, v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Unavailable(format!("{what} {v} does not fit the store")))
}

fn json<T: serde::Serialize + ?Sized>(what: &str, v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Unavailable(format!("cannot encode {what}: {e}")))
}

impl SessionRow {
    pub(crate) fn encode(s: &SessionRecord) -> StoreResult<Self> {
        Ok(Self {
            handle: s.handle.clone(),
            token_hash: s.token_hash.0.to_vec(),
            subject: s.subject.clone(),
            version: to_i64("session version", s.version)?,
            created_at: s.created_at.unix_millis(),
            last_seen_at: s.last_seen_at.unix_millis(),
            idle_timeout_ms: s.idle_timeout_ms,
            idle_expires_at: s.idle_expires_at.unix_millis(),
            absolute_expires_at: s.absolute_expires_at.unix_millis(),
            auth_level: i16::from(s.auth.level),
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

    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 19] {
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

/// Column `i` of `row`, a decoding failure being [`StoreError::Corrupt`].
pub(crate) fn col<'r, T: FromSql<'r>>(row: &'r Row, i: usize, what: &str) -> StoreResult<T> {
    row.try_get(i).map_err(|e| corrupt(what, e))
}

fn ts(row: &Row, i: usize, what: &str) -> StoreResult<Timestamp> {
    Ok(Timestamp::from_unix_millis(col(row, i, what)?))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

pub(crate) fn hash(what: &str, b: &[u8]) -> StoreResult<TokenHash> {
    TokenHash::from_slice(b).ok_or_else(|| corrupt(what, format!("expected 32 bytes, found {}", b.len())))
}

fn reason(s: &str) -> StoreResult<RevokeReason> {
    s.parse()
        .map_err(|()| corrupt("revoke reason", format!("unknown value {s:?}")))
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

/// Session data is usually empty; that needs no JSON parser.
fn data_map(s: &str) -> StoreResult<Map<String, Value>> {
    if s == "{}" {
        Ok(Map::new())
    } else {
        from_json("data", s)
    }
}

fn unsigned(what: &str, v: i64) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| corrupt(what, v))
}

/// Reads the [`session_columns!`] starting at column `at`.
pub(crate) fn decode_session(row: &Row, at: usize) -> StoreResult<SessionRecord> {
    let level: i16 = col(row, at + 9, "auth_level")?;
    let binding: Option<&str> = col(row, at + 15, "binding")?;
    Ok(SessionRecord {
        handle: col(row, at, "handle")?,
        token_hash: hash("token_hash", col(row, at + 1, "token_hash")?)?,
        subject: col(row, at + 2, "subject")?,
        version: unsigned("version", col(row, at + 3, "version")?)?,
        created_at: ts(row, at + 4, "created_at")?,
        last_seen_at: ts(row, at + 5, "last_seen_at")?,
        idle_timeout_ms: col(row, at + 6, "idle_timeout_ms")?,
        idle_expires_at: ts(row, at + 7, "idle_expires_at")?,
        absolute_expires_at: ts(row, at + 8, "absolute_expires_at")?,
        auth: AuthInfo {
            level: u8::try_from(level).map_err(|_| corrupt("auth.level", level))?,
            methods: from_json("auth.methods", col(row, at + 10, "auth_methods")?)?,
            time: ts(row, at + 11, "auth_time")?,
        },
        device: DeviceInfo {
            user_agent: col(row, at + 12, "device_user_agent")?,
            ip: col(row, at + 13, "device_ip")?,
            label: col(row, at + 14, "device_label")?,
        },
        binding: binding.map(|b| from_json::<Binding>("binding", b)).transpose()?,
        data: data_map(col(row, at + 16, "data")?)?,
        revoked: revocation(
            col(row, at + 17, "revoked_at")?,
            col(row, at + 18, "revoke_reason")?,
        )?,
    })
}

/// Reads `id, at, kind, subject, handle, reason`.
pub(crate) fn decode_event(row: &Row) -> StoreResult<Event> {
    let kind: &str = col(row, 2, "event kind")?;
    let why: Option<&str> = col(row, 5, "event reason")?;
    Ok(Event {
        id: unsigned("event id", col(row, 0, "event id")?)?,
        event: NewEvent {
            at: ts(row, 1, "event at")?,
            kind: kind
                .parse::<EventKind>()
                .map_err(|()| corrupt("event kind", format!("unknown value {kind:?}")))?,
            subject: col(row, 3, "event subject")?,
            handle: col(row, 4, "event handle")?,
            reason: why.map(reason).transpose()?,
        },
    })
}

pub(crate) const API_KEY_COLUMNS: &str = "id, name, hash, created_at, revoked_at, scopes";

/// Reads [`API_KEY_COLUMNS`].
pub(crate) fn decode_api_key(row: &Row) -> StoreResult<ApiKeyRecord> {
    let revoked_at: Option<i64> = col(row, 4, "api key revoked_at")?;
    let scopes: &str = col(row, 5, "api key scopes")?;
    Ok(ApiKeyRecord {
        id: col(row, 0, "api key id")?,
        name: col(row, 1, "api key name")?,
        hash: hash("api key hash", col(row, 2, "api key hash")?)?,
        created_at: ts(row, 3, "api key created_at")?,
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
pub(crate) const FAMILY_COLUMNS: usize = 13;

/// A refresh family as bound to SQL parameters (`$1`..`$13`).
#[derive(Debug, Clone)]
pub(crate) struct FamilyRow {
    pub id: String,
    pub handle: String,
    pub session_token_hash: Vec<u8>,
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

impl FamilyRow {
    pub(crate) fn encode(f: &RefreshFamily) -> StoreResult<Self> {
        Ok(Self {
            id: f.id.clone(),
            handle: f.handle.clone(),
            session_token_hash: f.session_token_hash.0.to_vec(),
            client_id: f.client_id.clone(),
            scope: json("scope", &f.scope)?,
            audience: json("audience", &f.audience)?,
            generation: to_i64("refresh generation", f.generation)?,
            created_at: f.created_at.unix_millis(),
            rotated_at: f.rotated_at.unix_millis(),
            current_sealed: f.current_sealed.clone(),
            binding: f.binding.as_ref().map(|b| json("binding", b)).transpose()?,
            revoked_at: f.revoked.map(|r| r.at.unix_millis()),
            revoke_reason: f.revoked.map(|r| r.reason.as_str()),
        })
    }

    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); FAMILY_COLUMNS] {
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

/// Reads the [`family_columns!`] starting at column `at`.
pub(crate) fn decode_family(row: &Row, at: usize) -> StoreResult<RefreshFamily> {
    let binding: Option<&str> = col(row, at + 10, "family binding")?;
    Ok(RefreshFamily {
        id: col(row, at, "family id")?,
        handle: col(row, at + 1, "family handle")?,
        session_token_hash: hash("session_token_hash", col(row, at + 2, "session_token_hash")?)?,
        client_id: col(row, at + 3, "client_id")?,
        scope: from_json("scope", col(row, at + 4, "scope")?)?,
        audience: from_json("audience", col(row, at + 5, "audience")?)?,
        generation: unsigned("generation", col(row, at + 6, "generation")?)?,
        created_at: ts(row, at + 7, "family created_at")?,
        rotated_at: ts(row, at + 8, "rotated_at")?,
        current_sealed: col(row, at + 9, "current_sealed")?,
        binding: binding.map(|b| from_json::<Binding>("binding", b)).transpose()?,
        revoked: revocation(
            col(row, at + 11, "family revoked_at")?,
            col(row, at + 12, "family revoke_reason")?,
        )?,
    })
}

pub(crate) const SIGNING_KEY_COLUMNS: &str =
    "kid, alg, created_at, activates_at, private_sealed, public_jwk, revoked_at";

/// Reads [`SIGNING_KEY_COLUMNS`].
pub(crate) fn decode_signing_key(row: &Row) -> StoreResult<SigningKeyRecord> {
    let alg: &str = col(row, 1, "signing key alg")?;
    let revoked_at: Option<i64> = col(row, 6, "signing key revoked_at")?;
    Ok(SigningKeyRecord {
        kid: col(row, 0, "kid")?,
        alg: alg
            .parse::<SigningAlg>()
            .map_err(|()| corrupt("signing key alg", format!("unknown value {alg:?}")))?,
        created_at: ts(row, 2, "signing key created_at")?,
        activates_at: ts(row, 3, "activates_at")?,
        private_sealed: col(row, 4, "private_sealed")?,
        public_jwk: col(row, 5, "public_jwk")?,
        revoked_at: revoked_at.map(Timestamp::from_unix_millis),
    })
}
