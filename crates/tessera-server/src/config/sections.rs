//! The plain sections (`[session]`, `[http]`, `[sweeper]`, `[events]`,
//! `[sqlite]`, `[forward_auth]`) with their defaults. `[cookie]` is
//! `tessera_http`'s `CookieConfig`.

use serde::{Deserialize, Serialize};
use tessera_core::SessionPolicy;
use tessera_http::csrf::CsrfPolicy;

use super::Synchronous;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    pub idle_timeout_secs: i64,
    pub absolute_timeout_secs: i64,
    pub max_idle_timeout_secs: i64,
    pub max_absolute_timeout_secs: i64,
    /// 0 = unlimited.
    pub max_sessions_per_subject: u32,
    pub max_data_bytes: usize,
    pub touch_interval_secs: i64,
    pub max_auth_level: u8,
}

impl Default for SessionConfig {
    fn default() -> Self {
        let p = SessionPolicy::default();
        Self {
            idle_timeout_secs: p.idle_timeout_secs,
            absolute_timeout_secs: p.absolute_timeout_secs,
            max_idle_timeout_secs: p.max_idle_timeout_secs,
            max_absolute_timeout_secs: p.max_absolute_timeout_secs,
            max_sessions_per_subject: p.max_sessions_per_subject.unwrap_or(0),
            max_data_bytes: p.max_data_bytes,
            touch_interval_secs: p.touch_interval_secs,
            max_auth_level: p.max_auth_level,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub request_timeout_secs: u64,
    pub api_key_cache_secs: u64,
    /// A connection that has not sent a whole request head in this time is
    /// closed (slowloris); also the idle limit of a keep-alive connection.
    pub header_read_timeout_secs: u64,
    /// Open connections at most; beyond, the listener stops accepting.
    pub max_connections: usize,
    /// Requests in progress at most; beyond, 503 `overloaded` at once.
    pub max_in_flight: usize,
}

/// The longest `[http] header_read_timeout_secs` accepted: a slow client
/// may hold a connection slot at most this long without sending anything.
pub const MAX_HEADER_READ_TIMEOUT_SECS: u64 = 30;

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            request_timeout_secs: 30,
            api_key_cache_secs: 5,
            header_read_timeout_secs: 10,
            max_connections: 4096,
            max_in_flight: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweeperConfig {
    pub interval_secs: u64,
    pub batch_size: u32,
}

impl Default for SweeperConfig {
    fn default() -> Self {
        Self {
            interval_secs: 60,
            batch_size: 500,
        }
    }
}

/// `[events]`: the audit log's retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events older than this many days are deleted by the sweeper; `0`
    /// keeps them forever. Revocations whose access tokens may still be
    /// valid are kept whatever this says.
    pub retention_days: u32,
}

/// The longest retention that is not "forever": 100 years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

impl Default for EventsConfig {
    fn default() -> Self {
        Self { retention_days: 90 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    pub synchronous: Synchronous,
}

/// `[forward_auth]`: the CSRF policy of `GET /auth/verify` (for the proxied
/// request) and `POST /auth/logout`, judged by `tessera_http::csrf`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardAuthConfig {
    /// Origins (`https://app.example`) trusted for state-changing cookie
    /// requests that carry no `Sec-Fetch-Site`. When any is listed, only
    /// these are: the request's own origin is no longer accepted unless
    /// listed. Never widens `same-site` or `cross-site`.
    pub allowed_origins: Vec<String>,
    /// Accept `Sec-Fetch-Site: same-site` for state-changing requests from any origin.
    pub allow_same_site: bool,
    /// The header in which the proxy forwards the client's TLS certificate
    /// (PEM, URL-encoded or not; nginx `$ssl_client_escaped_cert`), for
    /// certificate-bound access tokens. Unset: such tokens are refused at
    /// `/auth/verify`. The proxy must set (overwrite) it on every request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_header: Option<String>,
}

impl ForwardAuthConfig {
    /// The policy for a request. The service sits behind the proxy that
    /// sets `X-Forwarded-Host` and `X-Forwarded-Proto` (SPEC §4.2), so they
    /// are believed.
    pub fn policy(&self) -> CsrfPolicy<'_> {
        CsrfPolicy {
            allowed_origins: &self.allowed_origins,
            allow_same_site: self.allow_same_site,
            trust_forwarded_headers: true,
        }
    }
}
