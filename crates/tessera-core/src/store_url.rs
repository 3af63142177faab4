//! Store URLs (`memory://`, `sqlite://PATH`, `redis://…`, `postgres://…`,
//! `memcached://…`): one grammar for the service's `--store` and the
//! library's `SessionLayer::from_store_url`,
//! so an app and the service can name the same store the same way. Opening
//! the store is up to each face (it needs the driver crates).

use std::path::PathBuf;

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory://`: in-process, lost on exit. For tests and demos.
    Memory,
    /// `sqlite://PATH`: PATH relative to the working directory
    /// (`sqlite://./data/t.db`, `sqlite://data/t.db`) or absolute
    /// (`sqlite:///var/lib/tessera/t.db`).
    Sqlite(PathBuf),
    /// `redis://[USER:PASSWORD@]HOST[:PORT][/DB][?OPTIONS]`, or `rediss://`
    /// for TLS; a Redis Cluster,
    /// `redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…][/][?OPTIONS]`;
    /// or the master Sentinels name,
    /// `redis+sentinel://HOST[:PORT][,HOST[:PORT]…]/MASTER_NAME[/DB][?OPTIONS]`:
    /// the whole URL, as the Redis store reads it (its options — `prefix`,
    /// `buckets`, `grace_secs`, … — are in `tessera-redis`).
    Redis(String),
    /// `memcached://HOST[:PORT][?OPTIONS]`: the whole URL, as the Memcached
    /// store reads it (its options — `prefix`, `timeout_ms`, … — are in
    /// `tessera-memcached`).
    Memcached(String),
    /// `postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB[?OPTIONS]` (also
    /// `postgresql://`): the whole URL, as the PostgreSQL store reads it
    /// (its options — `statement_timeout_ms`, `pool_size`, `schema`, … —
    /// are in `tessera-postgres`).
    Postgres(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreUrlError {
    #[error(
        "{0:?} is not a store URL; expected memory://, sqlite://PATH, redis://HOST:PORT, postgres://HOST/DB or memcached://HOST"
    )]
    NotAUrl(String),
    #[error(
        "sqlite:// needs a file path, e.g. sqlite://./data/tessera.db or sqlite:///var/lib/tessera/tessera.db"
    )]
    EmptyPath,
    #[error("memory:// takes no host, path or options")]
    MemoryWithPath,
    #[error("sqlite:// URLs take no query options (got {0:?})")]
    SqliteQuery(String),
    #[error(
        "the {0}:// store is not available in this version yet; use redis://, rediss://, redis+cluster://, \
         redis+sentinel://, postgres://, memcached://, sqlite://PATH or memory://"
    )]
    NotYetSupported(String),
    #[error("this build was compiled without the SQLite store (feature `sqlite`)")]
    SqliteNotBuilt,
    #[error("this build was compiled without the Redis store (feature `redis`)")]
    RedisNotBuilt,
    #[error("{0}:// needs a host, e.g. {0}://127.0.0.1:6379/0")]
    RedisNoHost(String),
    #[error("this build was compiled without the Memcached store (feature `memcached`)")]
    MemcachedNotBuilt,
    #[error("memcached:// needs a host, e.g. memcached://127.0.0.1:11211")]
    MemcachedNoHost,
    #[error("this build was compiled without the PostgreSQL store (feature `postgres`)")]
    PostgresNotBuilt,
    #[error("{0}:// needs a host and a database, e.g. {0}://tessera@127.0.0.1:5432/tessera")]
    PostgresNoHost(String),
    /// The store's own options in the URL are wrong (checked by the store
    /// crate, which knows them).
    #[error("{0}")]
    BadOptions(String),
    #[error(
        "unknown store scheme {0:?}; expected memory://, sqlite://PATH, redis://HOST:PORT, postgres://HOST/DB or memcached://HOST"
    )]
    UnknownScheme(String),
}

impl StoreUrl {
    pub fn parse(url: &str) -> Result<StoreUrl, StoreUrlError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(StoreUrlError::NotAUrl(url.to_owned()));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "memory" => {
                if rest.is_empty() {
                    Ok(StoreUrl::Memory)
                } else {
                    Err(StoreUrlError::MemoryWithPath)
                }
            }
            "sqlite" => {
                if let Some(q) = rest.find('?') {
                    return Err(StoreUrlError::SqliteQuery(rest[q..].to_owned()));
                }
                if rest.is_empty() {
                    return Err(StoreUrlError::EmptyPath);
                }
                Ok(StoreUrl::Sqlite(PathBuf::from(rest)))
            }
            s @ ("redis" | "rediss" | "redis+cluster" | "redis+sentinel") => {
                let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                let host = rest[..host_end]
                    .rsplit_once('@')
                    .map_or(&rest[..host_end], |(_, h)| h);
                if host.is_empty() {
                    return Err(StoreUrlError::RedisNoHost(s.to_owned()));
                }
                Ok(StoreUrl::Redis(url.to_owned()))
            }
            s @ ("postgres" | "postgresql") => {
                let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                let host = rest[..host_end]
                    .rsplit_once('@')
                    .map_or(&rest[..host_end], |(_, h)| h);
                if host.is_empty() {
                    return Err(StoreUrlError::PostgresNoHost(s.to_owned()));
                }
                Ok(StoreUrl::Postgres(url.to_owned()))
            }
            "memcached" => {
                let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                if rest[..host_end].is_empty() {
                    return Err(StoreUrlError::MemcachedNoHost);
                }
                Ok(StoreUrl::Memcached(url.to_owned()))
            }
            s @ ("rediss+sentinel" | "rediss+cluster") => Err(StoreUrlError::NotYetSupported(s.to_owned())),
            other => Err(StoreUrlError::UnknownScheme(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_supported_schemes() {
        assert_eq!(StoreUrl::parse("memory://"), Ok(StoreUrl::Memory));
        assert_eq!(
            StoreUrl::parse("sqlite://./data/t.db"),
            Ok(StoreUrl::Sqlite(PathBuf::from("./data/t.db")))
        );
        assert_eq!(
            StoreUrl::parse("sqlite://data/t.db"),
            Ok(StoreUrl::Sqlite(PathBuf::from("data/t.db")))
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///var/lib/t.db"),
            Ok(StoreUrl::Sqlite(PathBuf::from("/var/lib/t.db")))
        );
        for url in [
            "redis://localhost:6379/0",
            "redis://127.0.0.1",
            "rediss://:secret@redis.example:6380/2?prefix=app",
            "REDIS://host/",
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7000/?prefix=app",
            "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/0",
        ] {
            assert_eq!(StoreUrl::parse(url), Ok(StoreUrl::Redis(url.to_owned())));
        }
        for url in [
            "postgres://tessera:pw@db.example:5432/tessera?pool_size=8",
            "postgresql://127.0.0.1/tessera",
        ] {
            assert_eq!(StoreUrl::parse(url), Ok(StoreUrl::Postgres(url.to_owned())));
        }
    }

    #[test]
    fn parses_memcached_urls() {
        for url in [
            "memcached://127.0.0.1:11211",
            "memcached://cache?prefix=app:",
            "MEMCACHED://h/",
        ] {
            assert_eq!(StoreUrl::parse(url), Ok(StoreUrl::Memcached(url.to_owned())));
        }
        assert_eq!(
            StoreUrl::parse("memcached://"),
            Err(StoreUrlError::MemcachedNoHost)
        );
        assert_eq!(
            StoreUrl::parse("memcached://?prefix=a"),
            Err(StoreUrlError::MemcachedNoHost)
        );
    }

    #[test]
    fn refuses_everything_else_clearly() {
        assert_eq!(StoreUrl::parse("sqlite://"), Err(StoreUrlError::EmptyPath));
        assert_eq!(StoreUrl::parse("memory://x"), Err(StoreUrlError::MemoryWithPath));
        assert_eq!(
            StoreUrl::parse("rediss+cluster://localhost:6379"),
            Err(StoreUrlError::NotYetSupported("rediss+cluster".into()))
        );
        assert_eq!(
            StoreUrl::parse("redis+sentinel:///mymaster"),
            Err(StoreUrlError::RedisNoHost("redis+sentinel".into()))
        );
        assert_eq!(
            StoreUrl::parse("redis:///0"),
            Err(StoreUrlError::RedisNoHost("redis".into()))
        );
        assert_eq!(
            StoreUrl::parse("rediss://user:pw@/"),
            Err(StoreUrlError::RedisNoHost("rediss".into()))
        );
        assert_eq!(
            StoreUrl::parse("mysql://db"),
            Err(StoreUrlError::UnknownScheme("mysql".into()))
        );
        assert_eq!(
            StoreUrl::parse("postgres:///tessera"),
            Err(StoreUrlError::PostgresNoHost("postgres".into()))
        );
        assert!(matches!(
            StoreUrl::parse("./data/t.db"),
            Err(StoreUrlError::NotAUrl(_))
        ));
        let msg = StoreUrl::parse("rediss+sentinel://x").unwrap_err().to_string();
        assert!(msg.contains("not available"), "{msg}");
    }
}
