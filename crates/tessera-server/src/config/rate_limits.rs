//! `[rate_limits]`: the abuse limits (GN-04) and their defaults.

use serde::{Deserialize, Serialize};
use tessera_core::ratelimit::Limit;

/// At most `requests` per `window_secs`; `requests = 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub requests: u64,
    pub window_secs: u32,
}

impl LimitConfig {
    pub const fn new(requests: u64, window_secs: u32) -> LimitConfig {
        LimitConfig {
            requests,
            window_secs,
        }
    }

    pub const fn limit(self) -> Limit {
        Limit::new(self.requests, self.window_secs)
    }

    /// `"600/60"`: requests per window in seconds (the env form).
    pub fn parse(v: &str) -> Result<LimitConfig, String> {
        let (n, w) = v
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("invalid value {v:?}: expected REQUESTS/WINDOW_SECS, e.g. 600/60"))?;
        let requests = n
            .trim()
            .parse()
            .map_err(|e| format!("invalid request count in {v:?}: {e}"))?;
        let window_secs = w
            .trim()
            .trim_end_matches('s')
            .parse()
            .map_err(|e| format!("invalid window in {v:?}: {e}"))?;
        Ok(LimitConfig {
            requests,
            window_secs,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Off: no limit is checked (for benchmarks and a deployment whose
    /// proxy already limits).
    pub enabled: bool,
    /// The header a trusted reverse proxy sets to the client's address
    /// (e.g. `x-forwarded-for`: its last entry is used, the one the proxy
    /// added). Empty: the TCP peer's address. Set it only behind a proxy
    /// that overwrites or appends to it, or clients pick their own address.
    pub client_ip_header: String,
    /// How often each process adds its counts to the store and learns the
    /// deployment's totals; across N processes a limit may be exceeded by
    /// what the others admit within one interval.
    pub sync_interval_ms: u64,
    /// Subjects counted in memory at most per process; past it newcomers
    /// share one counter per limit until idle ones are dropped.
    pub max_tracked: usize,
    /// Failed API-key attempts (a wrong, revoked or malformed key) per
    /// client address, on `/v1` and `/oauth2/introspect`. Over it, the
    /// address gets 429 for any API key that is not already known good.
    pub api_key_failures_per_ip: LimitConfig,
    /// Requests per API key on `/v1`.
    pub api_per_key: LimitConfig,
    /// `/oauth2/token`, `/oauth2/introspect` and `/oauth2/revoke` requests
    /// per client address that do not come from an authenticated
    /// confidential client: public clients' refreshes and failed client
    /// authentication.
    pub oauth_per_ip: LimitConfig,
    /// The same endpoints per authenticated confidential client.
    pub oauth_per_client: LimitConfig,
    /// `/auth/dbsc/register` and `/auth/dbsc/refresh` per client address.
    pub dbsc_per_ip: LimitConfig,
    /// `/auth/dbsc/refresh` per device-bound session.
    pub dbsc_per_session: LimitConfig,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            client_ip_header: String::new(),
            sync_interval_ms: 100,
            max_tracked: tessera_core::ratelimit::DEFAULT_MAX_ENTRIES,
            api_key_failures_per_ip: LimitConfig::new(20, 60),
            api_per_key: LimitConfig::new(200_000, 1),
            oauth_per_ip: LimitConfig::new(600, 60),
            oauth_per_client: LimitConfig::new(60_000, 60),
            dbsc_per_ip: LimitConfig::new(600, 60),
            dbsc_per_session: LimitConfig::new(30, 60),
        }
    }
}

/// The longest window accepted: a day.
pub const MAX_WINDOW_SECS: u32 = 86_400;

impl RateLimitsConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        let h = &self.client_ip_header;
        if !h.is_empty() && axum::http::HeaderName::try_from(h.as_str()).is_err() {
            return Err(format!(
                "[rate_limits] client_ip_header {h:?} is not a header name"
            ));
        }
        if !(10..=60_000).contains(&self.sync_interval_ms) {
            return Err("[rate_limits] sync_interval_ms must be from 10 to 60000".into());
        }
        if self.max_tracked == 0 {
            return Err("[rate_limits] max_tracked must be positive".into());
        }
        for (name, l) in self.limits() {
            if l.requests > 0 && !(1..=MAX_WINDOW_SECS).contains(&l.window_secs) {
                return Err(format!(
                    "[rate_limits] {name}: window_secs must be from 1 to {MAX_WINDOW_SECS}"
                ));
            }
        }
        Ok(())
    }

    /// Every limit by its key.
    pub fn limits(&self) -> [(&'static str, LimitConfig); 6] {
        [
            ("api_key_failures_per_ip", self.api_key_failures_per_ip),
            ("api_per_key", self.api_per_key),
            ("oauth_per_ip", self.oauth_per_ip),
            ("oauth_per_client", self.oauth_per_client),
            ("dbsc_per_ip", self.dbsc_per_ip),
            ("dbsc_per_session", self.dbsc_per_session),
        ]
    }
}
