//! `memcached://` — Tessera's store over one memcached.
//!
//! [`MemcachedStore`] implements every store capability of `tessera_core`
//! (sessions, refresh families, signing keys, API keys, OAuth clients, the
//! event log, leases, single-use markers, rate-limit counters, health).
//! Memcached has no transactions, no scripts and no way to list keys, so
//! each multi-record operation is a sequence of single-key steps made safe
//! by compare-and-swap (`gets`/`cas`, here the meta protocol's `c`/`C`
//! flags), create-if-absent (`add`) and atomic counters (`incr`). The key
//! layout, and what each operation does when it is interrupted half-way,
//! is in [`layout`]; docs/configuration.md has the limits an operator must
//! know (no durability, evictions end sessions).
//!
//! There is no local cache: every read goes to memcached, so a revocation
//! written by one process is seen by the next read of every other one.
//!
//! Every failure becomes a [`StoreError`]: an unreachable server or a
//! timeout is [`StoreError::Unavailable`] (the faces answer 503), a value
//! that does not decode is [`StoreError::Corrupt`]. Connections are dialed
//! on demand, so the store opens while memcached is down and recovers by
//! itself when it is back.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod codec;
mod conn;
mod events;
pub mod layout;
mod misc;
mod options;
mod refresh;
mod sessions;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::sync::Arc;

use tessera_core::{StoreError, StoreResult};

pub use options::{DEFAULT_PREFIX, MemcachedOptions, OptionsError};

use crate::conn::Conn;

/// A complete [`tessera_core::Store`] on one memcached (see the crate
/// docs). Cloning shares the connections.
#[derive(Clone)]
pub struct MemcachedStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    options: MemcachedOptions,
    /// The global index shard where the next sweep starts.
    sweep_cursor: std::sync::atomic::AtomicU32,
}

impl fmt::Debug for MemcachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedStore")
            .field("address", &self.inner.options.address)
            .field("prefix", &self.inner.options.prefix)
            .finish_non_exhaustive()
    }
}

impl MemcachedStore {
    /// Opens the store a `memcached://` URL names without talking to the
    /// server: the first call connects (and fails with
    /// [`StoreError::Unavailable`] while the server is down). Needs no
    /// runtime; the calls need a Tokio one.
    pub fn open_lazy(url: &str) -> StoreResult<MemcachedStore> {
        let options = MemcachedOptions::from_url(url).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self::with_options(options))
    }

    /// [`open_lazy`](Self::open_lazy), then one round trip to check the
    /// server answers.
    pub async fn connect(url: &str) -> StoreResult<MemcachedStore> {
        let store = Self::open_lazy(url)?;
        store.inner.conn.ping().await?;
        Ok(store)
    }

    /// A store with these options (lazy, as [`open_lazy`](Self::open_lazy)).
    pub fn with_options(options: MemcachedOptions) -> MemcachedStore {
        MemcachedStore {
            inner: Arc::new(Inner {
                conn: Conn::new(&options),
                options,
                sweep_cursor: std::sync::atomic::AtomicU32::new(0),
            }),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &MemcachedOptions {
        &self.inner.options
    }

    fn conn(&self) -> &Conn {
        &self.inner.conn
    }

    fn key(&self) -> layout::Keys<'_> {
        layout::Keys::new(&self.inner.options.prefix)
    }
}
