//! `memcached://HOST[:PORT][?OPTIONS]`: where the server is and the
//! store's own options.

use std::time::Duration;

/// The default key prefix: every key the store writes starts with it.
pub const DEFAULT_PREFIX: &str = "tessera:";

/// Longest prefix accepted: keys are at most 250 bytes and the longest
/// key the store builds after the prefix is about 140.
const MAX_PREFIX: usize = 96;

/// The parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcachedOptions {
    /// `HOST:PORT` (port 11211 when the URL names none).
    pub address: String,
    /// `?prefix=`: every key starts with it, so several deployments or
    /// test runs can share one server.
    pub prefix: String,
    /// `?timeout_ms=`: the deadline of one exchange with the server
    /// (default 1000).
    pub timeout: Duration,
    /// `?connect_timeout_ms=`: the deadline of dialing (default 1000).
    pub connect_timeout: Duration,
    /// `?max_connections=`: connections in use at once (default 32).
    pub max_connections: usize,
}

impl Default for MemcachedOptions {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:11211".to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: Duration::from_millis(1000),
            connect_timeout: Duration::from_millis(1000),
            max_connections: 32,
        }
    }
}

/// Why a `memcached://` URL was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OptionsError(pub String);

fn bad(msg: impl Into<String>) -> OptionsError {
    OptionsError(msg.into())
}

/// Whether `prefix` can start a memcached key: printable ASCII without
/// spaces, short enough to leave room for the rest of the key.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    prefix.len() <= MAX_PREFIX && prefix.bytes().all(|b| b.is_ascii_graphic())
}

impl MemcachedOptions {
    /// Parses `memcached://HOST[:PORT][/][?prefix=…&timeout_ms=…&connect_timeout_ms=…&max_connections=…]`.
    pub fn from_url(url: &str) -> Result<MemcachedOptions, OptionsError> {
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
        if !parsed.scheme().eq_ignore_ascii_case("memcached") {
            return Err(bad(format!("expected memcached://, got {}://", parsed.scheme())));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("memcached:// needs a host, e.g. memcached://127.0.0.1:11211"))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "memcached:// takes no user or password (memcached has no authentication over the meta protocol)",
            ));
        }
        if !matches!(parsed.path(), "" | "/") {
            return Err(bad(format!(
                "memcached:// takes no path (got {:?})",
                parsed.path()
            )));
        }
        let mut o = MemcachedOptions {
            address: format!("{host}:{}", parsed.port().unwrap_or(11211)),
            ..MemcachedOptions::default()
        };
        for (k, v) in parsed.query_pairs() {
            let millis = |v: &str| -> Result<Duration, OptionsError> {
                match v.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Duration::from_millis(n)),
                    _ => Err(bad(format!(
                        "{k} must be a positive number of milliseconds, got {v:?}"
                    ))),
                }
            };
            match &*k {
                "prefix" => {
                    if !valid_prefix(&v) {
                        return Err(bad(format!(
                            "prefix must be at most {MAX_PREFIX} printable ASCII characters without spaces, got {v:?}"
                        )));
                    }
                    o.prefix = v.into_owned();
                }
                "timeout_ms" => o.timeout = millis(&v)?,
                "connect_timeout_ms" => o.connect_timeout = millis(&v)?,
                "max_connections" => {
                    o.max_connections = match v.parse::<usize>() {
                        Ok(n) if n > 0 => n,
                        _ => {
                            return Err(bad(format!(
                                "max_connections must be a positive number, got {v:?}"
                            )));
                        }
                    }
                }
                other => return Err(bad(format!("unknown memcached:// option {other:?}"))),
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_and_options() {
        let o = MemcachedOptions::from_url("memcached://cache.internal:11311/?prefix=app1:&timeout_ms=250")
            .expect("parse");
        assert_eq!(o.address, "cache.internal:11311");
        assert_eq!(o.prefix, "app1:");
        assert_eq!(o.timeout, Duration::from_millis(250));
        let d = MemcachedOptions::from_url("memcached://127.0.0.1").expect("parse");
        assert_eq!(d.address, "127.0.0.1:11211");
        assert_eq!(d.prefix, DEFAULT_PREFIX);
    }

    #[test]
    fn refuses_bad_urls() {
        for url in [
            "memcached://",
            "memcached://h/path",
            "memcached://u:p@h",
            "memcached://h?prefix=a%20b",
            "memcached://h?timeout_ms=0",
            "memcached://h?nope=1",
            "redis://h",
        ] {
            assert!(MemcachedOptions::from_url(url).is_err(), "{url}");
        }
    }
}
