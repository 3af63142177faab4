//! The revocation feed (SPEC §4.4, CONTRACTS "Stateless tokens"):
//! `GET /v1/revocations?after=CURSOR&wait=SECS`.
//!
//! Resource servers verify access tokens locally; this feed tells them which
//! sessions (`sid`) were revoked, or which service clients (`client:<id>`:
//! their `client_credentials` tokens carry no `sid`), and until when their
//! access tokens could still be presented: `until` = revoked_at + access-token TTL + 60 s. It is
//! read from the event log (events of kind `revoked`), so it covers every
//! way a session ends early (logout, revoke-all, RFC 7009, reuse detection,
//! the per-subject limit, replacement at login) and every process sharing
//! the store.
//!
//! Every answer is `{"revocations": [...], "next": CURSOR, "more": BOOL}`,
//! at most [`PAGE`] revocations, in event order.
//!
//! - Without `after`: the first page of the **snapshot**, the revocations
//!   whose `until` is still ahead. It starts at the first revocation of that
//!   window, which the store finds from an index
//!   ([`EventStore::events_cursor_since`](tessera_core::EventStore)), so
//!   neither older events nor the rest of the log are read.
//! - With `after`: revocations after that event id; `next` is the last
//!   event id looked at, so entries whose `until` has passed are skipped
//!   once, not rescanned. With `wait` (1–30 s) and nothing new, the request
//!   waits until a revocation arrives or the time is up: it wakes at once
//!   when this process revokes through the OAuth endpoints and otherwise
//!   checks the store every 200 ms (revocations made by other processes or
//!   by the backend API), so an answer follows a revocation within about
//!   250 ms. An empty answer has `next` = `after` (or later, past skipped
//!   entries).
//! - `more: true` says the answer stopped before the end of the log (a full
//!   page, or a long run of expired entries): the client asks again at once
//!   with `after=next` (no `wait` needed: such an answer never waits).
//!   A follower is in sync only after an answer with `more: false`. Clients
//!   that ignore `more` still get everything, a page per long-poll (a
//!   long-poll answers at once while there is something after its cursor).

use std::time::Duration;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use tessera_core::events::RevocationPage;
use tokio::time::Instant;

use crate::app::AppState;
use crate::extract::Query;
use crate::problem::{ApiError, ApiResult};

/// Longest `wait`.
pub const MAX_WAIT_SECS: u64 = 30;
/// How often a waiting request looks at the store.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The most revocations in one answer (core reads the log in pages of this).
pub const PAGE: u32 = tessera_core::events::REVOCATION_PAGE;
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
    /// The answer stopped before the end of the log: ask again at once with
    /// `after=next`.
    pub more: bool,
}

#[utoipa::path(
    get,
    path = "/v1/revocations",
    operation_id = "revocation_feed",
    tag = "events",
    security(("api_key" = [])),
    params(
        ("after" = Option<String>, Query, pattern = "^([0-9]{1,20})?$", description = "The previous answer's `next` (a decimal u64 event id; empty counts as absent); without it, the snapshot of revocations still in force"),
        ("wait" = Option<u64>, Query, minimum = 0, maximum = 30, description = "With `after`: wait up to this many seconds for a revocation (long poll)"),
    ),
    responses(
        (status = 200, description = "Revoked sessions and until when their access tokens could still be presented", body = crate::openapi::schemas::RevocationPage),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::ApiKeyForbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ),
)]
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
    let page = match after {
        None => {
            let start = state
                .events
                .revocation_snapshot_start(state.sessions.now(), state.oauth.revocation_window_secs())
                .await?;
            scan(&state, start).await?
        }
        Some(after) => follow(&state, after, Duration::from_secs(wait)).await?,
    };
    Ok(axum::Json(FeedBody {
        revocations: page
            .revocations
            .into_iter()
            .map(|r| RevocationItem {
                sid: r.sid,
                revoked_at: r.revoked_at.to_rfc3339(),
                until: r.until.to_rfc3339(),
            })
            .collect(),
        next: page.next.to_string(),
        more: !page.complete,
    }))
}

/// The live revocations after `after` (core's rule, bounded per answer).
async fn scan(state: &AppState, after: u64) -> Result<RevocationPage, ApiError> {
    Ok(state
        .events
        .live_revocations(
            after,
            state.sessions.now(),
            state.oauth.revocation_window_secs(),
            MAX_PAGES,
        )
        .await?)
}

/// A follow-up request: answers as soon as there is something after the
/// cursor, or when `wait` is over.
async fn follow(state: &AppState, after: u64, wait: Duration) -> Result<RevocationPage, ApiError> {
    let deadline = Instant::now() + wait;
    let mut cursor = after;
    loop {
        // Registered before the store is read, so a revocation between the
        // read and the wait is not missed.
        let notified = state.oauth.revoked.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let page = scan(state, cursor).await?;
        cursor = page.next;
        let now = Instant::now();
        if !page.revocations.is_empty() || !page.complete || now >= deadline {
            return Ok(page);
        }
        let nap = POLL_INTERVAL.min(deadline - now);
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(nap) => {}
        }
    }
}
