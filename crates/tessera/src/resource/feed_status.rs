//! Where the revocation feed stands: [`FeedStatus`], its metrics, the
//! follower's progress as verification reads it, the fail-closed check every
//! verification starts with, and the [`Verifier`]'s feed methods.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

#[cfg(doc)]
use super::VerifierConfig;
use super::{Inner, Verifier, VerifyError, feed};

/// Where the revocation feed stands; see "fail closed" in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedStatus {
    /// No `revocations_url`: revocation is not checked.
    NotConfigured,
    /// No complete snapshot read yet: tokens are refused (unless
    /// [`VerifierConfig::accept_when_feed_stale`]).
    Syncing,
    /// In sync within [`VerifierConfig::feed_max_staleness`].
    InSync,
    /// Out of sync for longer than the bound: tokens are refused (unless
    /// [`VerifierConfig::accept_when_feed_stale`]).
    Stale,
    /// The feed refused the API key (401/403): tokens are refused.
    Unauthorized,
}

impl FeedStatus {
    /// The `reason` label of [`FEED_REFUSALS`].
    pub fn label(self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::InSync => "in_sync",
            Self::Syncing => "not_synced",
            Self::Stale => "stale",
            Self::Unauthorized => "unauthorized",
        }
    }
}

/// Tokens refused because the revocation set is not current, by `reason`
/// ([`FeedStatus::label`]).
pub const FEED_REFUSALS: &str = "tessera_resource_feed_refusals_total";
/// Failed polls of the revocation feed, by `kind` (`transport`, `status`,
/// `unauthorized`, `body`).
pub const FEED_ERRORS: &str = "tessera_resource_feed_errors_total";

/// `synced_at` before the first complete snapshot.
const NEVER: i64 = i64::MIN;

/// The follower's progress, as the verification path reads it.
pub(crate) struct FeedState {
    configured: bool,
    max_staleness_secs: i64,
    accept_stale: bool,
    /// Clock seconds of the last answer that left the follower at the end of
    /// the log (`more: false`), or [`NEVER`].
    synced_at: AtomicI64,
    /// The last poll was answered 401/403.
    unauthorized: AtomicBool,
    /// The current not-in-sync period has been logged.
    reported: AtomicBool,
    synced: tokio::sync::Notify,
}

impl FeedState {
    pub(super) fn new(configured: bool, max_staleness: Duration, accept_stale: bool) -> Self {
        Self {
            configured,
            max_staleness_secs: i64::try_from(max_staleness.as_secs()).unwrap_or(i64::MAX),
            accept_stale,
            synced_at: AtomicI64::new(NEVER),
            unauthorized: AtomicBool::new(false),
            reported: AtomicBool::new(false),
            synced: tokio::sync::Notify::new(),
        }
    }

    #[inline]
    fn status(&self, now: i64) -> FeedStatus {
        if !self.configured {
            return FeedStatus::NotConfigured;
        }
        if self.unauthorized.load(Ordering::Acquire) {
            return FeedStatus::Unauthorized;
        }
        match self.synced_at.load(Ordering::Acquire) {
            NEVER => FeedStatus::Syncing,
            at if now.saturating_sub(at) > self.max_staleness_secs => FeedStatus::Stale,
            _ => FeedStatus::InSync,
        }
    }

    pub(crate) fn is_synced(&self) -> bool {
        self.synced_at.load(Ordering::Acquire) != NEVER
    }

    /// The follower read to the end of the log at `now`. Returns whether
    /// this is the first time, or ends a period the verifier reported.
    pub(crate) fn mark_synced(&self, now: i64) -> bool {
        let first = self.synced_at.swap(now, Ordering::AcqRel) == NEVER;
        let was_unauthorized = self.unauthorized.swap(false, Ordering::AcqRel);
        let was_reported = self.reported.swap(false, Ordering::AcqRel);
        self.synced.notify_waiters();
        first || was_unauthorized || was_reported
    }

    /// The feed answered 401/403. Returns whether this starts such a period.
    pub(crate) fn mark_unauthorized(&self) -> bool {
        !self.unauthorized.swap(true, Ordering::AcqRel)
    }
}

impl Inner {
    /// The fail-closed check, before anything else of a verification.
    #[inline]
    pub(crate) fn check_feed(&self) -> Result<(), VerifyError> {
        if !self.feed.configured {
            return Ok(());
        }
        match self.feed.status(self.now()) {
            FeedStatus::InSync => Ok(()),
            other => self.feed_not_current(other),
        }
    }

    #[cold]
    fn feed_not_current(&self, status: FeedStatus) -> Result<(), VerifyError> {
        let accept = self.feed.accept_stale && status != FeedStatus::Unauthorized;
        if !self.feed.reported.swap(true, Ordering::AcqRel) {
            if accept {
                tracing::warn!(
                    status = status.label(),
                    "revocation feed not in sync; accepting access tokens with the last known revocation set (accept_when_feed_stale)"
                );
            } else {
                tracing::error!(
                    status = status.label(),
                    "revocation feed not in sync; refusing every access token until it is (fail closed)"
                );
            }
        }
        if accept {
            return Ok(());
        }
        metrics::counter!(FEED_REFUSALS, "reason" => status.label()).increment(1);
        Err(VerifyError::RevocationStatusUnavailable)
    }
}

impl Verifier {
    /// Follows the revocation feed (`GET {revocations_url}?after=CURSOR&wait=…`
    /// with the API key) until the task is aborted: first every page of the
    /// snapshot, then long-polls. Without a configured `revocations_url` the
    /// task logs a warning and ends at once. With one, tokens are refused
    /// until this task has read the first complete snapshot.
    ///
    /// # Panics
    ///
    /// Like `tokio::spawn`, when called outside a Tokio runtime.
    pub fn spawn_feed(&self) -> tokio::task::JoinHandle<()> {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(feed::run(inner))
    }

    /// Whether the revocation set is current: [`FeedStatus::InSync`].
    pub fn feed_healthy(&self) -> bool {
        self.feed_status() == FeedStatus::InSync
    }

    /// Where the revocation feed stands now.
    pub fn feed_status(&self) -> FeedStatus {
        self.inner.feed.status(self.inner.now())
    }

    /// Resolves once the follower has read a complete snapshot of the feed
    /// (at once if it already has, or if no feed is configured). Start
    /// serving after it, or gate a readiness probe on
    /// [`Verifier::feed_healthy`], so the first requests are not refused.
    pub async fn feed_synced(&self) {
        loop {
            let notified = self.inner.feed.synced.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.inner.feed.configured || self.inner.feed.is_synced() {
                return;
            }
            notified.await;
        }
    }
}
