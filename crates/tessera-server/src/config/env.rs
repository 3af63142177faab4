//! The `TESSERA_*` environment variables: one per key, how each value is
//! parsed, and the overlay of them onto a configuration (with a "did you
//! mean" hint for an unknown one).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::{Config, ConfigError, LimitConfig, tls, tokens};

/// Environment variables with the `TESSERA_` prefix that are not
/// configuration keys (the `--config` flag's variable).
pub const NON_KEY_ENV: &[&str] = &["TESSERA_CONFIG"];

const ENV_PREFIX: &str = "TESSERA_";

/// One settable key: its environment variable and how to set it from a string.
pub(super) struct EnvKey {
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
pub(super) const ENV_KEYS: &[EnvKey] = env_keys! {
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
    "TESSERA_COOKIE_DOMAIN" => |c, v| c.cookie.domain = Some(v.trim().to_owned()).filter(|d| !d.is_empty());
    "TESSERA_COOKIE_PARTITIONED" => |c, v| c.cookie.partitioned = parse(v)?;
    "TESSERA_HTTP_MAX_BODY_BYTES" => |c, v| c.http.max_body_bytes = parse(v)?;
    "TESSERA_HTTP_MAX_HEADER_BYTES" => |c, v| c.http.max_header_bytes = parse(v)?;
    "TESSERA_HTTP_REQUEST_TIMEOUT_SECS" => |c, v| c.http.request_timeout_secs = parse(v)?;
    "TESSERA_HTTP_API_KEY_CACHE_SECS" => |c, v| c.http.api_key_cache_secs = parse(v)?;
    "TESSERA_HTTP_HEADER_READ_TIMEOUT_SECS" => |c, v| c.http.header_read_timeout_secs = parse(v)?;
    "TESSERA_HTTP_MAX_CONNECTIONS" => |c, v| c.http.max_connections = parse(v)?;
    "TESSERA_HTTP_MAX_IN_FLIGHT" => |c, v| c.http.max_in_flight = parse(v)?;
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
    "TESSERA_FORWARD_AUTH_CLIENT_CERT_HEADER" => |c, v| c.forward_auth.client_cert_header = Some(v.trim().to_owned()).filter(|h| !h.is_empty());
    "TESSERA_OAUTH_ISSUER" => |c, v| c.oauth.issuer = Some(v.trim().to_owned());
    "TESSERA_OAUTH_ACCESS_TOKEN_TTL_SECS" => |c, v| c.oauth.access_token_ttl_secs = parse(v)?;
    "TESSERA_OAUTH_DEFAULT_AUDIENCE" => |c, v| c.oauth.default_audience = v.to_owned();
    "TESSERA_OAUTH_RESOURCES" => |c, v| c.oauth.resources = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    "TESSERA_OAUTH_JWKS_MAX_AGE_SECS" => |c, v| c.oauth.jwks_max_age_secs = parse(v)?;
    "TESSERA_OAUTH_SENDER_CONSTRAINED_ONLY" => |c, v| c.oauth.sender_constrained_only = parse(v)?;
    "TESSERA_REFRESH_REUSE_GRACE_SECS" => |c, v| c.refresh.reuse_grace_secs = parse(v)?;
    "TESSERA_KEYS_ALG" => |c, v| c.keys.alg = parse(v)?;
    "TESSERA_KEYS_ROTATION_INTERVAL_SECS" => |c, v| c.keys.rotation_interval_secs = parse(v)?;
    "TESSERA_KEYS_PREPUBLISH_SECS" => |c, v| c.keys.prepublish_secs = parse(v)?;
    "TESSERA_KEYS_RELOAD_INTERVAL_SECS" => |c, v| c.keys.reload_interval_secs = parse(v)?;
    // The value is never echoed in an error.
    "TESSERA_KEYS_ENCRYPTION_KEY" => |c, v| c.keys.encryption_key = Some(v.trim().to_owned());
    "TESSERA_KEYS_ENCRYPTION_KEY_FILE" => |c, v| c.keys.encryption_key_file = Some(PathBuf::from(v));
    "TESSERA_DPOP_ALGS" => |c, v| c.dpop.algs = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    "TESSERA_DPOP_MAX_AGE_SECS" => |c, v| c.dpop.max_age_secs = parse(v)?;
    "TESSERA_DPOP_MAX_FUTURE_SECS" => |c, v| c.dpop.max_future_secs = parse(v)?;
    "TESSERA_DPOP_TOKEN_NONCE" => |c, v| c.dpop.token_nonce = parse(v)?;
    "TESSERA_DPOP_RESOURCE_NONCE" => |c, v| c.dpop.resource_nonce = parse(v)?;
    "TESSERA_DPOP_NONCE_LIFETIME_SECS" => |c, v| c.dpop.nonce_lifetime_secs = parse(v)?;
    "TESSERA_DPOP_RESOURCE_REPLAY_CACHE_SIZE" => |c, v| c.dpop.resource_replay_cache_size = parse(v)?;
    "TESSERA_TLS_CERT_FILE" => |c, v| c.tls.cert_file = Some(PathBuf::from(v));
    "TESSERA_TLS_KEY_FILE" => |c, v| c.tls.key_file = Some(PathBuf::from(v));
    "TESSERA_TLS_CLIENT_CA_FILE" => |c, v| c.tls.client_ca_file = Some(PathBuf::from(v));
    "TESSERA_TLS_CLIENT_AUTH" => |c, v| c.tls.client_auth = parse(v)?;
    "TESSERA_TLS_API_CLIENTS" => |c, v| c.tls.api_clients = tls::parse_api_clients_env(v)?;
    "TESSERA_DBSC_ENABLED" => |c, v| c.dbsc.enabled = parse(v)?;
    "TESSERA_DBSC_COOKIE_NAME" => |c, v| c.dbsc.cookie_name = v.trim().to_owned();
    "TESSERA_DBSC_COOKIE_TTL_SECS" => |c, v| c.dbsc.cookie_ttl_secs = parse(v)?;
    "TESSERA_DBSC_CHALLENGE_TTL_SECS" => |c, v| c.dbsc.challenge_ttl_secs = parse(v)?;
    "TESSERA_DBSC_REQUIRED_LEVEL" => |c, v| c.dbsc.required_level = Some(parse(v)?);
    "TESSERA_RATE_LIMITS_ENABLED" => |c, v| c.rate_limits.enabled = parse(v)?;
    "TESSERA_RATE_LIMITS_CLIENT_IP_HEADER" => |c, v| c.rate_limits.client_ip_header = v.trim().to_owned();
    "TESSERA_RATE_LIMITS_SYNC_INTERVAL_MS" => |c, v| c.rate_limits.sync_interval_ms = parse(v)?;
    "TESSERA_RATE_LIMITS_MAX_TRACKED" => |c, v| c.rate_limits.max_tracked = parse(v)?;
    "TESSERA_RATE_LIMITS_API_KEY_FAILURES_PER_IP" => |c, v| c.rate_limits.api_key_failures_per_ip = LimitConfig::parse(v)?;
    "TESSERA_RATE_LIMITS_API_PER_KEY" => |c, v| c.rate_limits.api_per_key = LimitConfig::parse(v)?;
    "TESSERA_RATE_LIMITS_OAUTH_PER_IP" => |c, v| c.rate_limits.oauth_per_ip = LimitConfig::parse(v)?;
    "TESSERA_RATE_LIMITS_OAUTH_PER_CLIENT" => |c, v| c.rate_limits.oauth_per_client = LimitConfig::parse(v)?;
    "TESSERA_RATE_LIMITS_DBSC_PER_IP" => |c, v| c.rate_limits.dbsc_per_ip = LimitConfig::parse(v)?;
    "TESSERA_RATE_LIMITS_DBSC_PER_SESSION" => |c, v| c.rate_limits.dbsc_per_session = LimitConfig::parse(v)?;
    "TESSERA_CLIENTS" => |c, v| c.clients = tokens::parse_clients_env(v)?;
};

/// The names of every configuration environment variable.
pub fn env_names() -> impl Iterator<Item = &'static str> {
    ENV_KEYS.iter().map(|k| k.env)
}

impl Config {
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
