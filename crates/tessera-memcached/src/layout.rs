//! The key layout, and how each multi-key operation stays safe without
//! transactions.
//!
//! Every key starts with the URL's `prefix` (default `tessera:`). A name
//! that is not a plain identifier (a subject, an odd handle) appears in a
//! key as `~` and the SHA-256 of its bytes, so keys stay within
//! memcached's 250 printable bytes whatever the name. Token hashes and
//! digests appear in base64url.
//!
//! | key | value | written by |
//! |---|---|---|
//! | `s:HANDLE` | the session record | `add` (create), `cas` (every change) |
//! | `t:HASH` | session token hash → handle | `add`; a stale one is replaced by `cas` |
//! | `u:SUBJECT` | the subject's handles (+ those marked evicted) | `cas` loop |
//! | `g:N` | handles of shard N of 1024 (every session) | `cas` loop |
//! | `f:ID` | a refresh-token family | `add` (create), `cas` (rotate, revoke, clear) |
//! | `r:HASH` | refresh token hash → family and generation | `add`; a stale one is replaced by `cas` |
//! | `sf:HANDLE` | the session's family ids | `cas` loop |
//! | `e:base`, `e:seq`, `e:first` | event ids: the base, how many were handed out, the first not deleted | `add`, `incr`, `cas` |
//! | `e:ID` | one event | `add` (a reader may `add` a tombstone first, see below) |
//! | `k` | every signing key | `cas` loop |
//! | `a` | every API key | `cas` loop |
//! | `c` | every OAuth client registered at run time | `cas` loop |
//! | `l:NAME` | a lease: holder and expiry | `add` / `cas` / `delete` on a CAS |
//! | `m:DIGEST` | a single-use marker and its expiry | `add`; an expired one is replaced by `cas` |
//! | `w:DIGEST:WINDOW` | a rate-limit window count | `incr` that creates it with its expiry |
//!
//! # Ordering, and what an interrupted operation leaves
//!
//! Each record changes by one atomic memcached step; an operation that
//! touches several records orders its steps so that every intermediate
//! state is harmless to readers, and a process that dies between steps
//! (or a timeout that leaves the outcome unknown) leaves at worst:
//!
//! - **Session create** (`add s:`, `add t:`, revoke the replaced session by
//!   `cas`, index updates, events): the session record is written first, so
//!   a duplicate handle writes nothing; a taken token hash deletes the just
//!   added record again. A session left without its index entries (death
//!   after `add s:`) cannot be found by subject or swept, but nobody holds
//!   its token (the create never answered) and memcached drops it when its
//!   expiry passes.
//! - **Token pointers** (`t:`, `r:`) are hints: a reader follows one and
//!   checks the record it names (the session must still have that token
//!   hash; the family must exist). A pointer left behind by an update, a
//!   rollback or a sweep finds nothing and is replaced when its hash is
//!   claimed again; it expires with its record.
//! - **Revocation** is written on the session record itself (`cas`, the
//!   version bumped) before anything else, so from that step on every
//!   verification on every node refuses the session; a `touch` or `update`
//!   built on the old record fails its CAS instead of writing it back
//!   un-revoked. Its
//!   `revoked` event follows; dying in between loses the event (the
//!   revocation feed then misses it), never the revocation.
//! - **The session limit**: the creating process decides which sessions to
//!   evict while it adds its handle to the subject index, marks them
//!   evicted in the same `cas` of the index, then revokes them. Concurrent
//!   creates for one subject serialise on that `cas`, and each sees the
//!   others' choices, so exactly the oldest surplus is revoked, once.
//!   Dying after the index `cas` leaves the marked sessions valid until
//!   they expire (the subject has more sessions than the limit), and the
//!   next create for the subject does not count them.
//! - **Index records** (`u:`, `g:`, `sf:`) may name records that are gone
//!   (a sweep that died half-way, an eviction): readers skip those; every
//!   walk of the global index (sweep, count) prunes its entries, and the
//!   next create of the subject prunes the subject's.
//! - **Rotation**: the successor's `r:` pointer is added first (a taken
//!   hash is [`Duplicate`](tessera_core::StoreError::Duplicate), nothing
//!   else written), then the family's `cas` from the expected generation,
//!   which is the commit point: of concurrent rotations exactly one wins,
//!   and the losers delete their pointers. The session slide and the
//!   events follow; once committed the rotation answers true whatever they
//!   do (a failure is logged: the next verification slides the session,
//!   the event is lost), since the client's old token is consumed and must
//!   get its successor.
//! - **Sweep**: a session is deleted with `delete` on its CAS (so it was
//!   not changed since it was judged expired, and only one sweeper wins
//!   it), then its `expired` event, families, pointers and index entries
//!   go. Dying after the delete loses at most the event; the rest is
//!   garbage that readers ignore and memcached expires.
//!
//! # The event log
//!
//! An id is `e:base` plus `incr e:seq`; each event is its own key `e:ID`,
//! written with `add`. The base is the wall clock in microseconds when the
//! log was first written to (set once, by `add`), so after memcached lost
//! everything (a restart) new ids are still above every id handed out
//! before, and a revocation-feed follower's cursor does not skip the new
//! events; ids therefore do not start at 1 but at the base plus 1. A
//! reader that finds an id at or below the last one handed out still empty
//! (its writer is between `incr` and `add`, or died there, or memcached
//! evicted it) writes a tombstone there with `add` and moves on; a writer
//! whose `add` then fails takes a new id. So a follower's cursor never
//! passes an event that appears later below it. Queries walk ids, 200 per
//! round trip: a filtered query costs the events from its cursor up to the
//! limit-th match, `events_cursor_since` the events of the window plus
//! [`CURSOR_SKEW_MS`] before it. Retention
//! deletes from `e:first` on and then advances it.

use aws_lc_rs::digest;

/// Shards of the global session index (`g:N`).
pub(crate) const SHARDS: u32 = 1024;

/// How far before `since` `events_cursor_since` keeps walking back, for
/// events appended by processes whose clocks ran behind.
pub const CURSOR_SKEW_MS: i64 = 5 * 60 * 1000;

/// Seconds a record outlives the expiry it carries, so the sweeper (which
/// runs every few minutes) still finds expired sessions and writes their
/// `expired` events before memcached drops them.
pub(crate) const EXPIRY_SLACK_SECS: i64 = 24 * 3600;

/// 32 bytes (a token hash, a digest) as they appear in a key: base64url,
/// 43 characters.
fn b64(bytes: &[u8]) -> String {
    tessera_core::b64url::encode(bytes)
}

fn sha256(s: &str) -> String {
    b64(digest::digest(&digest::SHA256, s.as_bytes()).as_ref())
}

/// A name as it appears in a key: itself if it is a short plain
/// identifier, else `~` and its SHA-256 in base64url.
fn name(s: &str) -> String {
    let plain = !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if plain {
        s.to_owned()
    } else {
        format!("~{}", sha256(s))
    }
}

/// Global index shards per pipelined read when walking every session.
const SHARD_GROUP: u32 = 64;

/// Every shard, in groups of [`SHARD_GROUP`], starting at `start` and
/// wrapping around.
pub(crate) fn shard_groups(start: u32) -> Vec<Vec<u32>> {
    (0..SHARDS)
        .map(|i| (start + i) % SHARDS)
        .collect::<Vec<_>>()
        .chunks(SHARD_GROUP as usize)
        .map(<[u32]>::to_vec)
        .collect()
}

/// The global index shard of a handle.
pub(crate) fn shard_of(handle: &str) -> u32 {
    let d = digest::digest(&digest::SHA256, handle.as_bytes());
    let b = d.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) % SHARDS
}

/// The keys of one prefix.
pub(crate) struct Keys<'a> {
    prefix: &'a str,
}

impl<'a> Keys<'a> {
    pub(crate) fn new(prefix: &'a str) -> Self {
        Self { prefix }
    }

    pub(crate) fn session(&self, handle: &str) -> String {
        format!("{}s:{}", self.prefix, name(handle))
    }

    pub(crate) fn session_token(&self, hash: &[u8; 32]) -> String {
        format!("{}t:{}", self.prefix, b64(hash))
    }

    pub(crate) fn subject(&self, subject: &str) -> String {
        // Always hashed: a subject is opaque user data.
        format!("{}u:{}", self.prefix, sha256(subject))
    }

    pub(crate) fn shard(&self, n: u32) -> String {
        format!("{}g:{n}", self.prefix)
    }

    pub(crate) fn family(&self, id: &str) -> String {
        format!("{}f:{}", self.prefix, name(id))
    }

    pub(crate) fn refresh_token(&self, hash: &[u8; 32]) -> String {
        format!("{}r:{}", self.prefix, b64(hash))
    }

    pub(crate) fn families_of(&self, handle: &str) -> String {
        format!("{}sf:{}", self.prefix, name(handle))
    }

    pub(crate) fn event_seq(&self) -> String {
        format!("{}e:seq", self.prefix)
    }

    pub(crate) fn event_base(&self) -> String {
        format!("{}e:base", self.prefix)
    }

    pub(crate) fn event_first(&self) -> String {
        format!("{}e:first", self.prefix)
    }

    pub(crate) fn event(&self, id: u64) -> String {
        format!("{}e:{id}", self.prefix)
    }

    pub(crate) fn signing_keys(&self) -> String {
        format!("{}k", self.prefix)
    }

    pub(crate) fn api_keys(&self) -> String {
        format!("{}a", self.prefix)
    }

    pub(crate) fn clients(&self) -> String {
        format!("{}c", self.prefix)
    }

    pub(crate) fn lease(&self, lease: &str) -> String {
        format!("{}l:{}", self.prefix, name(lease))
    }

    pub(crate) fn marker(&self, digest: &[u8; 32]) -> String {
        format!("{}m:{}", self.prefix, b64(digest))
    }

    pub(crate) fn counter(&self, digest: &[u8; 32], window: u64) -> String {
        format!("{}w:{}:{window}", self.prefix, b64(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_names_become_digests_plain_ones_stay() {
        let k = Keys::new("p:");
        assert_eq!(k.session("ses_abc-_9"), "p:s:ses_abc-_9");
        let odd = k.session("a b*\n");
        assert!(odd.starts_with("p:s:~") && odd.len() == 5 + 43, "{odd}");
        assert!(k.session(&"x".repeat(1000)).len() < 100);
        assert_eq!(k.subject("alice").len(), 4 + 43);
    }
}
