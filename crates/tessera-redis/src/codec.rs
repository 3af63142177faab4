//! Records to Redis values and back.
//!
//! Values are [postcard](https://postcard.jamesmunns.com/wire-format)
//! encodings of the `Wire*` structs below: varints (LEB128, zigzag for
//! signed values), strings as a varint length and bytes, `Option` as a 0/1
//! tag. A session record starts with the fields the Lua scripts read and
//! rewrite (`src/lua/prelude.lua` mirrors that prefix, up to and including
//! `subject`); the rest is a tail the scripts copy byte for byte.
//!
//! Everything here fails with a [`StoreError`], never a panic: a value
//! that does not decode is [`StoreError::Corrupt`], a record whose numbers
//! do not fit the format is [`StoreError::Unavailable`].

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tessera_core::secret::{ID_CHARS, SESSION_HANDLE_PREFIX, is_id};
use tessera_core::{
    ApiKeyRecord, ApiKeyScope, AuthInfo, DeviceInfo, Event, EventKind, NewEvent, RefreshFamily, Revocation,
    RevokeReason, SessionRecord, SigningAlg, SigningKeyRecord, StoreError, StoreResult, Timestamp, TokenHash,
};

/// The format byte every session record starts with.
const SESSION_FORMAT: u8 = 1;

/// The device label of a session without a user agent; stored as nothing.
const UNKNOWN_DEVICE: &str = "Unknown device";

/// Largest magnitude of a stored number: the Lua scripts compute in
/// doubles (exact to 2^53), with sums of two such values.
const MAX_ABS: i64 = 1 << 50;

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn too_big(what: &str, v: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what} {v} does not fit the Redis store"))
}

fn fit(what: &str, v: i64) -> StoreResult<i64> {
    if (-MAX_ABS..=MAX_ABS).contains(&v) {
        Ok(v)
    } else {
        Err(too_big(what, v))
    }
}

fn ms(what: &str, t: Timestamp) -> StoreResult<i64> {
    fit(what, t.unix_millis())
}

fn delta(what: &str, a: Timestamp, b: Timestamp) -> StoreResult<i64> {
    fit(what, ms(what, a)? - ms(what, b)?)
}

fn encode<T: Serialize>(what: &str, v: &T) -> StoreResult<Vec<u8>> {
    postcard::to_stdvec(v).map_err(|e| StoreError::Unavailable(format!("cannot encode {what}: {e}")))
}

fn decode<'a, T: Deserialize<'a>>(what: &str, b: &'a [u8]) -> StoreResult<T> {
    let (v, rest) = postcard::take_from_bytes(b).map_err(|e| corrupt(what, e))?;
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

// ------------------------------------------------------------ handles

/// The characters of an id, in ASCII order: a handle packs each as its
/// rank here, so packed handles sort as the handles do.
const ID_ALPHABET: &[u8; 64] = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

/// Tag of a packed `ses_` id: 22 characters of 6 bits, in 17 bytes.
const TAG_PACKED: u8 = 1;
/// Tag of any other handle, kept as its bytes.
const TAG_RAW: u8 = 0;
const PACKED_LEN: usize = 1 + 17;

fn rank(c: u8) -> Option<u8> {
    ID_ALPHABET
        .iter()
        .position(|&a| a == c)
        .and_then(|p| u8::try_from(p).ok())
}

/// A session handle as it appears in keys, index entries and events: a
/// handle made by `new_id` packs into 18 bytes instead of 26; any other
/// string is kept as is behind a tag byte.
pub(crate) fn pack_handle(handle: &str) -> Vec<u8> {
    if is_id(SESSION_HANDLE_PREFIX, handle) {
        let body = &handle.as_bytes()[SESSION_HANDLE_PREFIX.len()..];
        let mut out = Vec::with_capacity(PACKED_LEN);
        out.push(TAG_PACKED);
        let (mut acc, mut bits) = (0u32, 0u32);
        for &c in body {
            // `is_id` checked the alphabet.
            acc = (acc << 6) | u32::from(rank(c).unwrap_or(0));
            bits += 6;
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        if bits > 0 {
            out.push((acc << (8 - bits)) as u8);
        }
        out
    } else {
        let mut out = Vec::with_capacity(1 + handle.len());
        out.push(TAG_RAW);
        out.extend_from_slice(handle.as_bytes());
        out
    }
}

pub(crate) fn unpack_handle(b: &[u8]) -> StoreResult<String> {
    match b.split_first() {
        Some((&TAG_PACKED, body)) if body.len() == PACKED_LEN - 1 => {
            let mut out = String::with_capacity(SESSION_HANDLE_PREFIX.len() + ID_CHARS);
            out.push_str(SESSION_HANDLE_PREFIX);
            let (mut acc, mut bits) = (0u32, 0u32);
            for &byte in body {
                acc = (acc << 8) | u32::from(byte);
                bits += 8;
                while bits >= 6 && out.len() < SESSION_HANDLE_PREFIX.len() + ID_CHARS {
                    bits -= 6;
                    out.push(char::from(ID_ALPHABET[((acc >> bits) & 63) as usize]));
                    acc &= (1 << bits) - 1;
                }
            }
            if acc != 0 {
                return Err(corrupt("session handle", "stray bits after a packed id"));
            }
            Ok(out)
        }
        Some((&TAG_RAW, body)) => String::from_utf8(body.to_vec()).map_err(|e| corrupt("session handle", e)),
        _ => Err(corrupt("session handle", "unknown encoding")),
    }
}

// ------------------------------------------------------------ sessions

/// The session record as stored. Field order is the format: the Lua
/// scripts read and rewrite everything up to `subject`.
#[derive(Serialize, Deserialize)]
struct WireSession<'a> {
    format: u8,
    version: u64,
    created_at: i64,
    /// `last_seen_at - created_at`.
    last_seen: i64,
    idle_timeout_ms: i64,
    /// `idle_expires_at - (last_seen_at + idle_timeout_ms)`: 0 unless the
    /// window was set apart from the last activity.
    idle: i64,
    /// `absolute_expires_at - created_at`.
    absolute: i64,
    /// The reason's code and `revoked_at - created_at`.
    revoked: Option<(u8, i64)>,
    token_hash: [u8; 32],
    #[serde(borrow)]
    subject: Cow<'a, str>,
    // The tail, opaque to the scripts.
    auth_level: u8,
    #[serde(borrow)]
    auth_methods: Vec<Cow<'a, str>>,
    /// `auth.time - created_at`.
    auth_time: i64,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ip: Option<Cow<'a, str>>,
    /// `None`: "Unknown device", the label of every session without a
    /// user agent (most API sessions): 14 bytes per session saved.
    #[serde(borrow)]
    label: Option<Cow<'a, str>>,
    /// The data object as JSON; empty for `{}`.
    #[serde(borrow)]
    data: Cow<'a, str>,
    /// The binding as JSON.
    #[serde(borrow)]
    binding: Option<Cow<'a, str>>,
}

pub(crate) fn encode_session(s: &SessionRecord) -> StoreResult<Vec<u8>> {
    if s.version >= 1 << 53 {
        return Err(too_big("session version", s.version));
    }
    let last_seen_at = ms("last_seen_at", s.last_seen_at)?;
    let idle_timeout_ms = fit("idle_timeout_ms", s.idle_timeout_ms)?;
    let wire = WireSession {
        format: SESSION_FORMAT,
        version: s.version,
        created_at: ms("created_at", s.created_at)?,
        last_seen: delta("last_seen_at", s.last_seen_at, s.created_at)?,
        idle_timeout_ms,
        idle: fit(
            "idle_expires_at",
            ms("idle_expires_at", s.idle_expires_at)? - last_seen_at - idle_timeout_ms,
        )?,
        absolute: delta("absolute_expires_at", s.absolute_expires_at, s.created_at)?,
        revoked: match s.revoked {
            Some(r) => Some((reason_code(r.reason), delta("revoked_at", r.at, s.created_at)?)),
            None => None,
        },
        token_hash: s.token_hash.0,
        subject: Cow::Borrowed(&s.subject),
        auth_level: s.auth.level,
        auth_methods: s.auth.methods.iter().map(|m| Cow::Borrowed(m.as_str())).collect(),
        auth_time: delta("auth.time", s.auth.time, s.created_at)?,
        user_agent: s.device.user_agent.as_deref().map(Cow::Borrowed),
        ip: s.device.ip.as_deref().map(Cow::Borrowed),
        label: (s.device.label != UNKNOWN_DEVICE).then_some(Cow::Borrowed(s.device.label.as_str())),
        data: if s.data.is_empty() {
            Cow::Borrowed("")
        } else {
            Cow::Owned(json("data", &s.data)?)
        },
        binding: s
            .binding
            .as_ref()
            .map(|b| json("binding", b))
            .transpose()?
            .map(Cow::Owned),
    };
    encode("session", &wire)
}

fn plus(base: i64, d: i64, what: &str) -> StoreResult<Timestamp> {
    base.checked_add(d)
        .map(Timestamp::from_unix_millis)
        .ok_or_else(|| corrupt(what, "out of range"))
}

pub(crate) fn decode_session(handle: String, b: &[u8]) -> StoreResult<SessionRecord> {
    let w: WireSession<'_> = decode("session", b)?;
    if w.format != SESSION_FORMAT {
        return Err(corrupt("session", format!("unknown format {}", w.format)));
    }
    let last_seen_at = plus(w.created_at, w.last_seen, "last_seen_at")?;
    let idle_base = last_seen_at
        .unix_millis()
        .checked_add(w.idle_timeout_ms)
        .ok_or_else(|| corrupt("idle_expires_at", "out of range"))?;
    Ok(SessionRecord {
        handle,
        token_hash: TokenHash(w.token_hash),
        subject: w.subject.into_owned(),
        version: w.version,
        created_at: Timestamp::from_unix_millis(w.created_at),
        last_seen_at,
        idle_timeout_ms: w.idle_timeout_ms,
        idle_expires_at: plus(idle_base, w.idle, "idle_expires_at")?,
        absolute_expires_at: plus(w.created_at, w.absolute, "absolute_expires_at")?,
        auth: AuthInfo {
            level: w.auth_level,
            methods: w.auth_methods.into_iter().map(Cow::into_owned).collect(),
            time: plus(w.created_at, w.auth_time, "auth.time")?,
        },
        device: DeviceInfo {
            user_agent: w.user_agent.map(Cow::into_owned),
            ip: w.ip.map(Cow::into_owned),
            label: w.label.map_or_else(|| UNKNOWN_DEVICE.to_owned(), Cow::into_owned),
        },
        data: if w.data.is_empty() {
            Map::new()
        } else {
            from_json::<Map<String, Value>>("data", &w.data)?
        },
        binding: w.binding.map(|b| from_json("binding", &b)).transpose()?,
        revoked: match w.revoked {
            Some((code, d)) => Some(Revocation {
                at: plus(w.created_at, d, "revoked_at")?,
                reason: reason_from(code)?,
            }),
            None => None,
        },
    })
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

pub(crate) fn reason_from(code: u8) -> StoreResult<RevokeReason> {
    RevokeReason::ALL
        .into_iter()
        .find(|r| reason_code(*r) == code)
        .ok_or_else(|| corrupt("revoke reason", format!("unknown code {code}")))
}

pub(crate) fn kind_code(k: EventKind) -> u8 {
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

/// An event's `k` field: kind * 8 + reason (0 for none).
pub(crate) fn event_code(e: &NewEvent) -> u8 {
    kind_code(e.kind) * 8 + e.reason.map_or(0, reason_code)
}

/// The four script arguments of one event: at, code, subject, handle.
pub(crate) fn event_args(e: &NewEvent) -> StoreResult<[Vec<u8>; 4]> {
    Ok([
        ms("event at", e.at)?.to_string().into_bytes(),
        event_code(e).to_string().into_bytes(),
        e.subject.as_bytes().to_vec(),
        pack_handle(&e.handle),
    ])
}

/// One stream entry: its id and its field/value pairs.
pub(crate) fn decode_event(id: &str, fields: &[(Vec<u8>, Vec<u8>)]) -> StoreResult<Event> {
    let seq = id
        .strip_prefix("0-")
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| corrupt("event id", id))?;
    let field = |name: &[u8]| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
            .ok_or_else(|| {
                corrupt(
                    "event",
                    format!("{id} has no field {}", String::from_utf8_lossy(name)),
                )
            })
    };
    let text = |name: &[u8]| -> StoreResult<&str> {
        std::str::from_utf8(field(name)?).map_err(|e| corrupt("event", e))
    };
    let at: i64 = text(b"t")?.parse().map_err(|e| corrupt("event time", e))?;
    let code: u8 = text(b"k")?.parse().map_err(|e| corrupt("event code", e))?;
    let reason = match code % 8 {
        0 => None,
        r => Some(reason_from(r)?),
    };
    Ok(Event {
        id: seq,
        event: NewEvent {
            at: Timestamp::from_unix_millis(at),
            kind: kind_from(code / 8)?,
            subject: text(b"s")?.to_owned(),
            handle: unpack_handle(field(b"h")?)?,
            reason,
        },
    })
}

// ------------------------------------------------------------ families

/// The parts of a family that never change after its creation.
#[derive(Serialize, Deserialize)]
struct WireFamily<'a> {
    #[serde(borrow)]
    handle: Cow<'a, str>,
    session_token_hash: [u8; 32],
    #[serde(borrow)]
    client_id: Cow<'a, str>,
    #[serde(borrow)]
    scope: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    audience: Vec<Cow<'a, str>>,
    created_at: i64,
    #[serde(borrow)]
    binding: Option<Cow<'a, str>>,
}

pub(crate) fn encode_family(f: &RefreshFamily) -> StoreResult<Vec<u8>> {
    encode(
        "refresh family",
        &WireFamily {
            handle: Cow::Borrowed(&f.handle),
            session_token_hash: f.session_token_hash.0,
            client_id: Cow::Borrowed(&f.client_id),
            scope: f.scope.iter().map(|s| Cow::Borrowed(s.as_str())).collect(),
            audience: f.audience.iter().map(|s| Cow::Borrowed(s.as_str())).collect(),
            created_at: f.created_at.unix_millis(),
            binding: f
                .binding
                .as_ref()
                .map(|b| json("binding", b))
                .transpose()?
                .map(Cow::Owned),
        },
    )
}

/// A family hash's fields: `b` (the [`WireFamily`]), `g` generation, `t`
/// rotated at, `s` sealed successor, `r`/`w` revocation time and reason,
/// `k` a binding set at a rotation (JSON).
pub(crate) fn decode_family(id: String, fields: &[(Vec<u8>, Vec<u8>)]) -> StoreResult<RefreshFamily> {
    let get = |name: &[u8]| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice());
    let num = |name: &[u8]| -> StoreResult<Option<i64>> {
        get(name)
            .map(|v| {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| {
                        corrupt("refresh family", format!("bad {}", String::from_utf8_lossy(name)))
                    })
            })
            .transpose()
    };
    let blob = get(b"b").ok_or_else(|| corrupt("refresh family", "no record"))?;
    let w: WireFamily<'_> = decode("refresh family", blob)?;
    let generation = get(b"g")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| corrupt("refresh family", "bad generation"))?;
    let rotated_at = num(b"t")?.ok_or_else(|| corrupt("refresh family", "no rotation time"))?;
    let revoked = match (num(b"r")?, num(b"w")?) {
        (None, None) => None,
        (Some(at), Some(code)) => Some(Revocation {
            at: Timestamp::from_unix_millis(at),
            reason: reason_from(u8::try_from(code).map_err(|e| corrupt("refresh family", e))?)?,
        }),
        _ => return Err(corrupt("refresh family", "half a revocation")),
    };
    Ok(RefreshFamily {
        id,
        handle: w.handle.into_owned(),
        session_token_hash: TokenHash(w.session_token_hash),
        client_id: w.client_id.into_owned(),
        scope: w.scope.into_iter().map(Cow::into_owned).collect(),
        audience: w.audience.into_iter().map(Cow::into_owned).collect(),
        generation,
        created_at: Timestamp::from_unix_millis(w.created_at),
        rotated_at: Timestamp::from_unix_millis(rotated_at),
        current_sealed: get(b"s").map(<[u8]>::to_vec),
        // `k`: a binding the family got at a rotation (it had none when
        // created; the record itself is never rewritten).
        binding: match (w.binding, get(b"k")) {
            (Some(b), _) => Some(from_json("binding", &b)?),
            (None, Some(k)) => Some(from_json(
                "binding",
                std::str::from_utf8(k).map_err(|e| corrupt("refresh family", e))?,
            )?),
            (None, None) => None,
        },
        revoked,
    })
}

// ------------------------------------------------------------ keys

#[derive(Serialize, Deserialize)]
struct WireSigningKey<'a> {
    alg: u8,
    created_at: i64,
    activates_at: i64,
    #[serde(borrow)]
    public_jwk: Cow<'a, str>,
}

fn alg_code(a: SigningAlg) -> u8 {
    match a {
        SigningAlg::EdDSA => 1,
        SigningAlg::ES256 => 2,
        SigningAlg::RS256 => 3,
    }
}

pub(crate) fn encode_signing_key(k: &SigningKeyRecord) -> StoreResult<Vec<u8>> {
    encode(
        "signing key",
        &WireSigningKey {
            alg: alg_code(k.alg),
            created_at: k.created_at.unix_millis(),
            activates_at: k.activates_at.unix_millis(),
            public_jwk: Cow::Borrowed(&k.public_jwk),
        },
    )
}

/// A signing key hash's fields: `b` (the [`WireSigningKey`]), `p` the
/// sealed private part, `x` revoked at.
pub(crate) fn decode_signing_key(
    kid: String,
    fields: &[(Vec<u8>, Vec<u8>)],
) -> StoreResult<SigningKeyRecord> {
    let get = |name: &[u8]| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice());
    let w: WireSigningKey<'_> = decode(
        "signing key",
        get(b"b").ok_or_else(|| corrupt("signing key", "no record"))?,
    )?;
    let alg = [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256]
        .into_iter()
        .find(|a| alg_code(*a) == w.alg)
        .ok_or_else(|| corrupt("signing key", format!("unknown algorithm {}", w.alg)))?;
    Ok(SigningKeyRecord {
        kid,
        alg,
        created_at: Timestamp::from_unix_millis(w.created_at),
        activates_at: Timestamp::from_unix_millis(w.activates_at),
        private_sealed: get(b"p").map(<[u8]>::to_vec).unwrap_or_default(),
        public_jwk: w.public_jwk.into_owned(),
        revoked_at: get(b"x")
            .map(|v| millis_field("signing key revoked_at", v))
            .transpose()?,
    })
}

fn millis_field(what: &str, v: &[u8]) -> StoreResult<Timestamp> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .map(Timestamp::from_unix_millis)
        .ok_or_else(|| corrupt(what, "not a number"))
}

#[derive(Serialize, Deserialize)]
struct WireApiKey<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    hash: [u8; 32],
    created_at: i64,
    /// Scope names, space-separated (as every store keeps them).
    #[serde(borrow)]
    scopes: Cow<'a, str>,
}

pub(crate) fn encode_api_key(k: &ApiKeyRecord) -> StoreResult<Vec<u8>> {
    encode(
        "API key",
        &WireApiKey {
            name: Cow::Borrowed(&k.name),
            hash: k.hash.0,
            created_at: k.created_at.unix_millis(),
            scopes: Cow::Owned(ApiKeyScope::join(&k.scopes)),
        },
    )
}

/// An API key hash's fields: `b` (the [`WireApiKey`]), `x` revoked at.
pub(crate) fn decode_api_key(id: String, fields: &[(Vec<u8>, Vec<u8>)]) -> StoreResult<ApiKeyRecord> {
    let get = |name: &[u8]| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice());
    let w: WireApiKey<'_> = decode(
        "API key",
        get(b"b").ok_or_else(|| corrupt("API key", "no record"))?,
    )?;
    Ok(ApiKeyRecord {
        id,
        name: w.name.into_owned(),
        hash: TokenHash(w.hash),
        created_at: Timestamp::from_unix_millis(w.created_at),
        revoked_at: get(b"x")
            .map(|v| millis_field("API key revoked_at", v))
            .transpose()?,
        // A name this build does not know (written by a newer one) grants
        // nothing here, rather than making the key unusable or wider.
        scopes: ApiKeyScope::normalize(
            w.scopes
                .split_ascii_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect(),
        ),
    })
}

#[cfg(test)]
mod tests;
