//! The plain sections (`[session]`, `[cookie]`, `[http]`, `[sweeper]`,
//! `[events]`, `[sqlite]`, `[forward_auth]`) with their defaults, and the
//! check of a `[forward_auth] allowed_origins` entry.

use serde::{Deserialize, Serialize};
use tessera_core::SessionPolicy;

use super::{SameSiteConfig, Synchronous};

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
pub struct CookieConfig {
    pub name: String,
    /// false drops `Secure` and the `__Host-`/`__Secure-` prefix (plain-HTTP development).
    pub secure: bool,
    pub same_site: SameSiteConfig,
    /// `Max-Age` = time left to the absolute expiry; false = browser-session cookie.
    pub persistent: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: String::from("__Host-tessera"),
            secure: true,
            same_site: SameSiteConfig::Lax,
            persistent: true,
        }
    }
}

impl CookieConfig {
    /// The cookie name actually used: with `secure = false` the `__Host-` or
    /// `__Secure-` prefix is dropped, since browsers refuse such cookies
    /// without `Secure`.
    pub fn effective_name(&self) -> &str {
        if self.secure {
            return &self.name;
        }
        self.name
            .strip_prefix("__Host-")
            .or_else(|| self.name.strip_prefix("__Secure-"))
            .unwrap_or(&self.name)
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
/// request) and `POST /auth/logout`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardAuthConfig {
    /// Origins (`https://app.example`) trusted for state-changing cookie requests
    /// besides the request's own origin, also when `Sec-Fetch-Site` says
    /// `same-site`. Never widens `cross-site`.
    pub allowed_origins: Vec<String>,
    /// Accept `Sec-Fetch-Site: same-site` for state-changing requests from any origin.
    pub allow_same_site: bool,
}

impl ForwardAuthConfig {
    /// Whether `origin` (an `Origin` header value) is listed, compared
    /// ASCII-case-insensitively.
    pub fn is_allowed_origin(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// Checks an `allowed_origins` entry: `http(s)://host[:port]` as a browser
/// serializes it in `Origin` (no path, no trailing slash, no default port).
pub(super) fn check_origin(o: &str) -> Result<(), String> {
    let rest = o
        .strip_prefix("https://")
        .map(|r| (r, "443"))
        .or_else(|| o.strip_prefix("http://").map(|r| (r, "80")));
    let Some((authority, default_port)) = rest else {
        return Err(format!("{o:?} must start with https:// or http://"));
    };
    if authority.is_empty()
        || !authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    {
        return Err(format!(
            "{o:?} must be scheme://host[:port] with nothing after the host (no path, no trailing slash)"
        ));
    }
    let bad_host = || format!("{o:?}: the host is not valid");
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:8080`.
        Some(v6) => {
            let (addr, tail) = v6.split_once(']').ok_or_else(bad_host)?;
            if addr.is_empty() || addr.contains(['[', ']']) {
                return Err(bad_host());
            }
            match tail {
                "" => (addr, None),
                t => (addr, Some(t.strip_prefix(':').ok_or_else(bad_host)?)),
            }
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() || (!authority.starts_with('[') && host.contains(['[', ']'])) {
        return Err(bad_host());
    }
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{o:?}: the port must be a number"));
        }
        if port == default_port {
            return Err(format!(
                "{o:?}: omit the default port; browsers send the origin without it"
            ));
        }
    }
    Ok(())
}
