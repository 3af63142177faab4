//! The store's options and their place in the store URL.

use std::path::PathBuf;
use std::time::Duration;

use crate::CacheOptions;

/// Options of a [`RedisStore`](crate::RedisStore). In a store URL they are
/// query parameters, removed before the URL goes to the Redis client:
/// `redis://host:6379/0?prefix=myapp&buckets=16384&grace_secs=3600`,
/// `rediss://host:6380/0?tls_ca=/etc/tessera/redis-ca.pem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Every key starts with it; it is one Cluster hash tag, `{tessera}` by
    /// default (`prefix=myapp` gives `{myapp}`). Deployments sharing one
    /// Redis use different prefixes.
    pub prefix: String,
    /// Index buckets (a power of two up to 65536); `None` keeps what the
    /// keys under the prefix already use, or 4096 for new ones. About one
    /// per 64 sessions keeps the indexes compact.
    pub buckets: Option<u32>,
    /// How long Redis keeps a session record past its expiry before its
    /// TTL deletes it (the sweeper normally deletes it first; see
    /// [`layout`](crate::layout)).
    pub grace: Duration,
    /// For `rediss://`: a PEM file of the CA certificates to trust instead
    /// of the system's (a private CA).
    pub tls_ca: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// A command without an answer after this fails as unavailable.
    pub response_timeout: Duration,
    /// The session cache (`cache`, `cache_ttl_ms`, `cache_size`; see
    /// [`CacheOptions`]).
    pub cache: CacheOptions,
}

impl RedisOptions {
    pub const DEFAULT_PREFIX: &'static str = "{tessera}";
    pub const DEFAULT_BUCKETS: u32 = 4096;
    pub const MAX_BUCKETS: u32 = 65536;

    /// `{name}`: the prefix for a deployment name.
    pub fn prefix_for(name: &str) -> String {
        format!("{{{name}}}")
    }

    pub(crate) fn grace_ms(&self) -> u64 {
        u64::try_from(self.grace.as_millis())
            .unwrap_or(u64::MAX)
            .max(1000)
    }

    /// Splits a store URL into the URL for the Redis client and the
    /// store's options.
    pub fn from_url(url: &str) -> Result<(String, RedisOptions), OptionsError> {
        let mut parsed = url::Url::parse(url).map_err(|e| OptionsError(format!("bad Redis URL: {e}")))?;
        let mut options = RedisOptions::default();
        let mut rest = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "prefix" => {
                    if v.is_empty() || v.contains(['{', '}']) {
                        return Err(OptionsError(format!(
                            "prefix {v:?}: a non-empty name without braces (it becomes {{name}})"
                        )));
                    }
                    options.prefix = Self::prefix_for(&v);
                }
                "buckets" => {
                    let b: u32 = v
                        .parse()
                        .ok()
                        .filter(|b: &u32| b.is_power_of_two() && *b <= Self::MAX_BUCKETS)
                        .ok_or_else(|| {
                            OptionsError(format!(
                                "buckets {v:?}: a power of two up to {}",
                                Self::MAX_BUCKETS
                            ))
                        })?;
                    options.buckets = Some(b);
                }
                "grace_secs" => {
                    let s: u64 = v.parse().ok().filter(|s| *s >= 1).ok_or_else(|| {
                        OptionsError(format!("grace_secs {v:?}: a whole number of seconds, at least 1"))
                    })?;
                    options.grace = Duration::from_secs(s);
                }
                "tls_ca" => options.tls_ca = Some(PathBuf::from(v.as_ref())),
                key if CacheOptions::KEYS.contains(&key) => options.cache.set(key, &v)?,
                _ => rest.push((k.into_owned(), v.into_owned())),
            }
        }
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(rest);
        }
        Ok((parsed.to_string(), options))
    }
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            buckets: None,
            grace: Duration::from_secs(3600),
            tls_ca: None,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            cache: CacheOptions::default(),
        }
    }
}

/// A store URL's options that do not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OptionsError(pub String);
