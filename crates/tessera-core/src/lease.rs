//! [`DutyLease`]: one process's claim on a cluster-wide duty.
//!
//! Several processes share one store; some work must still happen once:
//! adding the next signing key, sweeping expired sessions, deleting old
//! events, creating the bootstrap API key. Each such duty has a lease in
//! the store ([`LeaseStore`]). A process asks for it before doing the
//! duty and skips the duty when another holds it. Leadership is sticky:
//! the holder renews its lease on each round, so one process keeps a duty
//! while it lives (no two processes alternate, each redoing the other's
//! scan); when it dies, its lease runs out after the TTL and the next
//! process to ask takes over.
//!
//! The lease only decides who does the work; the work itself stays safe
//! to run twice (every step of it is a conditional, atomic store write),
//! since a holder can stall past its TTL (a long GC pause, a suspended
//! VM) while another takes over.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::secret::new_id;
use crate::store::{LeaseStore, StoreResult};
use crate::time::Clock;

/// A process's handle on the lease of one duty (see the module docs).
pub struct DutyLease {
    store: Arc<dyn LeaseStore>,
    clock: Arc<dyn Clock>,
    name: String,
    /// Random per handle: two handles never share a lease, even in one
    /// process.
    holder: String,
    ttl: Duration,
    /// Whether the last answer was "held", to log changes of hands once.
    held: AtomicBool,
}

impl fmt::Debug for DutyLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DutyLease")
            .field("name", &self.name)
            .field("holder", &self.holder)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl DutyLease {
    /// A handle on lease `name` with expiry `ttl`: longer than the time
    /// between two renewals by the holder (a few rounds of its duty), so a
    /// live holder keeps it, and as short as a takeover after a crash may
    /// take.
    pub fn new(store: Arc<dyn LeaseStore>, clock: Arc<dyn Clock>, name: &str, ttl: Duration) -> DutyLease {
        DutyLease {
            store,
            clock,
            name: name.to_owned(),
            holder: new_id("hld_"),
            ttl,
            held: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// This handle's holder id, as the store records it.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes the lease, or renews it if this handle holds it: whether this
    /// process is the one to do the duty now. On a store error the caller
    /// skips the duty (never does it without the lease).
    pub async fn hold(&self) -> StoreResult<bool> {
        let r = self
            .store
            .acquire_lease(&self.name, &self.holder, self.ttl, self.clock.now())
            .await;
        self.note(&r);
        r
    }

    /// Renews the lease only if this handle still holds it (a long duty
    /// checks in between its steps that it was not taken over).
    pub async fn renew(&self) -> StoreResult<bool> {
        let r = self
            .store
            .renew_lease(&self.name, &self.holder, self.ttl, self.clock.now())
            .await;
        self.note(&r);
        r
    }

    /// Gives the lease up (a graceful shutdown, a one-off duty done), so
    /// another process takes it at once rather than after the TTL.
    pub async fn release(&self) -> StoreResult<bool> {
        let r = self.store.release_lease(&self.name, &self.holder).await;
        if r.is_ok() {
            self.held.store(false, Ordering::Relaxed);
        }
        r
    }

    fn note(&self, r: &StoreResult<bool>) {
        let now = matches!(r, Ok(true));
        if self.held.swap(now, Ordering::Relaxed) != now {
            if now {
                tracing::info!(duty = %self.name, ttl_secs = self.ttl.as_secs(), "this process now does this cluster-wide duty");
            } else {
                tracing::info!(duty = %self.name, "another process does this cluster-wide duty now (or the store did not answer)");
            }
        }
    }
}

#[cfg(test)]
mod tests;
