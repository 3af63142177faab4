//! The store's options and their place in the store URL.

use std::path::PathBuf;
use std::time::Duration;

use crate::CacheOptions;

/// Options of a [`RedisStore`](crate::RedisStore). In a store URL they are
/// query parameters, removed before the URL goes to the Redis client:
/// `redis://host:6379/0?prefix=myapp&buckets=16384&grace_secs=3600`,
/// `rediss://host:6380/0?tls_ca=/etc/tessera/redis-ca.pem`.
///
/// The store URL names one of three kinds of Redis:
///
/// - `redis://[USER:PASSWORD@]HOST[:PORT][/DB]`, `rediss://…` (TLS): one server.
/// - `redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…][/]`: a Redis
///   Cluster, given by one or more of its nodes (the client discovers the
///   rest and follows failovers). Every key shares one hash slot (see
///   [`layout`](crate::layout)): the Cluster gives failover, not sharding.
/// - `redis+sentinel://HOST[:PORT][,HOST[:PORT]…]/MASTER_NAME[/DB]`: the
///   master that these Sentinels (port 26379 by default) call
///   `MASTER_NAME`, asked again whenever it stops answering as the master.
///   The user and password are the master's; `sentinel_auth=true` sends
///   them to the Sentinels too.
///
/// Cluster and Sentinel URLs are plain TCP (no `tls_ca`).
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
    /// How long a (re)connection may take before the command that needed
    /// it fails as unavailable (`connect_timeout_ms`, default 2000).
    pub connect_timeout: Duration,
    /// A command without an answer after this fails as unavailable
    /// (`timeout_ms`, default 2000): a slow Redis makes requests fail
    /// closed (503) in bounded time instead of piling up behind it. The
    /// session cache's heartbeat uses it too.
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
        let options = Self::take_from_query(&mut parsed, &mut |_, _| Ok(false))?;
        Ok((parsed.to_string(), options))
    }

    /// Takes the store's options (and those `extra` accepts) out of `parsed`'s
    /// query, leaving the others.
    fn take_from_query(
        parsed: &mut url::Url,
        extra: &mut dyn FnMut(&str, &str) -> Result<bool, OptionsError>,
    ) -> Result<RedisOptions, OptionsError> {
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
                "timeout_ms" => options.response_timeout = millis(&k, &v)?,
                "connect_timeout_ms" => options.connect_timeout = millis(&k, &v)?,
                key if CacheOptions::KEYS.contains(&key) => options.cache.set(key, &v)?,
                _ => {
                    if !extra(&k, &v)? {
                        rest.push((k.into_owned(), v.into_owned()));
                    }
                }
            }
        }
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(rest);
        }
        Ok(options)
    }
}

/// Where the store's Redis is: the three forms of [`RedisOptions`]' docs.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum RedisTarget {
    /// The URL for the redis crate.
    Single(String),
    /// The URLs of the seed nodes (`redis://[USER:PASSWORD@]HOST:PORT/`,
    /// with the query parameters the store did not take).
    Cluster {
        nodes: Vec<String>,
    },
    Sentinel(SentinelTarget),
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SentinelTarget {
    /// `redis://[USER:PASSWORD@]HOST:PORT/` of each Sentinel.
    pub sentinels: Vec<String>,
    pub master: String,
    /// `redis://[USER:PASSWORD@]x/DB`: the master's credentials and
    /// database, as a URL so the redis crate decodes it.
    pub master_info: String,
}

// Never print the URLs: they may carry a password.
impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Single(_) => f.write_str("Single"),
            RedisTarget::Cluster { nodes } => write!(f, "Cluster({} seed nodes)", nodes.len()),
            RedisTarget::Sentinel(s) => write!(f, "Sentinel({}, {} sentinels)", s.master, s.sentinels.len()),
        }
    }
}

const SENTINEL_PORT: u16 = 26379;
const REDIS_PORT: u16 = 6379;

impl RedisTarget {
    /// Parses a store URL (see the type's docs) into the target and the
    /// store's options.
    pub(crate) fn parse(url: &str) -> Result<(RedisTarget, RedisOptions), OptionsError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(OptionsError(
                "bad Redis URL: expected redis://, rediss://, redis+cluster:// or redis+sentinel://".into(),
            ));
        };
        let kind = scheme.to_ascii_lowercase();
        if kind == "redis" || kind == "rediss" {
            let (u, o) = RedisOptions::from_url(url)?;
            return Ok((RedisTarget::Single(u), o));
        }
        if kind == "rediss+cluster" || kind == "rediss+sentinel" {
            return Err(OptionsError(format!(
                "{kind}:// (TLS to a Cluster or through Sentinel) is not supported yet; use redis+cluster://, \
                 redis+sentinel:// on a private network, or rediss:// to one server"
            )));
        }
        if kind != "redis+cluster" && kind != "redis+sentinel" {
            return Err(OptionsError(format!("unknown Redis URL scheme {scheme:?}")));
        }
        let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        // The path and query, read by the URL parser on a stand-in host.
        let mut parsed = url::Url::parse(&format!("redis://x{tail}"))
            .map_err(|e| OptionsError(format!("bad Redis URL: {e}")))?;
        if parsed.fragment().is_some() {
            return Err(OptionsError("a Redis URL takes no #fragment".into()));
        }
        let mut sentinel_auth = false;
        let options = RedisOptions::take_from_query(&mut parsed, &mut |k, v| {
            if k != "sentinel_auth" || kind != "redis+sentinel" {
                return Ok(false);
            }
            sentinel_auth = match v {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(OptionsError(format!("sentinel_auth {v:?}: true or false"))),
            };
            Ok(true)
        })?;
        if options.tls_ca.is_some() {
            return Err(OptionsError(format!("tls_ca: {kind}:// connects without TLS")));
        }
        let creds = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let default_port = if kind == "redis+cluster" {
            REDIS_PORT
        } else {
            SENTINEL_PORT
        };
        let mut addrs = Vec::new();
        for h in hosts.split(',') {
            addrs.push(host_port(h, default_port)?);
        }
        let segments: Vec<&str> = parsed
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).collect())
            .unwrap_or_default();
        if kind == "redis+cluster" {
            if !segments.is_empty() {
                return Err(OptionsError(
                    "redis+cluster:// takes no path: a Redis Cluster has only database 0".into(),
                ));
            }
            let query = parsed.query().map(|q| format!("?{q}")).unwrap_or_default();
            let nodes = addrs
                .iter()
                .map(|a| format!("redis://{creds}{a}/{query}"))
                .collect();
            return Ok((RedisTarget::Cluster { nodes }, options));
        }
        if let Some(q) = parsed.query() {
            return Err(OptionsError(format!(
                "redis+sentinel:// options: prefix, buckets, grace_secs, timeout_ms, connect_timeout_ms, \
                 cache, cache_ttl_ms, cache_size, sentinel_auth (got {q:?})"
            )));
        }
        let (master, db) = match segments.as_slice() {
            [m] => (*m, 0),
            [m, db] => (
                *m,
                db.parse::<i64>()
                    .ok()
                    .filter(|d| *d >= 0)
                    .ok_or_else(|| OptionsError(format!("database {db:?}: a number")))?,
            ),
            _ => {
                return Err(OptionsError(
                    "redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER_NAME[/DB]: the master's name is missing"
                        .into(),
                ));
            }
        };
        let master = master_name(master)?;
        let sentinel_creds = if sentinel_auth { creds.as_str() } else { "" };
        let sentinels = addrs
            .iter()
            .map(|a| format!("redis://{sentinel_creds}{a}/"))
            .collect();
        Ok((
            RedisTarget::Sentinel(SentinelTarget {
                sentinels,
                master,
                master_info: format!("redis://{creds}x/{db}"),
            }),
            options,
        ))
    }
}

/// The longest `timeout_ms` / `connect_timeout_ms`: a store call that
/// waits longer than a minute is no longer worth an answer.
const MAX_TIMEOUT_MS: u64 = 60_000;

/// A timeout option: whole milliseconds from 1 to [`MAX_TIMEOUT_MS`].
fn millis(key: &str, v: &str) -> Result<Duration, OptionsError> {
    v.parse::<u64>()
        .ok()
        .filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms))
        .map(Duration::from_millis)
        .ok_or_else(|| OptionsError(format!("{key} {v:?}: 1 to {MAX_TIMEOUT_MS} milliseconds")))
}

/// `HOST[:PORT]` of a multi-host URL, checked by the URL parser.
fn host_port(h: &str, default_port: u16) -> Result<String, OptionsError> {
    if h.is_empty() {
        return Err(OptionsError("a Redis URL names an empty host".into()));
    }
    let u = url::Url::parse(&format!("redis://{h}/"))
        .map_err(|e| OptionsError(format!("bad host {h:?} in Redis URL: {e}")))?;
    let host = u
        .host_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OptionsError(format!("bad host {h:?} in Redis URL")))?;
    if u.path() != "/" || u.query().is_some() || !u.username().is_empty() {
        return Err(OptionsError(format!("bad host {h:?} in Redis URL")));
    }
    Ok(format!("{host}:{}", u.port().unwrap_or(default_port)))
}

/// A master name as Sentinel configurations write them; nothing to decode.
fn master_name(s: &str) -> Result<String, OptionsError> {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        Ok(s.to_owned())
    } else {
        Err(OptionsError(format!(
            "master name {s:?}: letters, digits and - _ . : only"
        )))
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

#[cfg(test)]
mod tests;
