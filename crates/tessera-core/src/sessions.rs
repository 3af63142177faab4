//! The session life cycle: the one place where its rules live.

mod bulk;
mod input;
mod lifecycle;
mod validate;

use std::sync::Arc;

use crate::policy::SessionPolicy;
use crate::store::SessionStore;
use crate::time::{Clock, Timestamp};

pub(crate) use bulk::tokio_yield;
pub use input::{AuthInput, CreateSession, DeviceInput, IssuedSession, TtlInput};
pub use validate::{MAX_SUBJECT_BYTES, MAX_USER_AGENT_BYTES, merge_patch, validate_subject};

/// The session core: every face (service, library) goes through this.
///
/// It needs only the [`SessionStore`] capability. The audit log the
/// session writes append to is read through [`EventLog`](crate::EventLog).
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    policy: Arc<SessionPolicy>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    pub fn new(store: Arc<dyn SessionStore>, clock: Arc<dyn Clock>, policy: SessionPolicy) -> Self {
        Self {
            store,
            clock,
            policy: Arc::new(policy),
        }
    }

    /// The store itself, for tests and tools that inspect records; the
    /// faces go through the methods, which hold the rules.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}

#[cfg(test)]
mod tests;
