//! The small capabilities: signing keys, API keys and OAuth clients (each kind one record
//! changed by CAS loops: a deployment has a handful), leases, single-use
//! markers, rate-limit counters, health.

use std::time::Duration;

use async_trait::async_trait;
use memcache::exp::Ttl;
use tessera_core::store::{WindowTotals, ttl_millis};
use tessera_core::{
    ApiKeyRecord, ApiKeyStore, ClientRecord, ClientStore, LeaseStore, RateLimitStore, ReplayStore,
    SigningKeyRecord, SigningKeyStore, StoreError, StoreHealth, StoreResult, Timestamp, TokenHash,
};

use crate::MemcachedStore;
use crate::codec::{
    Expiry, WireLease, decode, decode_api_keys, decode_clients, decode_signing_keys, encode, encode_api_keys,
    encode_clients, encode_signing_keys,
};
use crate::conn::ttl_secs;

/// Seconds from `now` to `until` (the caller's clock), at least one.
fn secs_until(until: Timestamp, now: Timestamp) -> i64 {
    (until.unix_millis().saturating_sub(now.unix_millis()).max(0) / 1000).saturating_add(1)
}

/// The outcome of one step of a CAS loop over a list record.
enum Step<T> {
    /// Write this list and answer `T`.
    Write(T),
    /// Write nothing and answer `T`.
    Answer(T),
}

impl MemcachedStore {
    /// A CAS loop over the list record at `key`: `f` sees the current list
    /// (empty if none) and decides.
    async fn update_list<R, T>(
        &self,
        key: &str,
        dec: fn(&[u8]) -> StoreResult<Vec<R>>,
        enc: fn(&[R]) -> StoreResult<Vec<u8>>,
        mut f: impl FnMut(&mut Vec<R>) -> StoreResult<Step<T>>,
    ) -> StoreResult<T> {
        loop {
            let item = self.conn().get(key).await?;
            let mut list = match &item {
                Some(i) => dec(&i.value)?,
                None => Vec::new(),
            };
            let answer = match f(&mut list)? {
                Step::Answer(t) => return Ok(t),
                Step::Write(t) => t,
            };
            let value = enc(&list)?;
            let done = match item {
                Some(i) => self.conn().cas(key, &value, i.cas, Ttl::NEVER).await?,
                None => self.conn().add(key, &value, Ttl::NEVER).await?,
            };
            if done {
                return Ok(answer);
            }
        }
    }

    async fn read_list<R>(&self, key: &str, dec: fn(&[u8]) -> StoreResult<Vec<R>>) -> StoreResult<Vec<R>> {
        match self.conn().get(key).await? {
            Some(i) => dec(&i.value),
            None => Ok(Vec::new()),
        }
    }
}

fn key_order(a: &SigningKeyRecord, b: &SigningKeyRecord) -> std::cmp::Ordering {
    (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid))
}

#[async_trait]
impl SigningKeyStore for MemcachedStore {
    async fn insert_signing_key(&self, key: &SigningKeyRecord, if_newest: Option<&str>) -> StoreResult<bool> {
        self.update_list(
            &self.key().signing_keys(),
            decode_signing_keys,
            encode_signing_keys,
            |keys| {
                if keys.iter().any(|k| k.kid == key.kid) {
                    return Err(StoreError::Duplicate);
                }
                let newest = keys.iter().max_by(|a, b| key_order(a, b)).map(|k| k.kid.as_str());
                if newest != if_newest {
                    return Ok(Step::Answer(false));
                }
                keys.push(key.clone());
                keys.sort_by(key_order);
                Ok(Step::Write(true))
            },
        )
        .await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let mut keys = self
            .read_list(&self.key().signing_keys(), decode_signing_keys)
            .await?;
        keys.sort_by(key_order);
        Ok(keys)
    }

    async fn delete_signing_key(&self, kid: &str) -> StoreResult<bool> {
        self.update_list(
            &self.key().signing_keys(),
            decode_signing_keys,
            encode_signing_keys,
            |keys| {
                let before = keys.len();
                keys.retain(|k| k.kid != kid);
                Ok(if keys.len() == before {
                    Step::Answer(false)
                } else {
                    Step::Write(true)
                })
            },
        )
        .await
    }

    async fn revoke_signing_key(&self, kid: &str, now: Timestamp) -> StoreResult<bool> {
        self.update_list(
            &self.key().signing_keys(),
            decode_signing_keys,
            encode_signing_keys,
            |keys| match keys.iter_mut().find(|k| k.kid == kid && k.revoked_at.is_none()) {
                Some(k) => {
                    k.revoked_at = Some(now);
                    k.private_sealed = Vec::new();
                    Ok(Step::Write(true))
                }
                None => Ok(Step::Answer(false)),
            },
        )
        .await
    }
}

#[async_trait]
impl ApiKeyStore for MemcachedStore {
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        self.update_list(&self.key().api_keys(), decode_api_keys, encode_api_keys, |keys| {
            if keys.iter().any(|k| k.id == key.id || k.hash == key.hash) {
                return Err(StoreError::Duplicate);
            }
            keys.push(key.clone());
            Ok(Step::Write(()))
        })
        .await
    }

    async fn api_key_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<ApiKeyRecord>> {
        Ok(self
            .read_list(&self.key().api_keys(), decode_api_keys)
            .await?
            .into_iter()
            .find(|k| k.hash == *hash))
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let mut keys = self.read_list(&self.key().api_keys(), decode_api_keys).await?;
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(keys)
    }

    async fn revoke_api_key(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        self.update_list(
            &self.key().api_keys(),
            decode_api_keys,
            encode_api_keys,
            |keys| match keys.iter_mut().find(|k| k.id == id && k.revoked_at.is_none()) {
                Some(k) => {
                    k.revoked_at = Some(now);
                    Ok(Step::Write(true))
                }
                None => Ok(Step::Answer(false)),
            },
        )
        .await
    }
}

#[async_trait]
impl ClientStore for MemcachedStore {
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()> {
        self.update_list(&self.key().clients(), decode_clients, encode_clients, |clients| {
            if clients.iter().any(|c| c.client_id == client.client_id) {
                return Err(StoreError::Duplicate);
            }
            clients.push(client.clone());
            Ok(Step::Write(()))
        })
        .await
    }

    async fn client_by_id(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        Ok(self
            .read_list(&self.key().clients(), decode_clients)
            .await?
            .into_iter()
            .find(|c| c.client_id == client_id))
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        let mut clients = self.read_list(&self.key().clients(), decode_clients).await?;
        clients.sort_by(|a, b| (a.created_at, &a.client_id).cmp(&(b.created_at, &b.client_id)));
        Ok(clients)
    }

    async fn revoke_client(&self, client_id: &str, now: Timestamp) -> StoreResult<bool> {
        self.update_list(
            &self.key().clients(),
            decode_clients,
            encode_clients,
            |clients| match clients
                .iter_mut()
                .find(|c| c.client_id == client_id && c.revoked_at.is_none())
            {
                Some(c) => {
                    c.revoked_at = Some(now);
                    Ok(Step::Write(true))
                }
                None => Ok(Step::Answer(false)),
            },
        )
        .await
    }
}

/// The lease `holder` takes at `now` for `ttl`: its expiry and the value
/// stored.
fn lease_value(holder: &str, ttl: Duration, now: Timestamp) -> StoreResult<(Timestamp, Vec<u8>)> {
    let until = now.plus_millis(ttl_millis(ttl));
    let value = encode(
        "lease",
        &WireLease {
            holder: holder.to_owned(),
            expires_at: until.unix_millis(),
        },
    )?;
    Ok((until, value))
}

#[async_trait]
impl LeaseStore for MemcachedStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let key = self.key().lease(name);
        let (until, value) = lease_value(holder, ttl, now)?;
        let item_ttl = ttl_secs(secs_until(until, now));
        loop {
            let Some(item) = self.conn().get(&key).await? else {
                if self.conn().add(&key, &value, item_ttl).await? {
                    return Ok(true);
                }
                continue;
            };
            let cur: WireLease = decode("lease", &item.value)?;
            if cur.holder != holder && now.unix_millis() < cur.expires_at {
                return Ok(false);
            }
            if self.conn().cas(&key, &value, item.cas, item_ttl).await? {
                return Ok(true);
            }
        }
    }

    async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let key = self.key().lease(name);
        let (until, value) = lease_value(holder, ttl, now)?;
        loop {
            let Some(item) = self.conn().get(&key).await? else {
                return Ok(false);
            };
            let cur: WireLease = decode("lease", &item.value)?;
            if cur.holder != holder || now.unix_millis() >= cur.expires_at {
                return Ok(false);
            }
            if self
                .conn()
                .cas(&key, &value, item.cas, ttl_secs(secs_until(until, now)))
                .await?
            {
                return Ok(true);
            }
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool> {
        let key = self.key().lease(name);
        loop {
            let Some(item) = self.conn().get(&key).await? else {
                return Ok(false);
            };
            let cur: WireLease = decode("lease", &item.value)?;
            if cur.holder != holder {
                return Ok(false);
            }
            if self.conn().delete_cas(&key, item.cas).await? {
                return Ok(true);
            }
        }
    }
}

#[async_trait]
impl ReplayStore for MemcachedStore {
    async fn use_once(&self, marker: &[u8; 32], expires_at: Timestamp, now: Timestamp) -> StoreResult<bool> {
        let key = self.key().marker(marker);
        let value = encode(
            "marker",
            &Expiry {
                expires_at: expires_at.unix_millis(),
            },
        )?;
        let ttl = ttl_secs(secs_until(expires_at, now));
        loop {
            if self.conn().add(&key, &value, ttl).await? {
                return Ok(true);
            }
            let Some(item) = self.conn().get(&key).await? else {
                continue;
            };
            let cur: Expiry = decode("marker", &item.value)?;
            if now.unix_millis() < cur.expires_at {
                return Ok(false);
            }
            // Expired on the caller's clock though memcached still has it.
            if self.conn().cas(&key, &value, item.cas, ttl).await? {
                return Ok(true);
            }
        }
    }

    /// Markers expire in memcached on their own (item TTL): nothing to do.
    async fn sweep_markers(&self, _now: Timestamp, _batch: u32) -> StoreResult<u32> {
        Ok(0)
    }
}

/// Longest relative TTL memcached takes (30 days); a counter never needs more.
const MAX_COUNTER_TTL: i64 = 30 * 24 * 3600;

#[async_trait]
impl RateLimitStore for MemcachedStore {
    async fn add_hits(
        &self,
        key: &[u8; 32],
        window: u64,
        hits: u64,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<WindowTotals> {
        let ttl = u32::try_from(secs_until(expires_at, now).min(MAX_COUNTER_TTL)).unwrap_or(1);
        let current = self
            .conn()
            .incr_or_create(&self.key().counter(key, window), hits, ttl)
            .await?;
        let previous = match window.checked_sub(1) {
            Some(w) => self
                .conn()
                .get(&self.key().counter(key, w))
                .await?
                .and_then(|i| std::str::from_utf8(&i.value).ok()?.trim().parse::<u64>().ok())
                .unwrap_or(0),
            None => 0,
        };
        Ok(WindowTotals { current, previous })
    }

    /// Counters expire in memcached on their own (item TTL): nothing to do.
    async fn sweep_counters(&self, _now: Timestamp, _batch: u32) -> StoreResult<u32> {
        Ok(0)
    }
}

#[async_trait]
impl StoreHealth for MemcachedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.conn().ping().await
    }
}
