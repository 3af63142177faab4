//! The abuse limits (GN-04, `[rate_limits]`): which requests count against
//! which limit, whose address a request comes from, and the background
//! task that shares the counts through the store. The counting itself is
//! `tessera_core::ratelimit`.
//!
//! | limit | counted | where |
//! |---|---|---|
//! | `api_key_failures_per_ip` | a presented API key that is not valid | `/v1` (edge), `/oauth2/introspect` |
//! | `api_per_key` | every request of an API key | `/v1` (edge) |
//! | `oauth_per_ip` | token, introspect, revoke requests not from an authenticated confidential client | OAuth handlers |
//! | `oauth_per_client` | the same, from an authenticated confidential client | OAuth handlers |
//! | `dbsc_per_ip` | DBSC register and refresh | DBSC handlers |
//! | `dbsc_per_session` | DBSC refresh, per bound session | DBSC handler |

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Extensions, HeaderMap, HeaderName};
use tessera_core::ratelimit::{Decision, RateLimiter, Rule};
use tessera_core::{Clock, RateLimitStore};

use crate::auth::{ApiKey, ApiKeys};
use crate::config::RateLimitsConfig;
use crate::problem::ApiError;

/// The TCP peer of the connection a request came on; the listener sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The rules of `[rate_limits]` and the limiter that counts them.
pub struct AbuseLimits {
    limiter: Arc<RateLimiter>,
    enabled: bool,
    client_ip_header: Option<HeaderName>,
    sync_interval: Duration,
    pub api_key_failures: Rule,
    pub api_per_key: Rule,
    pub oauth_per_ip: Rule,
    pub oauth_per_client: Rule,
    pub dbsc_per_ip: Rule,
    pub dbsc_per_session: Rule,
}

impl std::fmt::Debug for AbuseLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbuseLimits")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

const fn rule(name: &'static str, tag: u8, c: crate::config::LimitConfig) -> Rule {
    Rule {
        name,
        tag,
        limit: c.limit(),
    }
}

impl AbuseLimits {
    pub fn new(
        config: &RateLimitsConfig,
        store: Arc<dyn RateLimitStore>,
        clock: Arc<dyn Clock>,
    ) -> AbuseLimits {
        AbuseLimits {
            limiter: Arc::new(RateLimiter::new(store, clock).with_max_entries(config.max_tracked)),
            enabled: config.enabled,
            client_ip_header: Some(config.client_ip_header.as_str())
                .filter(|h| !h.is_empty())
                .and_then(|h| HeaderName::try_from(h).ok()),
            sync_interval: Duration::from_millis(config.sync_interval_ms),
            api_key_failures: rule("api_key_failures_per_ip", 1, config.api_key_failures_per_ip),
            api_per_key: rule("api_per_key", 2, config.api_per_key),
            oauth_per_ip: rule("oauth_per_ip", 3, config.oauth_per_ip),
            oauth_per_client: rule("oauth_per_client", 4, config.oauth_per_client),
            dbsc_per_ip: rule("dbsc_per_ip", 5, config.dbsc_per_ip),
            dbsc_per_session: rule("dbsc_per_session", 6, config.dbsc_per_session),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }

    /// Counts one request; `Err` (a 429 for the caller to shape) when over.
    pub fn check(&self, rule: &Rule, subject: &[u8]) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        judged(rule, self.limiter.check(rule, subject))
    }

    /// Whether one more would be over, counting nothing.
    pub fn peek(&self, rule: &Rule, subject: &[u8]) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        judged(rule, self.limiter.peek(rule, subject))
    }

    /// Counts a failed attempt.
    pub fn add(&self, rule: &Rule, subject: &[u8]) {
        if self.enabled {
            self.limiter.add(rule, subject);
        }
    }

    /// The address the limits count a request under: the configured
    /// proxy header's last entry (the one the nearest proxy added), else
    /// the TCP peer. IPv6 addresses count by their /64, the block one
    /// subscriber usually holds; the address is unknown only when the
    /// router is driven without the listener (tests), and then all such
    /// requests share one counter.
    pub fn client_ip(&self, headers: &HeaderMap, extensions: &Extensions) -> IpSubject {
        let from_header = self.client_ip_header.as_ref().and_then(|h| {
            let last = headers.get_all(h).iter().next_back()?;
            let text = last.to_str().ok()?;
            text.rsplit(',').next()?.trim().parse::<IpAddr>().ok()
        });
        let ip = from_header.or_else(|| extensions.get::<PeerAddr>().map(|p| p.0.ip()));
        IpSubject::of(ip)
    }

    /// The API key check with the failed-attempt limit around it: an
    /// address over the limit is refused before its key is looked at, and
    /// every presented key that is not valid counts.
    pub async fn authenticate_api_key(
        &self,
        keys: &ApiKeys,
        authorization: Option<&[u8]>,
        ip: &IpSubject,
    ) -> Result<Arc<ApiKey>, ApiError> {
        // A key known good from the cache skips the address check, so a
        // flood of bad guesses from a shared address (NAT) does not lock
        // out the clients behind it that hold a valid key.
        if let Some(key) = authorization.and_then(|v| keys.cached(v)) {
            return Ok(key);
        }
        self.peek(&self.api_key_failures, ip.as_bytes())?;
        match keys.authenticate(authorization).await {
            Err(e @ ApiError::Unauthorized(_)) => {
                if authorization.is_some() {
                    self.add(&self.api_key_failures, ip.as_bytes());
                }
                Err(e)
            }
            other => other,
        }
    }

    /// Shares the counts through the store every `sync_interval` and
    /// deletes nothing (the sweeper does); runs until the process ends.
    pub async fn sync_forever(self: Arc<Self>) {
        if !self.enabled {
            return;
        }
        let mut tick = tokio::time::interval(self.sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            match self.limiter.sync().await {
                Ok(()) => {
                    if failing {
                        tracing::info!("rate-limit counters reach the store again");
                    }
                    failing = false;
                }
                // The counts stay local meanwhile: each process still
                // enforces the limits on what it sees.
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "cannot share rate-limit counters through the store");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }
}

/// Over a limit: the rule's name and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub limit: &'static str,
    pub retry_after_secs: u64,
}

fn judged(rule: &Rule, d: Decision) -> Result<(), Limited> {
    match d {
        Decision::Allowed => Ok(()),
        Decision::Limited { retry_after_secs } => {
            crate::metrics::rate_limited(rule.name);
            Err(Limited {
                limit: rule.name,
                retry_after_secs,
            })
        }
    }
}

impl From<Limited> for ApiError {
    fn from(l: Limited) -> Self {
        ApiError::RateLimited {
            limit: l.limit,
            retry_after_secs: l.retry_after_secs,
        }
    }
}

/// A client address as a counter's subject: 16 bytes, IPv4 mapped, IPv6
/// cut to its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpSubject([u8; 16]);

impl IpSubject {
    fn of(ip: Option<IpAddr>) -> IpSubject {
        match ip {
            Some(IpAddr::V4(v4)) => IpSubject(v4.to_ipv6_mapped().octets()),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpSubject(v4.to_ipv6_mapped().octets()),
                None => {
                    let mut o = v6.octets();
                    o[8..].fill(0);
                    IpSubject(o)
                }
            },
            None => IpSubject([0; 16]),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests;
