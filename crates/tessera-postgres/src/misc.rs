//! Leases, single-use markers, rate-limit counters and the health probe:
//! each one statement, atomic on its own.

use std::time::Duration;

use async_trait::async_trait;
use tessera_core::store::{WindowTotals, ttl_millis};
use tessera_core::{LeaseStore, RateLimitStore, ReplayStore, StoreHealth, StoreResult, Timestamp};

use crate::codec::col;
use crate::{PostgresStore, count32, execute, query_one, with_client};

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let now = now.unix_millis();
        let until = now.saturating_add(ttl_millis(ttl));
        // An expired row is taken over in place; a live one of another
        // holder leaves the upsert's WHERE false and nothing changes. Of
        // concurrent upserts of one name PostgreSQL runs one at a time.
        with_client!(self, |c| {
            execute(
                c,
                "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $4) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= $3",
                &[&name, &holder, &now, &until],
            )
            .await?
                > 0
        })
    }

    async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let now = now.unix_millis();
        let until = now.saturating_add(ttl_millis(ttl));
        with_client!(self, |c| {
            execute(
                c,
                "UPDATE leases SET expires_at = $4 WHERE name = $1 AND holder = $2 AND expires_at > $3",
                &[&name, &holder, &now, &until],
            )
            .await?
                > 0
        })
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool> {
        with_client!(self, |c| {
            execute(
                c,
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await?
                > 0
        })
    }
}

#[async_trait]
impl ReplayStore for PostgresStore {
    async fn use_once(&self, marker: &[u8; 32], expires_at: Timestamp, now: Timestamp) -> StoreResult<bool> {
        let marker = marker.as_slice();
        with_client!(self, |c| {
            execute(
                c,
                "INSERT INTO used_markers (marker, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (marker) DO UPDATE SET expires_at = excluded.expires_at \
                 WHERE used_markers.expires_at <= $3",
                &[&marker, &expires_at.unix_millis(), &now.unix_millis()],
            )
            .await?
                > 0
        })
    }

    async fn sweep_markers(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        let n = with_client!(self, |c| {
            execute(
                c,
                "DELETE FROM used_markers WHERE marker IN \
                     (SELECT marker FROM used_markers WHERE expires_at <= $1 LIMIT $2) \
                 AND expires_at <= $1",
                &[&now.unix_millis(), &i64::from(batch)],
            )
            .await?
        })?;
        Ok(count32(n))
    }
}

#[async_trait]
impl RateLimitStore for PostgresStore {
    async fn add_hits(
        &self,
        key: &[u8; 32],
        window: u64,
        hits: u64,
        expires_at: Timestamp,
        _now: Timestamp,
    ) -> StoreResult<WindowTotals> {
        // Signed in the database; no window number or count comes near 2^63.
        let w = i64::try_from(window).unwrap_or(i64::MAX);
        let hits = i64::try_from(hits).unwrap_or(i64::MAX);
        let key = key.as_slice();
        let (current, previous): (i64, i64) = with_client!(self, |c| {
            let row = query_one(
                c,
                "WITH up AS (INSERT INTO rate_counters (key, window_no, hits, expires_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (key, window_no) DO UPDATE \
                         SET hits = rate_counters.hits + excluded.hits, \
                             expires_at = GREATEST(rate_counters.expires_at, excluded.expires_at) \
                     RETURNING hits) \
                 SELECT (SELECT hits FROM up), \
                     coalesce((SELECT hits FROM rate_counters WHERE key = $1 AND window_no = $5), 0::bigint)",
                &[&key, &w, &hits, &expires_at.unix_millis(), &w.saturating_sub(1)],
            )
            .await?;
            (col(&row, 0, "hits")?, col(&row, 1, "previous hits")?)
        })?;
        Ok(WindowTotals {
            current: u64::try_from(current).unwrap_or(0),
            previous: u64::try_from(previous).unwrap_or(0),
        })
    }

    async fn sweep_counters(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        let n = with_client!(self, |c| {
            execute(
                c,
                "DELETE FROM rate_counters WHERE (key, window_no) IN \
                     (SELECT key, window_no FROM rate_counters WHERE expires_at <= $1 LIMIT $2) \
                 AND expires_at <= $1",
                &[&now.unix_millis(), &i64::from(batch)],
            )
            .await?
        })?;
        Ok(count32(n))
    }
}

#[async_trait]
impl StoreHealth for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        self.ping_db().await
    }
}
