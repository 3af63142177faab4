//! The memory store's leases: one process, so they only order the tasks
//! of that process, as the contract says.

use std::time::Duration;

use super::*;
use crate::store::{LeaseStore, ttl_millis};

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut g = self.write();
        if let Some((h, until)) = g.leases.get(name)
            && h != holder
            && now < *until
        {
            return Ok(false);
        }
        g.leases.insert(
            name.to_owned(),
            (holder.to_owned(), now.plus_millis(ttl_millis(ttl))),
        );
        Ok(true)
    }

    async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut g = self.write();
        match g.leases.get_mut(name) {
            Some((h, until)) if h == holder && now < *until => {
                *until = now.plus_millis(ttl_millis(ttl));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool> {
        let mut g = self.write();
        if g.leases.get(name).is_some_and(|(h, _)| h == holder) {
            g.leases.remove(name);
            return Ok(true);
        }
        Ok(false)
    }
}
