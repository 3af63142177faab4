//! Store URLs (`memory://`, `sqlite://PATH`): one grammar for the service's
//! `--store` and the library's `SessionLayer::from_store_url`, so an app and
//! the service can name the same SQLite file the same way. Opening the store
//! is up to each face (it needs the driver crates).

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
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreUrlError {
    #[error("{0:?} is not a store URL; expected memory:// or sqlite://PATH")]
    NotAUrl(String),
    #[error(
        "sqlite:// needs a file path, e.g. sqlite://./data/tessera.db or sqlite:///var/lib/tessera/tessera.db"
    )]
    EmptyPath,
    #[error("memory:// takes no host, path or options")]
    MemoryWithPath,
    #[error("sqlite:// URLs take no query options (got {0:?})")]
    SqliteQuery(String),
    #[error("the {0}:// store is not available in this version yet; use sqlite://PATH or memory://")]
    NotYetSupported(String),
    #[error("this build was compiled without the SQLite store (feature `sqlite`)")]
    SqliteNotBuilt,
    #[error("unknown store scheme {0:?}; expected memory:// or sqlite://PATH")]
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
            s @ ("redis" | "rediss" | "redis+sentinel" | "redis+cluster") => {
                Err(StoreUrlError::NotYetSupported(s.to_owned()))
            }
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
    }

    #[test]
    fn refuses_everything_else_clearly() {
        assert_eq!(StoreUrl::parse("sqlite://"), Err(StoreUrlError::EmptyPath));
        assert_eq!(StoreUrl::parse("memory://x"), Err(StoreUrlError::MemoryWithPath));
        assert_eq!(
            StoreUrl::parse("redis://localhost:6379/0"),
            Err(StoreUrlError::NotYetSupported("redis".into()))
        );
        assert_eq!(
            StoreUrl::parse("postgres://db"),
            Err(StoreUrlError::UnknownScheme("postgres".into()))
        );
        assert!(matches!(
            StoreUrl::parse("./data/t.db"),
            Err(StoreUrlError::NotAUrl(_))
        ));
        let msg = StoreUrl::parse("redis://x").unwrap_err().to_string();
        assert!(msg.contains("not available"), "{msg}");
    }
}
