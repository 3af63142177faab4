//! The revocation feed (SPEC §4.4, CONTRACTS "Stateless tokens"):
//! `GET /v1/revocations?after=CURSOR&wait=SECS`.
//!
//! Resource servers verify access tokens locally; this feed tells them which
//! sessions (`sid`) were revoked and until when their access tokens could
//! still be presented: `until` = revoked_at + access-token TTL + 60 s. It is
//! read from the event log (events of kind `revoked`), so it covers every
//! way a session ends early (logout, revoke-all, RFC 7009, reuse detection,
//! the per-subject limit, replacement at login) and every process sharing
//! the store.
//!
//! - Without `after`: every revocation whose `until` is still ahead, and the
//!   cursor to follow from.
//! - With `after`: revocations after that event id; `next` is the last
//!   event id looked at, so entries whose `until` has passed are skipped
//!   once, not rescanned. With `wait` (1–30 s) and nothing new, the request
//!   waits until a revocation arrives or the time is up: it wakes at once
//!   when this process revokes through the OAuth endpoints and otherwise
//!   checks the store every 200 ms (revocations made by other processes or
//!   by the backend API), so an answer follows a revocation within about
//!   250 ms. An empty answer has `next` = `after` (or later, past skipped
//!   entries).

use std::time::Duration;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use tessera_core::{EventKind, EventQuery};
use tokio::time::Instant;

use crate::app::AppState;
use crate::extract::Query;
use crate::problem::{ApiError, ApiResult};

/// Longest `wait`.
pub const MAX_WAIT_SECS: u64 = 30;
/// How often a waiting request looks at the store.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Events read per store call.
const PAGE: u32 = 1000;
/// Pages one follow-up request scans before answering, so a long run of
/// expired revocations cannot hold a request.
const MAX_PAGES: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub wait: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RevocationItem {
    pub sid: String,
    pub revoked_at: String,
    pub until: String,
}

#[derive(Debug, Serialize)]
pub struct FeedBody {
    pub revocations: Vec<RevocationItem>,
    pub next: String,
}

/// `GET /v1/revocations?after=CURSOR&wait=SECS`.
pub async fn feed(
    State(state): State<AppState>,
    Query(q): Query<FeedQuery>,
) -> ApiResult<axum::Json<FeedBody>> {
    let nonempty = |s: Option<String>| s.filter(|v| !v.is_empty());
    let after = match nonempty(q.after) {
        Some(a) => Some(a.parse::<u64>().map_err(|_| {
            ApiError::validation("after: must be a decimal event id (a `next` of this feed)")
        })?),
        None => None,
    };
    let wait = match nonempty(q.wait) {
        Some(w) => w
            .parse::<u64>()
            .ok()
            .filter(|w| *w <= MAX_WAIT_SECS)
            .ok_or_else(|| {
                ApiError::validation(format!("wait: must be an integer from 0 to {MAX_WAIT_SECS}"))
            })?,
        None => 0,
    };
    // Answer before the request timeout cuts the long-poll off.
    let wait = wait.min(state.config.http.request_timeout_secs.saturating_sub(2));
    let (revocations, next) = match after {
        None => {
            let (items, next, _) = scan(&state, 0, None).await?;
            (items, next)
        }
        Some(after) => follow(&state, after, Duration::from_secs(wait)).await?,
    };
    Ok(axum::Json(FeedBody {
        revocations,
        next: next.to_string(),
    }))
}

/// Revocations after `after` whose `until` is ahead, the last event id
/// looked at, and whether the log was read to its end. Without `max_pages`
/// it reads to the end: an O(n) scan of the `revoked` events, fine while the
/// sweeper-less event log stays modest; a time index would bound it.
async fn scan(
    state: &AppState,
    after: u64,
    max_pages: Option<usize>,
) -> Result<(Vec<RevocationItem>, u64, bool), ApiError> {
    let now = state.sessions.now();
    let mut cursor = after;
    let mut items = Vec::new();
    let mut pages = 0usize;
    loop {
        let page = state
            .store
            .events(&EventQuery {
                kind: Some(EventKind::Revoked),
                after: cursor,
                limit: PAGE,
                ..EventQuery::default()
            })
            .await?;
        let full = page.len() >= PAGE as usize;
        for e in page {
            cursor = cursor.max(e.id);
            let until = state.oauth.revocation_until(e.event.at);
            if until > now {
                items.push(RevocationItem {
                    sid: e.event.handle,
                    revoked_at: e.event.at.to_rfc3339(),
                    until: until.to_rfc3339(),
                });
            }
        }
        pages += 1;
        if !full {
            return Ok((items, cursor, true));
        }
        if max_pages.is_some_and(|m| pages >= m || !items.is_empty()) {
            return Ok((items, cursor, false));
        }
    }
}

/// A follow-up request: answers as soon as there is something after the
/// cursor, or when `wait` is over.
async fn follow(
    state: &AppState,
    after: u64,
    wait: Duration,
) -> Result<(Vec<RevocationItem>, u64), ApiError> {
    let deadline = Instant::now() + wait;
    let mut cursor = after;
    loop {
        // Registered before the store is read, so a revocation between the
        // read and the wait is not missed.
        let notified = state.oauth.revoked.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (items, next, complete) = scan(state, cursor, Some(MAX_PAGES)).await?;
        cursor = next;
        let now = Instant::now();
        if !items.is_empty() || !complete || now >= deadline {
            return Ok((items, cursor));
        }
        let nap = POLL_INTERVAL.min(deadline - now);
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(nap) => {}
        }
    }
}
