//! [`LeaseStore`], [`ReplayStore`], [`RateLimitStore`] and [`StoreHealth`] on
//! Redis.

use super::*;

#[async_trait]
impl LeaseStore for RedisStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.lease("acquire", name, holder, ttl, now).await
    }

    async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.lease("renew", name, holder, ttl, now).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool> {
        self.lease(
            "release",
            name,
            holder,
            std::time::Duration::ZERO,
            Timestamp::from_unix_millis(0),
        )
        .await
    }
}

#[async_trait]
impl ReplayStore for RedisStore {
    async fn use_once(&self, marker: &[u8; 32], expires_at: Timestamp, now: Timestamp) -> StoreResult<bool> {
        let mut inv = SCRIPTS.use_once.prepare_invoke();
        inv.key(self.key(layout::MARKER, marker))
            .arg(millis(expires_at))
            .arg(millis(now));
        Ok(int(self.run(&inv).await?, "use_once")? == 1)
    }

    /// Redis drops expired markers by their key TTL; there is nothing to
    /// sweep.
    async fn sweep_markers(&self, _now: Timestamp, _batch: u32) -> StoreResult<u32> {
        Ok(0)
    }
}

#[async_trait]
impl RateLimitStore for RedisStore {
    async fn add_hits(
        &self,
        key: &[u8; 32],
        window: u64,
        hits: u64,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<WindowTotals> {
        let mut inv = SCRIPTS.add_hits.prepare_invoke();
        inv.key(self.key(layout::COUNTER, key))
            .arg(window)
            .arg(hits)
            .arg(millis(expires_at))
            .arg(millis(now));
        let counts = match self.run(&inv).await? {
            Value::Array(v) if v.len() == 2 => v,
            other => {
                return Err(StoreError::Corrupt(format!("add_hits answered {other:?}")));
            }
        };
        let count = |v: &Value| match v {
            Value::Int(n) => Ok(u64::try_from(*n).unwrap_or(0)),
            other => Err(StoreError::Corrupt(format!("add_hits answered {other:?}"))),
        };
        Ok(WindowTotals {
            current: count(&counts[0])?,
            previous: count(&counts[1])?,
        })
    }

    /// Redis drops idle counters by their key TTL; there is nothing to
    /// sweep.
    async fn sweep_counters(&self, _now: Timestamp, _batch: u32) -> StoreResult<u32> {
        Ok(0)
    }
}

#[async_trait]
impl StoreHealth for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        match self.cmd(&redis::cmd("PING")).await? {
            Value::SimpleString(s) if s == "PONG" => Ok(()),
            Value::BulkString(b) if b == b"PONG" => Ok(()),
            other => Err(StoreError::Unavailable(format!(
                "redis answered PING with {other:?}"
            ))),
        }
    }
}

impl RedisStore {
    async fn lease(
        &self,
        op: &str,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut inv = SCRIPTS.lease.prepare_invoke();
        inv.key(self.key(layout::LEASE, name.as_bytes()))
            .arg(op)
            .arg(holder.as_bytes())
            .arg(millis(now))
            .arg(tessera_core::store::ttl_millis(ttl));
        Ok(int(self.run(&inv).await?, "lease")? == 1)
    }
}
