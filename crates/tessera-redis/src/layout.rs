//! The key layout.
//!
//! Every key starts with the prefix, `{tessera}` by default: one Redis
//! Cluster hash tag for the whole deployment, so every script touches a
//! single slot (docs/decisions.md: the token index, the subject index,
//! the event log with its public cursor, revoke-all and the active count
//! all need cross-subject atomicity; Cluster gives failover, not
//! sharding). After it, one letter says what the key holds:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `s`‹handle› | string, TTL | a session record (`codec`); the handle packed to 18 bytes |
//! | `t`‹n› | hash | token index bucket *n*: first 16 bytes of a token hash → packed handle |
//! | `u`‹n› | sorted set | subject index bucket *n*: ‹len›‹subject›‹handle› scored by expiry (negated once revoked) |
//! | `e` | stream | the event log, ids `0-1`, `0-2`, …; fields `t` at, `k` kind·8+reason, `s` subject, `h` handle |
//! | `v` | sorted set | ids of `revoked` events, scored by their time (the feed's cursor) |
//! | `f`‹family› | hash | a refresh family: `b` record, `h` handle, `g` generation, `t` rotated at, `s` sealed successor, `r`/`w` revocation, `k` binding set at a rotation |
//! | `l`‹family› | list | the family's token hashes, generation order |
//! | `F`‹handle› | list | the session's family ids |
//! | `r` | hash | refresh token hash → "‹generation› ‹family›" |
//! | `c` | sorted set | families holding a sealed successor, by rotation time |
//! | `k`‹kid› / `K` | hash / sorted set | signing keys; their order by activation |
//! | `a`‹id› / `A` / `L` | hash / hash / sorted set | API keys; hash → id; order by creation |
//! | `o`‹id› / `O` | hash / sorted set | OAuth clients registered at run time: `c` created at, `x` revoked at, `g` registration; their order by creation |
//! | `m` | hash | layout metadata: `f` format, `b` bucket count |
//! | `i` | pub/sub channel (not a key) | invalidations: the token index fields (16 bytes each) of the sessions a script changed ([`cache`](crate::cache)) |
//! | `d`‹name› | string, TTL | a lease (`LeaseStore`): "‹expires at ms› ‹holder›" |
//! | `x`‹marker› | string, TTL | a single-use marker (`ReplayStore`, 32 bytes): its expiry in ms |
//! | `r`‹counter› | hash, TTL | a rate-limit counter (`RateLimitStore`, 32 bytes): window index → hits, the current and previous window only |
//!
//! Buckets: the two session indexes are split in *n* buckets (a power of
//! two, 4096 by default) so each stays small enough for Redis's compact
//! encodings (listpack) — about 45 bytes per session each instead of
//! about 120 in one big hash or sorted set. A subject's entries all land
//! in one bucket (by SHA-1 of the subject), so "the sessions of S" reads
//! one small key. The count is fixed when the first process writes `m`.
//!
//! Expiry: a session record carries a TTL of its expiry plus a grace
//! ([`RedisOptions::grace`](crate::RedisOptions)), measured from the
//! writer's clock; the sweeper normally deletes it first. If Redis drops
//! it anyway (no sweeper ran for the whole grace), its subject-index entry
//! still names the subject, the handle and whether it was revoked: the
//! next sweep — or the next write to that bucket ("trim on write") —
//! deletes the entry with the session's families and logs the `expired`
//! event the sweep would have logged.

use redis::aio::ConnectionLike;
use tessera_core::{StoreError, StoreResult};

use crate::{RedisOptions, map_err};

pub(crate) const SESSION: u8 = b's';
pub(crate) const EVENTS: u8 = b'e';
pub(crate) const META: u8 = b'm';
pub(crate) const INVALIDATIONS: u8 = b'i';
pub(crate) const LEASE: u8 = b'd';
/// A single-use marker (`ReplayStore`).
pub(crate) const MARKER: u8 = b'x';
/// A rate-limit counter (`RateLimitStore`).
pub(crate) const COUNTER: u8 = b'r';

/// The layout this build writes; a different one in `m` is refused.
const FORMAT: &str = "1";

pub(crate) fn key(prefix: &str, kind: u8, id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 1 + id.len());
    k.extend_from_slice(prefix.as_bytes());
    k.push(kind);
    k.extend_from_slice(id);
    k
}

/// Records (once) and checks the layout under the prefix: the format and
/// the bucket count. Returns the bucket count in force.
pub(crate) async fn check_meta(conn: &mut impl ConnectionLike, options: &RedisOptions) -> StoreResult<u32> {
    let m = key(&options.prefix, META, b"");
    let wanted = options.buckets.unwrap_or(RedisOptions::DEFAULT_BUCKETS);
    let (format, buckets): (Option<String>, Option<String>) = redis::pipe()
        .atomic()
        .cmd("HSETNX")
        .arg(&m)
        .arg("f")
        .arg(FORMAT)
        .ignore()
        .cmd("HSETNX")
        .arg(&m)
        .arg("b")
        .arg(wanted)
        .ignore()
        .cmd("HMGET")
        .arg(&m)
        .arg("f")
        .arg("b")
        .query_async::<((Option<String>, Option<String>),)>(conn)
        .await
        .map(|(v,)| v)
        .map_err(map_err)?;
    if format.as_deref() != Some(FORMAT) {
        return Err(StoreError::Unavailable(format!(
            "the keys under {} were written in layout {format:?}, this version reads layout {FORMAT}",
            options.prefix
        )));
    }
    let buckets: u32 = buckets
        .as_deref()
        .and_then(|b| b.parse().ok())
        .filter(|b: &u32| b.is_power_of_two() && *b <= RedisOptions::MAX_BUCKETS)
        .ok_or_else(|| StoreError::Corrupt(format!("bad bucket count in {}m", options.prefix)))?;
    if options.buckets.is_some_and(|b| b != buckets) {
        return Err(StoreError::Unavailable(format!(
            "the keys under {} use {buckets} buckets; `buckets` cannot change once written (use another prefix)",
            options.prefix
        )));
    }
    Ok(buckets)
}
