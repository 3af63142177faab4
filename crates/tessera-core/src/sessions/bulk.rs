//! Many sessions at once: a subject's list and sign-out-everywhere, the
//! revocation of everyone, the active count, and the sweep of expired ones.

use std::sync::Arc;

use super::Sessions;
use super::validate::validate_subject;
use crate::error::{Error, Result};
use crate::model::{RevokeReason, SessionRecord};
use crate::secret::{self, SESSION_HANDLE_PREFIX};

impl Sessions {
    /// The subject's active sessions, newest first.
    pub async fn list(&self, subject: &str) -> Result<Vec<Arc<SessionRecord>>> {
        let subject = validate_subject(subject)?;
        let now = self.clock.now();
        let mut all: Vec<_> = self
            .store
            .list_by_subject(subject)
            .await?
            .into_iter()
            .filter(|s| s.is_active(now))
            .collect();
        all.sort_by(|a, b| (b.created_at, &b.handle).cmp(&(a.created_at, &a.handle)));
        Ok(all)
    }

    /// Revokes every active session of the subject except `except` ("sign
    /// out everywhere", password change, account deletion).
    pub async fn revoke_all(
        &self,
        subject: &str,
        except: Option<&str>,
        reason: RevokeReason,
    ) -> Result<usize> {
        let subject = validate_subject(subject)?;
        // A mistyped `except` must not silently sign the caller out too.
        if let Some(e) = except
            && !secret::is_id(SESSION_HANDLE_PREFIX, e)
        {
            return Err(Error::invalid("except", "must be a session handle (ses_…)"));
        }
        let revoked = self
            .store
            .revoke_subject(subject, except, reason, self.clock.now())
            .await?;
        Ok(revoked.len())
    }

    /// Revokes every active session of every subject (EX-09: after a breach
    /// or a signing-secret leak), in batches so requests interleave.
    pub async fn revoke_everyone(&self, reason: RevokeReason, batch: u32) -> Result<u64> {
        let batch = batch.max(1);
        let mut total = 0u64;
        loop {
            let n = self
                .store
                .revoke_all_active(reason, self.clock.now(), batch)
                .await?;
            total += u64::from(n);
            if n < batch {
                return Ok(total);
            }
            tokio_yield().await;
        }
    }

    /// How many sessions are active now.
    pub async fn count_active(&self) -> Result<u64> {
        Ok(self.store.count_active(self.clock.now()).await?)
    }

    /// Deletes expired sessions in batches of `batch`; returns how many went.
    /// Each batch is its own store call, so requests interleave with a sweep.
    pub async fn sweep(&self, batch: u32) -> Result<u64> {
        let mut total = 0u64;
        loop {
            let n = self.store.sweep(self.clock.now(), batch).await?;
            total += u64::from(n);
            if n < batch {
                return Ok(total);
            }
            tokio_yield().await;
        }
    }
}

/// Yields to the scheduler between sweep batches without depending on a
/// particular runtime.
pub(crate) async fn tokio_yield() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}
