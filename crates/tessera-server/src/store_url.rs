//! Store URLs (`memory://`, `sqlite://PATH`) and opening the store they name.

use std::path::PathBuf;
use std::sync::Arc;

use tessera_core::{MemoryStore, SessionStore};

use crate::config::Config;
use crate::metrics::InstrumentedStore;

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
    #[error("this build of tessera was compiled without the SQLite store (feature `sqlite`)")]
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
                if !cfg!(feature = "sqlite") {
                    return Err(StoreUrlError::SqliteNotBuilt);
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

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Url(#[from] StoreUrlError),
    #[error("cannot create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open store {url}: {message}")]
    Open { url: String, message: String },
}

/// Opens the store `config` names, wrapped in [`InstrumentedStore`] so
/// every call is timed. For `sqlite://` the file's directory is created.
pub fn open_store(config: &Config) -> Result<Arc<dyn SessionStore>, OpenError> {
    let url = config.store_url();
    match StoreUrl::parse(&url)? {
        StoreUrl::Memory => Ok(Arc::new(InstrumentedStore::new(MemoryStore::new()))),
        StoreUrl::Sqlite(path) => open_sqlite(config, &url, path),
    }
}

#[cfg(feature = "sqlite")]
fn open_sqlite(config: &Config, url: &str, path: PathBuf) -> Result<Arc<dyn SessionStore>, OpenError> {
    use crate::config::Synchronous;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    let synchronous = match config.sqlite.synchronous {
        Synchronous::Normal => tessera_sqlite::Synchronous::Normal,
        Synchronous::Full => tessera_sqlite::Synchronous::Full,
    };
    let opts = tessera_sqlite::SqliteOptions {
        synchronous,
        readers: 4,
    };
    let store = tessera_sqlite::SqliteStore::open(&path, opts).map_err(|e| OpenError::Open {
        url: url.to_owned(),
        message: e.to_string(),
    })?;
    Ok(Arc::new(InstrumentedStore::new(store)))
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_config: &Config, _url: &str, _path: PathBuf) -> Result<Arc<dyn SessionStore>, OpenError> {
    Err(StoreUrlError::SqliteNotBuilt.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_supported_schemes() {
        assert_eq!(StoreUrl::parse("memory://"), Ok(StoreUrl::Memory));
        if cfg!(feature = "sqlite") {
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
