//! Opening a store from a URL (`memory://`, `sqlite://PATH`), as the service
//! does, so an app and the service can share one SQLite file.

use std::path::PathBuf;
use std::sync::Arc;

use tessera_core::{MemoryStore, SessionStore};

use super::config::ConfigError;

/// A parsed store URL (same grammar as the service's `--store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory://`: in-process, lost on exit.
    Memory,
    /// `sqlite://PATH`, relative (`sqlite://./data/t.db`) or absolute
    /// (`sqlite:///var/lib/app/t.db`).
    Sqlite(PathBuf),
}

impl StoreUrl {
    pub fn parse(url: &str) -> Result<StoreUrl, ConfigError> {
        let err = |m: &str| Err(ConfigError::StoreUrl(m.to_owned()));
        let Some((scheme, rest)) = url.split_once("://") else {
            return err("not a store URL; expected memory:// or sqlite://PATH");
        };
        match scheme.to_ascii_lowercase().as_str() {
            "memory" if rest.is_empty() => Ok(StoreUrl::Memory),
            "memory" => err("memory:// takes no host, path or options"),
            "sqlite" if rest.contains('?') => err("sqlite:// URLs take no query options"),
            "sqlite" if rest.is_empty() => {
                err("sqlite:// needs a file path, e.g. sqlite://./data/sessions.db")
            }
            "sqlite" => Ok(StoreUrl::Sqlite(PathBuf::from(rest))),
            _ => err("unknown store scheme; expected memory:// or sqlite://PATH"),
        }
    }

    /// Opens the store; for `sqlite://` the file's directory is created.
    pub fn open(&self) -> Result<Arc<dyn SessionStore>, ConfigError> {
        match self {
            StoreUrl::Memory => Ok(Arc::new(MemoryStore::new())),
            StoreUrl::Sqlite(path) => open_sqlite(path),
        }
    }
}

#[cfg(feature = "sqlite")]
fn open_sqlite(path: &std::path::Path) -> Result<Arc<dyn SessionStore>, ConfigError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| ConfigError::Store(format!("cannot create {}: {e}", dir.display())))?;
    }
    let store = tessera_sqlite::SqliteStore::open(path, tessera_sqlite::SqliteOptions::default())
        .map_err(|e| ConfigError::Store(e.to_string()))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_path: &std::path::Path) -> Result<Arc<dyn SessionStore>, ConfigError> {
    Err(ConfigError::StoreUrl(
        "this build of tessera has no SQLite store (feature `sqlite`)".to_owned(),
    ))
}
