//! The revocation set and the follower of the service's revocation feed
//! (`GET /v1/revocations?after=CURSOR&wait=SECS`, CONTRACTS "Stateless
//! tokens").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::jwks::read_capped;
use super::{Inner, read, write};

/// A feed page larger than this is refused (and retried).
const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// When a long-poll comes back empty this fast, pause a little so that a
/// server that ignores `wait` cannot make us spin.
const MIN_EMPTY_POLL: Duration = Duration::from_millis(100);
/// A malformed `until` is kept this long (fail safe: refuse rather than forget).
const UNPARSABLE_UNTIL_SECS: i64 = 24 * 3600;

/// Revoked session handles → the Unix time until which their access tokens
/// could still be valid. `epoch` increases after every addition, so a cached
/// token checked against epoch `e` needs no lookup while the epoch is still `e`.
#[derive(Default)]
pub(crate) struct RevocationSet {
    map: RwLock<HashMap<Box<str>, i64>>,
    epoch: AtomicU64,
}

impl RevocationSet {
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn is_revoked(&self, sid: &str) -> bool {
        let map = read(&self.map);
        !map.is_empty() && map.contains_key(sid)
    }

    /// Adds revocations and drops those whose `until` is before `now`. The
    /// epoch moves after the insertions are visible.
    pub(crate) fn insert_many(&self, items: impl IntoIterator<Item = (String, i64)>, now: i64) {
        let mut added = false;
        {
            let mut map = write(&self.map);
            for (sid, until) in items {
                if until < now {
                    continue;
                }
                let slot = map.entry(sid.into_boxed_str()).or_insert(until);
                *slot = (*slot).max(until);
                added = true;
            }
            map.retain(|_, until| *until >= now);
        }
        if added {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn prune(&self, now: i64) {
        write(&self.map).retain(|_, until| *until >= now);
    }

    pub(crate) fn len(&self) -> usize {
        read(&self.map).len()
    }
}

#[derive(Deserialize)]
struct Page {
    revocations: Vec<Item>,
    #[serde(default)]
    next: Option<String>,
    /// The answer stopped before the end of the log. Absent (a service
    /// older than paging): false.
    #[serde(default)]
    more: bool,
}

#[derive(Deserialize)]
struct Item {
    sid: String,
    until: String,
}

enum PollError {
    Transport(String),
    Status(u16),
    Body(String),
}

impl PollError {
    fn kind(&self) -> &'static str {
        match self {
            Self::Transport(_) => "transport",
            Self::Status(401 | 403) => "unauthorized",
            Self::Status(_) => "status",
            Self::Body(_) => "body",
        }
    }
}

impl std::fmt::Display for PollError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "request failed: {e}"),
            Self::Status(s) => write!(f, "answered HTTP {s}"),
            Self::Body(e) => write!(f, "unreadable answer: {e}"),
        }
    }
}

/// What one answer told the follower.
struct Polled {
    count: usize,
    next: Option<String>,
    more: bool,
}

/// The follower task: the snapshot (no `after`) and its further pages, then
/// long-polls from the returned cursor. The revocation set counts as in
/// sync (see `FeedState`) only after an answer that reached the end of the
/// log, so a snapshot of several pages is read whole first. Errors are
/// retried with a bounded exponential backoff; the set in hand stays, and
/// the verifier refuses tokens once it is older than the staleness bound
/// (at once on 401/403).
pub(crate) async fn run(inner: Arc<Inner>) {
    let Some(base) = inner.revocations_url.clone() else {
        tracing::warn!(
            "no revocations_url configured: revoked sessions' access tokens stay valid until they expire"
        );
        return;
    };
    let mut cursor: Option<String> = None;
    // The last answer said there is more: ask again at once, without `wait`.
    let mut more = false;
    let mut backoff = BACKOFF_START;
    loop {
        let started = Instant::now();
        let wait = cursor.is_some() && !more;
        match poll(&inner, &base, cursor.as_deref(), wait).await {
            Ok(page) => {
                backoff = BACKOFF_START;
                let advanced = page.next.is_some() && page.next != cursor;
                if let Some(next) = page.next {
                    cursor = Some(next);
                }
                // A `more` that does not move the cursor would loop: take it
                // as the end, and poll again after the pause below.
                more = page.more && advanced;
                if !more && inner.feed.mark_synced(inner.now()) {
                    tracing::info!(revoked = inner.revocations.len(), "revocation feed in sync");
                }
                if page.count == 0 && !more && started.elapsed() < MIN_EMPTY_POLL && cursor.is_some() {
                    tokio::time::sleep(MIN_EMPTY_POLL).await;
                }
            }
            Err(e) => {
                more = false;
                metrics::counter!(super::FEED_ERRORS, "kind" => e.kind()).increment(1);
                if let PollError::Status(400) = e {
                    // The cursor is no longer understood: start over with a snapshot.
                    cursor = None;
                }
                if matches!(e, PollError::Status(401 | 403)) {
                    backoff = BACKOFF_MAX;
                    if inner.feed.mark_unauthorized() {
                        tracing::error!(error = %e,
                            "the revocation feed refused the API key (wrong, revoked, or without the `revocations` scope); \
                             refusing every access token until it is accepted");
                    }
                } else {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "revocation feed unavailable; retrying");
                }
                inner.revocations.prune(inner.now() - inner.leeway);
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn poll(inner: &Inner, base: &url::Url, cursor: Option<&str>, wait: bool) -> Result<Polled, PollError> {
    let mut url = base.clone();
    let wait_secs = if wait { inner.feed_wait_secs } else { 0 };
    // Without a cursor: the snapshot's first page, which answers at once.
    if let Some(c) = cursor {
        let mut q = url.query_pairs_mut();
        q.append_pair("after", c);
        if wait {
            q.append_pair("wait", &wait_secs.to_string());
        }
    }
    let mut request = inner
        .http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(Duration::from_secs(wait_secs + 10));
    if let Some(key) = &inner.api_key {
        request = request.bearer_auth(key);
    }
    let response = request
        .send()
        .await
        .map_err(|e| PollError::Transport(e.without_url().to_string()))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(PollError::Status(response.status().as_u16()));
    }
    let body = read_capped(response, MAX_PAGE_BYTES)
        .await
        .map_err(|e| PollError::Body(e.to_string()))?
        .ok_or_else(|| PollError::Body("page too large".into()))?;
    let page: Page = serde_json::from_slice(&body).map_err(|e| PollError::Body(e.to_string()))?;
    let now = inner.now();
    let count = page.revocations.len();
    let items = page.revocations.into_iter().map(|item| {
        let until =
            match time::OffsetDateTime::parse(&item.until, &time::format_description::well_known::Rfc3339) {
                Ok(t) => t.unix_timestamp(),
                Err(_) => {
                    tracing::warn!("revocation with an unparsable `until`; keeping it for a day");
                    now + UNPARSABLE_UNTIL_SECS
                }
            };
        // Keep each entry for our leeway past `until` too, in case our clock
        // runs behind the issuer's.
        (item.sid, until.saturating_add(inner.leeway))
    });
    inner.revocations.insert_many(items, now);
    let next = page.next.filter(|n| !n.is_empty() && n.len() <= 128);
    Ok(Polled {
        count,
        next,
        more: page.more,
    })
}

/// Up to +25 % of `d`, from the clock's sub-second noise (no RNG needed).
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d + d.mul_f64(f64::from(nanos % 1000) / 4000.0)
}
