//! Service configuration: a TOML file, `TESSERA_<SECTION>_<KEY>` environment
//! variables over it, and the common command-line flags over both.
//!
//! Every struct denies unknown fields, and every `TESSERA_*` variable must
//! name a key, so a typo is an error rather than a silently ignored setting.
//! `docs/configuration.md` documents every key.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod dbsc;
mod dpop;
mod enums;
mod env;
mod load;
mod rate_limits;
mod sections;
mod tls;
mod tokens;

pub use dbsc::DbscConfig;
pub use dpop::DpopConfig;
pub use enums::{LogFormat, Synchronous};
pub use env::{NON_KEY_ENV, env_names};
pub use load::mask_url_password;
pub use rate_limits::{LimitConfig, RateLimitsConfig};
pub use sections::{
    EventsConfig, ForwardAuthConfig, HttpConfig, MAX_HEADER_READ_TIMEOUT_SECS, MAX_RETENTION_DAYS,
    SessionConfig, SqliteConfig, SweeperConfig,
};
pub use tls::{CertApiClient, ClientAuth, TlsConfig};

/// `[cookie]`: the session cookie, the same configuration as the
/// library's.
pub use tessera_http::cookies::{CookieConfig, SameSite};
pub use tokens::{
    AuthMethodConfig, ClientConfig, ClientKindConfig, KEY_ENCRYPTION_KEY_FILE, KeyAlg, KeysConfig,
    LEEWAY_SECS, OAuthConfig, RefreshConfig,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Store URL; `None` means `sqlite://<data_dir>/tessera.db`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Directory for the SQLite file and the bootstrap API key.
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub session: SessionConfig,
    pub cookie: CookieConfig,
    pub http: HttpConfig,
    pub sweeper: SweeperConfig,
    pub events: EventsConfig,
    pub sqlite: SqliteConfig,
    pub forward_auth: ForwardAuthConfig,
    pub oauth: OAuthConfig,
    pub refresh: RefreshConfig,
    pub keys: KeysConfig,
    pub dpop: DpopConfig,
    pub tls: TlsConfig,
    pub dbsc: DbscConfig,
    pub rate_limits: RateLimitsConfig,
    /// `[[clients]]`: OAuth clients besides the built-in `default`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<ClientConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            store: None,
            data_dir: PathBuf::from("./data"),
            log_format: LogFormat::Text,
            session: SessionConfig::default(),
            cookie: CookieConfig::default(),
            http: HttpConfig::default(),
            sweeper: SweeperConfig::default(),
            events: EventsConfig::default(),
            sqlite: SqliteConfig::default(),
            forward_auth: ForwardAuthConfig::default(),
            oauth: OAuthConfig::default(),
            refresh: RefreshConfig::default(),
            keys: KeysConfig::default(),
            dpop: DpopConfig::default(),
            tls: TlsConfig::default(),
            dbsc: DbscConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            clients: Vec::new(),
        }
    }
}

/// Values from the common command-line flags; they win over file and env.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub store: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests;
