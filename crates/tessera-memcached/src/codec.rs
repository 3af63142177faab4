//! Records to memcached values and back.
//!
//! Every value is a [postcard](https://postcard.jamesmunns.com/wire-format)
//! encoding of one of the `Wire*` structs below behind a format byte:
//! varints, strings as a length and bytes, `Option` as a 0/1 tag. Nothing
//! here panics on what memcached holds: a value that does not decode is
//! [`StoreError::Corrupt`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tessera_core::{
    ApiKeyRecord, ApiKeyScope, AuthInfo, ClientRecord, DeviceInfo, Event, EventKind, NewEvent, RefreshFamily,
    Revocation, RevokeReason, SessionRecord, SigningAlg, SigningKeyRecord, StoreError, StoreResult,
    Timestamp, TokenHash,
};

/// The first byte of every value this store writes; a value that starts
/// with anything else is not ours (or from a newer format).
const FORMAT: u8 = 1;

/// The device label of a session without a user agent; stored as nothing.
const UNKNOWN_DEVICE: &str = "Unknown device";

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

pub(crate) fn encode<T: Serialize>(what: &str, v: &T) -> StoreResult<Vec<u8>> {
    let mut out = vec![FORMAT];
    let body =
        postcard::to_stdvec(v).map_err(|e| StoreError::Unavailable(format!("cannot encode {what}: {e}")))?;
    out.extend_from_slice(&body);
    Ok(out)
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> StoreResult<T> {
    let Some((&FORMAT, body)) = b.split_first() else {
        return Err(corrupt(what, "unknown format"));
    };
    let (v, rest) = postcard::take_from_bytes(body).map_err(|e| corrupt(what, e))?;
    if !rest.is_empty() {
        return Err(corrupt(what, format!("{} bytes after the record", rest.len())));
    }
    Ok(v)
}

fn json<T: Serialize + ?Sized>(what: &str, v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Unavailable(format!("cannot encode {what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

fn ms(t: Timestamp) -> i64 {
    t.unix_millis()
}

fn ts(v: i64) -> Timestamp {
    Timestamp::from_unix_millis(v)
}

// ------------------------------------------------------------ codes

pub(crate) fn reason_code(r: RevokeReason) -> u8 {
    match r {
        RevokeReason::Logout => 1,
        RevokeReason::Revoked => 2,
        RevokeReason::Replaced => 3,
        RevokeReason::SessionLimit => 4,
        RevokeReason::RevokeAll => 5,
        RevokeReason::RefreshTokenReuse => 6,
        RevokeReason::Operator => 7,
    }
}

fn reason_from(code: u8) -> StoreResult<RevokeReason> {
    RevokeReason::ALL
        .into_iter()
        .find(|r| reason_code(*r) == code)
        .ok_or_else(|| corrupt("revoke reason", format!("unknown code {code}")))
}

fn kind_code(k: EventKind) -> u8 {
    match k {
        EventKind::Created => 1,
        EventKind::Refreshed => 2,
        EventKind::Elevated => 3,
        EventKind::Revoked => 4,
        EventKind::Expired => 5,
        EventKind::RefreshTokenReuse => 6,
        EventKind::BindingFailed => 7,
    }
}

fn kind_from(code: u8) -> StoreResult<EventKind> {
    EventKind::ALL
        .into_iter()
        .find(|k| kind_code(*k) == code)
        .ok_or_else(|| corrupt("event kind", format!("unknown code {code}")))
}

fn revocation(r: Option<Revocation>) -> Option<(u8, i64)> {
    r.map(|r| (reason_code(r.reason), ms(r.at)))
}

fn revocation_from(r: Option<(u8, i64)>) -> StoreResult<Option<Revocation>> {
    r.map(|(code, at)| {
        Ok(Revocation {
            at: ts(at),
            reason: reason_from(code)?,
        })
    })
    .transpose()
}

// ------------------------------------------------------------ sessions

#[derive(Serialize, Deserialize)]
struct WireSession {
    version: u64,
    created_at: i64,
    last_seen_at: i64,
    idle_timeout_ms: i64,
    idle_expires_at: i64,
    absolute_expires_at: i64,
    revoked: Option<(u8, i64)>,
    token_hash: [u8; 32],
    subject: String,
    auth_level: u8,
    auth_methods: Vec<String>,
    auth_time: i64,
    user_agent: Option<String>,
    ip: Option<String>,
    /// `None`: "Unknown device", the label of every session without a
    /// user agent.
    label: Option<String>,
    /// The data object as JSON; empty for `{}`.
    data: String,
    /// The binding as JSON.
    binding: Option<String>,
}

pub(crate) fn encode_session(s: &SessionRecord) -> StoreResult<Vec<u8>> {
    encode(
        "session",
        &WireSession {
            version: s.version,
            created_at: ms(s.created_at),
            last_seen_at: ms(s.last_seen_at),
            idle_timeout_ms: s.idle_timeout_ms,
            idle_expires_at: ms(s.idle_expires_at),
            absolute_expires_at: ms(s.absolute_expires_at),
            revoked: revocation(s.revoked),
            token_hash: s.token_hash.0,
            subject: s.subject.clone(),
            auth_level: s.auth.level,
            auth_methods: s.auth.methods.clone(),
            auth_time: ms(s.auth.time),
            user_agent: s.device.user_agent.clone(),
            ip: s.device.ip.clone(),
            label: (s.device.label != UNKNOWN_DEVICE).then(|| s.device.label.clone()),
            data: if s.data.is_empty() {
                String::new()
            } else {
                json("data", &s.data)?
            },
            binding: s.binding.as_ref().map(|b| json("binding", b)).transpose()?,
        },
    )
}

pub(crate) fn decode_session(handle: &str, b: &[u8]) -> StoreResult<SessionRecord> {
    let w: WireSession = decode("session", b)?;
    Ok(SessionRecord {
        handle: handle.to_owned(),
        token_hash: TokenHash(w.token_hash),
        subject: w.subject,
        version: w.version,
        created_at: ts(w.created_at),
        last_seen_at: ts(w.last_seen_at),
        idle_timeout_ms: w.idle_timeout_ms,
        idle_expires_at: ts(w.idle_expires_at),
        absolute_expires_at: ts(w.absolute_expires_at),
        auth: AuthInfo {
            level: w.auth_level,
            methods: w.auth_methods,
            time: ts(w.auth_time),
        },
        device: DeviceInfo {
            user_agent: w.user_agent,
            ip: w.ip,
            label: w.label.unwrap_or_else(|| UNKNOWN_DEVICE.to_owned()),
        },
        data: if w.data.is_empty() {
            Map::new()
        } else {
            from_json::<Map<String, Value>>("data", &w.data)?
        },
        binding: w.binding.map(|b| from_json("binding", &b)).transpose()?,
        revoked: revocation_from(w.revoked)?,
    })
}

// ------------------------------------------------------------ events

#[derive(Serialize, Deserialize)]
struct WireEvent {
    at: i64,
    kind: u8,
    reason: u8,
    subject: String,
    handle: String,
}

pub(crate) fn encode_event(e: &NewEvent) -> StoreResult<Vec<u8>> {
    encode(
        "event",
        &WireEvent {
            at: ms(e.at),
            kind: kind_code(e.kind),
            reason: e.reason.map_or(0, reason_code),
            subject: e.subject.clone(),
            handle: e.handle.clone(),
        },
    )
}

pub(crate) fn decode_event(id: u64, b: &[u8]) -> StoreResult<Event> {
    let w: WireEvent = decode("event", b)?;
    Ok(Event {
        id,
        event: NewEvent {
            at: ts(w.at),
            kind: kind_from(w.kind)?,
            subject: w.subject,
            handle: w.handle,
            reason: match w.reason {
                0 => None,
                r => Some(reason_from(r)?),
            },
        },
    })
}

/// The `at` of an encoded event, for retention, without the rest.
pub(crate) fn event_at(b: &[u8]) -> StoreResult<Timestamp> {
    let w: WireEvent = decode("event", b)?;
    Ok(ts(w.at))
}

// ------------------------------------------------------------ families

#[derive(Serialize, Deserialize)]
struct WireFamily {
    handle: String,
    session_token_hash: [u8; 32],
    client_id: String,
    scope: Vec<String>,
    audience: Vec<String>,
    generation: u64,
    created_at: i64,
    rotated_at: i64,
    current_sealed: Option<Vec<u8>>,
    binding: Option<String>,
    revoked: Option<(u8, i64)>,
}

pub(crate) fn encode_family(f: &RefreshFamily) -> StoreResult<Vec<u8>> {
    encode(
        "refresh family",
        &WireFamily {
            handle: f.handle.clone(),
            session_token_hash: f.session_token_hash.0,
            client_id: f.client_id.clone(),
            scope: f.scope.clone(),
            audience: f.audience.clone(),
            generation: f.generation,
            created_at: ms(f.created_at),
            rotated_at: ms(f.rotated_at),
            current_sealed: f.current_sealed.clone(),
            binding: f.binding.as_ref().map(|b| json("binding", b)).transpose()?,
            revoked: revocation(f.revoked),
        },
    )
}

pub(crate) fn decode_family(id: &str, b: &[u8]) -> StoreResult<RefreshFamily> {
    let w: WireFamily = decode("refresh family", b)?;
    Ok(RefreshFamily {
        id: id.to_owned(),
        handle: w.handle,
        session_token_hash: TokenHash(w.session_token_hash),
        client_id: w.client_id,
        scope: w.scope,
        audience: w.audience,
        generation: w.generation,
        created_at: ts(w.created_at),
        rotated_at: ts(w.rotated_at),
        current_sealed: w.current_sealed,
        binding: w.binding.map(|b| from_json("binding", &b)).transpose()?,
        revoked: revocation_from(w.revoked)?,
    })
}

// ------------------------------------------------------------ signing keys

#[derive(Serialize, Deserialize)]
struct WireSigningKey {
    kid: String,
    alg: u8,
    created_at: i64,
    activates_at: i64,
    private_sealed: Vec<u8>,
    public_jwk: String,
    revoked_at: Option<i64>,
}

fn alg_code(a: SigningAlg) -> u8 {
    match a {
        SigningAlg::EdDSA => 1,
        SigningAlg::ES256 => 2,
        SigningAlg::RS256 => 3,
    }
}

pub(crate) fn encode_signing_keys(keys: &[SigningKeyRecord]) -> StoreResult<Vec<u8>> {
    let wire: Vec<WireSigningKey> = keys
        .iter()
        .map(|k| WireSigningKey {
            kid: k.kid.clone(),
            alg: alg_code(k.alg),
            created_at: ms(k.created_at),
            activates_at: ms(k.activates_at),
            private_sealed: k.private_sealed.clone(),
            public_jwk: k.public_jwk.clone(),
            revoked_at: k.revoked_at.map(ms),
        })
        .collect();
    encode("signing keys", &wire)
}

pub(crate) fn decode_signing_keys(b: &[u8]) -> StoreResult<Vec<SigningKeyRecord>> {
    let wire: Vec<WireSigningKey> = decode("signing keys", b)?;
    wire.into_iter()
        .map(|w| {
            let alg = [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256]
                .into_iter()
                .find(|a| alg_code(*a) == w.alg)
                .ok_or_else(|| corrupt("signing key", format!("unknown algorithm {}", w.alg)))?;
            Ok(SigningKeyRecord {
                kid: w.kid,
                alg,
                created_at: ts(w.created_at),
                activates_at: ts(w.activates_at),
                private_sealed: w.private_sealed,
                public_jwk: w.public_jwk,
                revoked_at: w.revoked_at.map(ts),
            })
        })
        .collect()
}

// ------------------------------------------------------------ API keys

#[derive(Serialize, Deserialize)]
struct WireApiKey {
    id: String,
    name: String,
    hash: [u8; 32],
    created_at: i64,
    revoked_at: Option<i64>,
    /// Scope names, space-separated (as every store keeps them).
    scopes: String,
}

pub(crate) fn encode_api_keys(keys: &[ApiKeyRecord]) -> StoreResult<Vec<u8>> {
    let wire: Vec<WireApiKey> = keys
        .iter()
        .map(|k| WireApiKey {
            id: k.id.clone(),
            name: k.name.clone(),
            hash: k.hash.0,
            created_at: ms(k.created_at),
            revoked_at: k.revoked_at.map(ms),
            scopes: ApiKeyScope::join(&k.scopes),
        })
        .collect();
    encode("API keys", &wire)
}

pub(crate) fn decode_api_keys(b: &[u8]) -> StoreResult<Vec<ApiKeyRecord>> {
    let wire: Vec<WireApiKey> = decode("API keys", b)?;
    Ok(wire
        .into_iter()
        .map(|w| ApiKeyRecord {
            id: w.id,
            name: w.name,
            hash: TokenHash(w.hash),
            created_at: ts(w.created_at),
            revoked_at: w.revoked_at.map(ts),
            // A name this build does not know grants nothing here, rather
            // than making the key unusable or wider.
            scopes: ApiKeyScope::normalize(
                w.scopes
                    .split_ascii_whitespace()
                    .filter_map(|s| s.parse().ok())
                    .collect(),
            ),
        })
        .collect())
}

// ------------------------------------------------------------ clients

#[derive(Serialize, Deserialize)]
struct WireClient {
    client_id: String,
    created_at: i64,
    revoked_at: Option<i64>,
    /// Kept byte for byte: the store never reads it.
    registration: String,
}

pub(crate) fn encode_clients(clients: &[ClientRecord]) -> StoreResult<Vec<u8>> {
    let wire: Vec<WireClient> = clients
        .iter()
        .map(|c| WireClient {
            client_id: c.client_id.clone(),
            created_at: ms(c.created_at),
            revoked_at: c.revoked_at.map(ms),
            registration: c.registration.clone(),
        })
        .collect();
    encode("clients", &wire)
}

pub(crate) fn decode_clients(b: &[u8]) -> StoreResult<Vec<ClientRecord>> {
    let wire: Vec<WireClient> = decode("clients", b)?;
    Ok(wire
        .into_iter()
        .map(|w| ClientRecord {
            client_id: w.client_id,
            created_at: ts(w.created_at),
            revoked_at: w.revoked_at.map(ts),
            registration: w.registration,
        })
        .collect())
}

// ------------------------------------------------------------ small records

/// A token-hash pointer: a session token to its handle, or a refresh token
/// to its family and generation.
#[derive(Serialize, Deserialize)]
pub(crate) struct Pointer {
    pub(crate) target: String,
    pub(crate) generation: u64,
}

/// An index record: a list of names (handles, family ids). Entries marked
/// `evicted` were chosen by a `create` for its session limit (see
/// `sessions.rs`).
#[derive(Serialize, Deserialize, Default, Clone)]
pub(crate) struct Index {
    pub(crate) entries: Vec<String>,
    pub(crate) evicted: Vec<String>,
}

/// A lease: who holds it until when (the caller's clock).
#[derive(Serialize, Deserialize)]
pub(crate) struct WireLease {
    pub(crate) holder: String,
    pub(crate) expires_at: i64,
}

/// A replay marker or a rate-limit window's expiry (the caller's clock).
#[derive(Serialize, Deserialize)]
pub(crate) struct Expiry {
    pub(crate) expires_at: i64,
}
