//! The few memcached operations the store is built from, over the meta
//! protocol client of the `memcache` crate (`memcache::exp`): read with
//! CAS, add, compare-and-swap, set, delete (optionally on a CAS), counters.
//! Every failure is [`StoreError::Unavailable`].
//!
//! The client is made on first use (it resolves the host name then) and
//! dials connections lazily, so a store opens while memcached is down;
//! a failed exchange drops its connection and the next call dials anew.

use std::time::Duration;

use memcache::exp::{
    Arithmetic, AsyncMetaClient, Delete, Get, Meta, MetaClientBuilder, MutationStatus, Set, Ttl,
};
use tessera_core::{StoreError, StoreResult};
use tokio::sync::OnceCell;

use crate::options::MemcachedOptions;

/// One stored value and its CAS token.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) value: Vec<u8>,
    pub(crate) cas: u64,
}

/// Keys per pipelined multi-get.
const GET_CHUNK: usize = 200;

pub(crate) struct Conn {
    client: OnceCell<AsyncMetaClient>,
    address: String,
    timeout: Duration,
    connect_timeout: Duration,
    max_connections: usize,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("memcached: {e}"))
}

/// A record's time to live in memcached: whole seconds, at least one.
pub(crate) fn ttl_secs(secs: i64) -> Ttl {
    Ttl::secs(u32::try_from(secs.max(1)).unwrap_or(u32::MAX))
}

impl Conn {
    pub(crate) fn new(o: &MemcachedOptions) -> Conn {
        Conn {
            client: OnceCell::new(),
            address: o.address.clone(),
            timeout: o.timeout,
            connect_timeout: o.connect_timeout,
            max_connections: o.max_connections,
        }
    }

    async fn client(&self) -> StoreResult<&AsyncMetaClient> {
        self.client
            .get_or_try_init(|| async {
                let connect = MetaClientBuilder::new()
                    .io_timeout(Some(self.timeout))
                    .connect_timeout(Some(self.connect_timeout))
                    .max_connections(Some(self.max_connections))
                    .connect_async(self.address.clone());
                // Name resolution has no deadline of its own.
                match tokio::time::timeout(self.connect_timeout, connect).await {
                    Ok(r) => r.map_err(unavailable),
                    Err(_) => Err(unavailable(format!("resolving {} timed out", self.address))),
                }
            })
            .await
    }

    pub(crate) async fn ping(&self) -> StoreResult<()> {
        self.client().await?.noop().await.map_err(unavailable)
    }

    pub(crate) async fn get(&self, key: &str) -> StoreResult<Option<Item>> {
        let r = self
            .client()
            .await?
            .run(Get::new(key).meta(Meta::NONE.cas()))
            .await
            .map_err(unavailable)?;
        Ok(match (r.value, r.item.cas) {
            (Some(value), Some(cas)) if r.status == memcache::exp::GetStatus::Hit => {
                Some(Item { value, cas })
            }
            _ => None,
        })
    }

    /// Several keys, pipelined; one answer per key, in order.
    pub(crate) async fn get_many(&self, keys: &[String]) -> StoreResult<Vec<Option<Item>>> {
        let client = self.client().await?;
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(GET_CHUNK) {
            let results = client
                .run_many(chunk.iter().map(|k| Get::new(k).meta(Meta::NONE.cas())))
                .await
                .map_err(unavailable)?;
            for r in results {
                let r = r.map_err(unavailable)?;
                out.push(match (r.value, r.item.cas) {
                    (Some(value), Some(cas)) if r.status == memcache::exp::GetStatus::Hit => {
                        Some(Item { value, cas })
                    }
                    _ => None,
                });
            }
        }
        Ok(out)
    }

    async fn store(&self, op: Set) -> StoreResult<MutationStatus> {
        let r = self.client().await?.run(op).await.map_err(unavailable)?;
        Ok(r.status)
    }

    /// Stores `value` only if `key` holds nothing; whether it did.
    pub(crate) async fn add(&self, key: &str, value: &[u8], ttl: Ttl) -> StoreResult<bool> {
        Ok(self.store(Set::new(key, value).add().ttl(ttl)).await? == MutationStatus::Applied)
    }

    /// Stores `value` only if `key` still has CAS token `cas`; whether it did.
    pub(crate) async fn cas(&self, key: &str, value: &[u8], cas: u64, ttl: Ttl) -> StoreResult<bool> {
        Ok(self.store(Set::new(key, value).compare_cas(cas).ttl(ttl)).await? == MutationStatus::Applied)
    }

    /// Deletes `key`; whether it was there.
    pub(crate) async fn delete(&self, key: &str) -> StoreResult<bool> {
        let r = self
            .client()
            .await?
            .run(Delete::new(key))
            .await
            .map_err(unavailable)?;
        Ok(r.status == MutationStatus::Applied)
    }

    /// Deletes `key` only if it still has CAS token `cas`; whether it did.
    pub(crate) async fn delete_cas(&self, key: &str, cas: u64) -> StoreResult<bool> {
        let r = self
            .client()
            .await?
            .run(Delete::new(key).compare_cas(cas))
            .await
            .map_err(unavailable)?;
        Ok(r.status == MutationStatus::Applied)
    }

    /// Adds `delta` to the counter at `key`; `None` if there is none.
    pub(crate) async fn incr(&self, key: &str, delta: u64) -> StoreResult<Option<u64>> {
        let r = self
            .client()
            .await?
            .run(Arithmetic::new(key).delta(delta))
            .await
            .map_err(unavailable)?;
        Ok(if r.status == MutationStatus::Applied {
            r.value
        } else {
            None
        })
    }

    /// Adds `delta` to the counter at `key`, creating it as `delta` with
    /// `ttl_secs` to live if there is none; the new total.
    pub(crate) async fn incr_or_create(&self, key: &str, delta: u64, ttl_secs: u32) -> StoreResult<u64> {
        let r = self
            .client()
            .await?
            .run(Arithmetic::new(key).delta(delta).initial(delta, ttl_secs.max(1)))
            .await
            .map_err(unavailable)?;
        match (r.status, r.value) {
            (MutationStatus::Applied, Some(v)) => Ok(v),
            (s, _) => Err(unavailable(format!("counter {key}: unexpected answer {s:?}"))),
        }
    }
}
