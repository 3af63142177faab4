//! Service configuration: a TOML file, `TESSERA_<SECTION>_<KEY>` environment
//! variables over it, and the common command-line flags over both.
//!
//! Every struct denies unknown fields, and every `TESSERA_*` variable must
//! name a key, so a typo is an error rather than a silently ignored setting.
//! `docs/configuration.md` documents every key.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tessera_core::SessionPolicy;

/// Environment variables with the `TESSERA_` prefix that are not
/// configuration keys (the `--config` flag's variable).
pub const NON_KEY_ENV: &[&str] = &["TESSERA_CONFIG"];

const ENV_PREFIX: &str = "TESSERA_";

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
            clients: Vec::new(),
        }
    }
}

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
fn check_origin(o: &str) -> Result<(), String> {
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

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? } default $def:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
        pub enum $name {
            $(
                #[value(name = $s)]
                #[serde(rename = $s)]
                $variant,
            )+
        }

        impl $name {
            pub const NAMES: &'static [&'static str] = &[$($s),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl Default for $name {
            fn default() -> Self { $name::$def }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(format!("expected one of {}, got {s:?}", Self::NAMES.join(", "))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Log line format.
    LogFormat { Text => "text", Json => "json" } default Text
);
string_enum!(
    /// `SameSite` attribute of the session cookie.
    SameSiteConfig { Lax => "lax", Strict => "strict" } default Lax
);
string_enum!(
    /// SQLite `PRAGMA synchronous`.
    Synchronous { Normal => "normal", Full => "full" } default Normal
);

mod tokens;
pub use tokens::{
    ClientConfig, ClientKindConfig, KEY_ENCRYPTION_KEY_FILE, KeyAlg, KeysConfig, LEEWAY_SECS, OAuthConfig,
    RefreshConfig,
};

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

/// One settable key: its environment variable and how to set it from a string.
struct EnvKey {
    env: &'static str,
    set: fn(&mut Config, &str) -> Result<(), String>,
}

fn parse<T: FromStr>(v: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    v.trim()
        .parse::<T>()
        .map_err(|e| format!("invalid value {v:?}: {e}"))
}

macro_rules! env_keys {
    ($($env:literal => |$c:ident, $v:ident| $body:expr;)+) => {
        &[$(EnvKey {
            env: $env,
            set: |$c: &mut Config, $v: &str| -> Result<(), String> {
                $body;
                Ok(())
            },
        }),+]
    };
}

/// Every configuration key, by its environment variable.
const ENV_KEYS: &[EnvKey] = env_keys! {
    "TESSERA_LISTEN" => |c, v| c.listen = parse(v)?;
    "TESSERA_STORE" => |c, v| c.store = Some(v.to_owned());
    "TESSERA_DATA_DIR" => |c, v| c.data_dir = PathBuf::from(v);
    "TESSERA_LOG_FORMAT" => |c, v| c.log_format = parse(v)?;
    "TESSERA_SESSION_IDLE_TIMEOUT_SECS" => |c, v| c.session.idle_timeout_secs = parse(v)?;
    "TESSERA_SESSION_ABSOLUTE_TIMEOUT_SECS" => |c, v| c.session.absolute_timeout_secs = parse(v)?;
    "TESSERA_SESSION_MAX_IDLE_TIMEOUT_SECS" => |c, v| c.session.max_idle_timeout_secs = parse(v)?;
    "TESSERA_SESSION_MAX_ABSOLUTE_TIMEOUT_SECS" => |c, v| c.session.max_absolute_timeout_secs = parse(v)?;
    "TESSERA_SESSION_MAX_SESSIONS_PER_SUBJECT" => |c, v| c.session.max_sessions_per_subject = parse(v)?;
    "TESSERA_SESSION_MAX_DATA_BYTES" => |c, v| c.session.max_data_bytes = parse(v)?;
    "TESSERA_SESSION_TOUCH_INTERVAL_SECS" => |c, v| c.session.touch_interval_secs = parse(v)?;
    "TESSERA_SESSION_MAX_AUTH_LEVEL" => |c, v| c.session.max_auth_level = parse(v)?;
    "TESSERA_COOKIE_NAME" => |c, v| c.cookie.name = v.to_owned();
    "TESSERA_COOKIE_SECURE" => |c, v| c.cookie.secure = parse(v)?;
    "TESSERA_COOKIE_SAME_SITE" => |c, v| c.cookie.same_site = parse(v)?;
    "TESSERA_COOKIE_PERSISTENT" => |c, v| c.cookie.persistent = parse(v)?;
    "TESSERA_HTTP_MAX_BODY_BYTES" => |c, v| c.http.max_body_bytes = parse(v)?;
    "TESSERA_HTTP_MAX_HEADER_BYTES" => |c, v| c.http.max_header_bytes = parse(v)?;
    "TESSERA_HTTP_REQUEST_TIMEOUT_SECS" => |c, v| c.http.request_timeout_secs = parse(v)?;
    "TESSERA_HTTP_API_KEY_CACHE_SECS" => |c, v| c.http.api_key_cache_secs = parse(v)?;
    "TESSERA_HTTP_HEADER_READ_TIMEOUT_SECS" => |c, v| c.http.header_read_timeout_secs = parse(v)?;
    "TESSERA_HTTP_MAX_CONNECTIONS" => |c, v| c.http.max_connections = parse(v)?;
    "TESSERA_SWEEPER_INTERVAL_SECS" => |c, v| c.sweeper.interval_secs = parse(v)?;
    "TESSERA_SWEEPER_BATCH_SIZE" => |c, v| c.sweeper.batch_size = parse(v)?;
    "TESSERA_EVENTS_RETENTION_DAYS" => |c, v| c.events.retention_days = parse(v)?;
    "TESSERA_SQLITE_SYNCHRONOUS" => |c, v| c.sqlite.synchronous = parse(v)?;
    "TESSERA_FORWARD_AUTH_ALLOWED_ORIGINS" => |c, v| c.forward_auth.allowed_origins = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    "TESSERA_FORWARD_AUTH_ALLOW_SAME_SITE" => |c, v| c.forward_auth.allow_same_site = parse(v)?;
    "TESSERA_OAUTH_ISSUER" => |c, v| c.oauth.issuer = Some(v.trim().to_owned());
    "TESSERA_OAUTH_ACCESS_TOKEN_TTL_SECS" => |c, v| c.oauth.access_token_ttl_secs = parse(v)?;
    "TESSERA_OAUTH_DEFAULT_AUDIENCE" => |c, v| c.oauth.default_audience = v.to_owned();
    "TESSERA_OAUTH_JWKS_MAX_AGE_SECS" => |c, v| c.oauth.jwks_max_age_secs = parse(v)?;
    "TESSERA_REFRESH_REUSE_GRACE_SECS" => |c, v| c.refresh.reuse_grace_secs = parse(v)?;
    "TESSERA_KEYS_ALG" => |c, v| c.keys.alg = parse(v)?;
    "TESSERA_KEYS_ROTATION_INTERVAL_SECS" => |c, v| c.keys.rotation_interval_secs = parse(v)?;
    "TESSERA_KEYS_PREPUBLISH_SECS" => |c, v| c.keys.prepublish_secs = parse(v)?;
    // The value is never echoed in an error.
    "TESSERA_KEYS_ENCRYPTION_KEY" => |c, v| c.keys.encryption_key = Some(v.trim().to_owned());
    "TESSERA_KEYS_ENCRYPTION_KEY_FILE" => |c, v| c.keys.encryption_key_file = Some(PathBuf::from(v));
    "TESSERA_CLIENTS" => |c, v| c.clients = tokens::parse_clients_env(v)?;
};

/// The names of every configuration environment variable.
pub fn env_names() -> impl Iterator<Item = &'static str> {
    ENV_KEYS.iter().map(|k| k.env)
}

impl Config {
    /// Reads `file` (if any), overlays the `TESSERA_*` variables of `env`
    /// and then `flags`, and validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (OsString, OsString)>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Config::from_toml(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?
            }
            None => Config::default(),
        };
        cfg.apply_env(env)?;
        cfg.apply_overrides(flags);
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// Applies every `TESSERA_*` variable of `env`; any that names no key
    /// is an error.
    pub fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<(), ConfigError> {
        let mut vars: Vec<(String, OsString)> = env
            .into_iter()
            .filter_map(|(k, v)| {
                let k = k.into_string().ok()?;
                k.starts_with(ENV_PREFIX).then_some((k, v))
            })
            .filter(|(k, _)| !NON_KEY_ENV.contains(&k.as_str()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, value) in vars {
            let Some(key) = ENV_KEYS.iter().find(|k| k.env == name) else {
                let hint = closest_env(&name)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                return Err(ConfigError::Env {
                    name,
                    message: format!("not a configuration key{hint}; see docs/configuration.md"),
                });
            };
            let value = value.into_string().map_err(|_| ConfigError::Env {
                name: name.clone(),
                message: "value is not valid UTF-8".into(),
            })?;
            (key.set)(self, &value).map_err(|message| ConfigError::Env { name, message })?;
        }
        Ok(())
    }

    pub fn apply_overrides(&mut self, o: &Overrides) {
        if let Some(l) = o.listen {
            self.listen = l;
        }
        if let Some(s) = &o.store {
            self.store = Some(s.clone());
        }
        if let Some(d) = &o.data_dir {
            self.data_dir = d.clone();
        }
        if let Some(f) = o.log_format {
            self.log_format = f;
        }
    }

    /// The store URL in effect: `store`, or the SQLite file in `data_dir`.
    pub fn store_url(&self) -> String {
        match &self.store {
            Some(s) => s.clone(),
            None => format!("sqlite://{}", self.data_dir.join("tessera.db").display()),
        }
    }

    /// The session policy `[session]` describes.
    pub fn policy(&self) -> SessionPolicy {
        let s = &self.session;
        SessionPolicy {
            idle_timeout_secs: s.idle_timeout_secs,
            absolute_timeout_secs: s.absolute_timeout_secs,
            max_idle_timeout_secs: s.max_idle_timeout_secs,
            max_absolute_timeout_secs: s.max_absolute_timeout_secs,
            max_sessions_per_subject: (s.max_sessions_per_subject > 0).then_some(s.max_sessions_per_subject),
            max_data_bytes: s.max_data_bytes,
            touch_interval_secs: s.touch_interval_secs,
            max_auth_level: s.max_auth_level,
        }
    }

    /// Checks every rule a configuration must satisfy for the service to start.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if let Err(e) = self.policy().validate() {
            return bad(format!("[session] {e}"));
        }
        crate::store_url::parse(&self.store_url())
            .map_err(|e| ConfigError::Invalid(format!("store: {e}")))?;
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir must not be empty".into());
        }
        let c = &self.cookie;
        if c.name.is_empty() || !c.name.bytes().all(is_cookie_name_byte) {
            return bad(format!(
                "[cookie] name {:?} is not a valid cookie name (RFC 6265 token characters only)",
                c.name
            ));
        }
        if c.effective_name().is_empty() {
            return bad("[cookie] name must not be only a prefix".into());
        }
        let h = &self.http;
        if h.max_body_bytes < 2 {
            return bad("[http] max_body_bytes must be at least 2".into());
        }
        if h.max_header_bytes < 256 {
            return bad("[http] max_header_bytes must be at least 256".into());
        }
        if h.request_timeout_secs == 0 {
            return bad("[http] request_timeout_secs must be positive".into());
        }
        if !(1..=MAX_HEADER_READ_TIMEOUT_SECS).contains(&h.header_read_timeout_secs) {
            return bad(format!(
                "[http] header_read_timeout_secs must be from 1 to {MAX_HEADER_READ_TIMEOUT_SECS}"
            ));
        }
        if h.max_connections == 0 {
            return bad("[http] max_connections must be positive".into());
        }
        if self.sweeper.interval_secs == 0 {
            return bad("[sweeper] interval_secs must be positive".into());
        }
        if self.sweeper.batch_size == 0 {
            return bad("[sweeper] batch_size must be positive".into());
        }
        if self.events.retention_days > MAX_RETENTION_DAYS {
            return bad(format!(
                "[events] retention_days must be at most {MAX_RETENTION_DAYS} (0 keeps events forever)"
            ));
        }
        for o in &self.forward_auth.allowed_origins {
            check_origin(o)
                .map_err(|e| ConfigError::Invalid(format!("[forward_auth] allowed_origins: {e}")))?;
        }
        self.validate_tokens().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The effective configuration as TOML, with the store resolved and any
    /// secret (a password in the store URL) masked.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.store = Some(mask_url_password(&self.store_url()));
        self.mask_tokens(&mut shown);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// RFC 6265 `token` characters (RFC 9110 tchar).
fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `scheme://user:secret@host` → `scheme://user:****@host`.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:****")
            } else {
                String::from("****")
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// The known variable nearest to `name`, for a "did you mean" hint.
fn closest_env(name: &str) -> Option<&'static str> {
    env_names()
        .map(|k| (edit_distance(k, name), k))
        .filter(|(d, k)| *d <= 3 || k.starts_with(name) || name.starts_with(k))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::default();
        if cfg!(feature = "sqlite") {
            c.validate().unwrap();
        }
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.store_url(), "sqlite://./data/tessera.db");
        assert_eq!(c.session.idle_timeout_secs, 1800);
        assert_eq!(c.session.absolute_timeout_secs, 28800);
        assert_eq!(c.session.max_sessions_per_subject, 50);
        assert_eq!(c.cookie.name, "__Host-tessera");
        assert!(c.cookie.secure && c.cookie.persistent);
        assert_eq!(c.cookie.same_site, SameSiteConfig::Lax);
        assert_eq!(c.http.max_body_bytes, 65536);
        assert_eq!(c.http.max_header_bytes, 16384);
        assert_eq!(c.sweeper.batch_size, 500);
        assert_eq!(c.events.retention_days, 90);
        assert_eq!(c.sqlite.synchronous, Synchronous::Normal);
        assert_eq!(c.policy(), SessionPolicy::default());
    }

    #[test]
    fn parses_a_full_file() {
        let text = r#"
listen = "0.0.0.0:9000"
store = "memory://"
data_dir = "/var/lib/tessera"
log_format = "json"

[session]
idle_timeout_secs = 600
absolute_timeout_secs = 3600
max_sessions_per_subject = 0
max_auth_level = 3

[cookie]
name = "sid"
secure = false
same_site = "strict"
persistent = false

[http]
max_body_bytes = 1024
api_key_cache_secs = 0

[sweeper]
interval_secs = 5
batch_size = 10

[events]
retention_days = 0

[sqlite]
synchronous = "full"
"#;
        let c = Config::from_toml(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.store_url(), "memory://");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.policy().max_sessions_per_subject, None);
        assert_eq!(c.policy().idle_timeout_secs, 600);
        assert_eq!(c.cookie.same_site, SameSiteConfig::Strict);
        assert_eq!(c.http.max_body_bytes, 1024);
        assert_eq!(c.http.max_header_bytes, 16384, "unset keys keep defaults");
        assert_eq!(c.sqlite.synchronous, Synchronous::Full);
        assert_eq!(c.events.retention_days, 0, "0: keep forever");
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let e = Config::from_toml("[session]\nidle_timeout = 5\n").unwrap_err();
        assert!(e.contains("unknown field `idle_timeout`"), "{e}");
        let e = Config::from_toml("colour = \"red\"\n").unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = Config::from_toml("[redis]\nurl = \"x\"\n").unwrap_err();
        assert!(e.contains("unknown field `redis`"), "{e}");
    }

    #[test]
    fn wrong_types_in_the_file_are_errors() {
        let e = Config::from_toml("[session]\nidle_timeout_secs = \"long\"\n").unwrap_err();
        assert!(
            e.contains("idle_timeout_secs") || e.contains("invalid type"),
            "{e}"
        );
        let e = Config::from_toml("log_format = \"xml\"\n").unwrap_err();
        assert!(e.contains("xml"), "{e}");
    }

    #[test]
    fn env_overlays_the_file_and_flags_overlay_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1000\"\n[session]\nidle_timeout_secs = 100\n",
        )
        .unwrap();
        let vars = env(&[
            ("TESSERA_SESSION_IDLE_TIMEOUT_SECS", "200"),
            ("TESSERA_LISTEN", "127.0.0.1:2000"),
            ("TESSERA_COOKIE_SECURE", "false"),
            ("TESSERA_STORE", "memory://"),
            ("TESSERA_CONFIG", "ignored.toml"),
            ("PATH", "/bin"),
        ]);
        let flags = Overrides {
            listen: Some("127.0.0.1:3000".parse().unwrap()),
            ..Overrides::default()
        };
        let c = Config::load(Some(&path), vars.clone(), &flags).unwrap();
        assert_eq!(c.session.idle_timeout_secs, 200);
        assert_eq!(c.listen.port(), 3000);
        assert!(!c.cookie.secure);
        assert_eq!(c.cookie.effective_name(), "tessera");
        let c = Config::load(Some(&path), vars, &Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 2000);
    }

    #[test]
    fn unknown_env_keys_are_errors_with_a_hint() {
        let e = Config::load(
            None,
            env(&[("TESSERA_SESSION_IDLE_TIMEOUT", "5")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("TESSERA_SESSION_IDLE_TIMEOUT"), "{e}");
        assert!(
            e.contains("did you mean TESSERA_SESSION_IDLE_TIMEOUT_SECS"),
            "{e}"
        );
        let e = Config::load(None, env(&[("TESSERA_NOPE", "5")]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a configuration key"), "{e}");
    }

    #[test]
    fn bad_env_values_are_errors() {
        let e = Config::load(
            None,
            env(&[("TESSERA_HTTP_MAX_BODY_BYTES", "lots")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("TESSERA_HTTP_MAX_BODY_BYTES") && e.contains("lots"),
            "{e}"
        );
        let e = Config::load(
            None,
            env(&[("TESSERA_COOKIE_SAME_SITE", "none")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("lax, strict"), "{e}");
    }

    #[test]
    fn every_key_has_an_env_variable() {
        // Serialize the defaults and check each key maps to a known variable.
        let mut c = Config {
            store: Some("memory://".into()),
            ..Config::default()
        };
        // Optional keys are left out when unset; set them so each is counted.
        c.oauth.issuer = Some("https://auth.example".into());
        c.keys.encryption_key = Some("k".into());
        c.keys.encryption_key_file = Some("f".into());
        c.clients = tokens::parse_clients_env(r#"[{client_id = "x"}]"#).unwrap();
        let v: toml::Table = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        let mut n = 0;
        for (k, val) in &v {
            match val {
                toml::Value::Table(t) => {
                    for sk in t.keys() {
                        let name = format!("TESSERA_{}_{}", k.to_uppercase(), sk.to_uppercase());
                        assert!(env_names().any(|e| e == name), "{name}");
                        n += 1;
                    }
                }
                _ => {
                    let name = format!("TESSERA_{}", k.to_uppercase());
                    assert!(env_names().any(|e| e == name), "{name}");
                    n += 1;
                }
            }
        }
        assert_eq!(n, ENV_KEYS.len());
    }

    #[test]
    fn invalid_policies_and_values_are_refused() {
        let cases = [
            ("TESSERA_SESSION_IDLE_TIMEOUT_SECS", "0"),
            ("TESSERA_SESSION_ABSOLUTE_TIMEOUT_SECS", "999999999999"),
            ("TESSERA_COOKIE_NAME", "bad name"),
            ("TESSERA_STORE", "redis://localhost:6379/0"),
            ("TESSERA_STORE", "postgres://x"),
            ("TESSERA_SWEEPER_BATCH_SIZE", "0"),
            ("TESSERA_EVENTS_RETENTION_DAYS", "36501"),
            ("TESSERA_HTTP_REQUEST_TIMEOUT_SECS", "0"),
        ];
        for (k, v) in cases {
            let r = Config::load(None, env(&[(k, v)]), &Overrides::default());
            assert!(matches!(r, Err(ConfigError::Invalid(_))), "{k}={v}: {r:?}");
        }
    }

    #[test]
    fn the_listener_limits_are_configurable_and_bounded() {
        let c = Config::default();
        assert_eq!(c.http.header_read_timeout_secs, 10);
        assert_eq!(c.http.max_connections, 4096);
        let c = Config::from_toml("[http]\nheader_read_timeout_secs = 30\nmax_connections = 2\n").unwrap();
        assert_eq!((c.http.header_read_timeout_secs, c.http.max_connections), (30, 2));
        let c = Config::load(
            None,
            env(&[
                ("TESSERA_STORE", "memory://"),
                ("TESSERA_HTTP_HEADER_READ_TIMEOUT_SECS", "1"),
                ("TESSERA_HTTP_MAX_CONNECTIONS", "100"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            (c.http.header_read_timeout_secs, c.http.max_connections),
            (1, 100)
        );
        for (k, v) in [
            ("TESSERA_HTTP_HEADER_READ_TIMEOUT_SECS", "0"),
            ("TESSERA_HTTP_HEADER_READ_TIMEOUT_SECS", "31"),
            ("TESSERA_HTTP_MAX_CONNECTIONS", "0"),
        ] {
            let r = Config::load(
                None,
                env(&[("TESSERA_STORE", "memory://"), (k, v)]),
                &Overrides::default(),
            );
            let e = r.expect_err(k).to_string();
            assert!(e.contains("[http]"), "{k}={v}: {e}");
        }
        let e = Config::from_toml("[http]\nheader_timeout_secs = 5\n").unwrap_err();
        assert!(e.contains("unknown field `header_timeout_secs`"), "{e}");
        let shown = Config::default().to_masked_toml();
        assert!(
            shown.contains("header_read_timeout_secs = 10") && shown.contains("max_connections = 4096"),
            "{shown}"
        );
    }

    #[test]
    fn masked_toml_round_trips_and_hides_passwords() {
        let c = Config {
            store: Some("redis://user:hunter2@cache:6379/0".into()),
            ..Config::default()
        };
        let shown = c.to_masked_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://user:****@cache:6379/0"), "{shown}");
        let c = Config::default();
        let back = Config::from_toml(&c.to_masked_toml()).unwrap();
        assert_eq!(back.store_url(), c.store_url());
        assert_eq!(back.session, c.session);
        assert_eq!(mask_url_password("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }
}
