//! Store URLs (`memory://`, `sqlite://PATH`, `redis://…`, `postgres://…`) and opening the
//! store they name.

use std::path::PathBuf;
use std::sync::Arc;

pub use tessera_core::store_url::{StoreUrl, StoreUrlError};
use tessera_core::{MemoryStore, Store};

use crate::config::Config;
use crate::metrics::InstrumentedStore;

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
/// A `redis://` store connects on first use (so the service can start
/// while Redis is down and answer 503 until it is back); opening it needs
/// a Tokio runtime (a blocking task of one is fine).
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, OpenError> {
    let url = config.store_url();
    match parse(&url)? {
        StoreUrl::Memory => Ok(Arc::new(InstrumentedStore::new(MemoryStore::new()))),
        StoreUrl::Sqlite(path) => open_sqlite(config, &url, path),
        StoreUrl::Redis(redis) => open_redis(&redis),
        StoreUrl::Memcached(memcached) => open_memcached(&memcached),
        StoreUrl::Postgres(pg) => open_postgres(&pg),
    }
}

/// Parses a store URL this build can open (`sqlite://` needs the `sqlite`
/// feature, `redis://` the `redis` feature, `postgres://` the `postgres`
/// feature, `memcached://` the `memcached`
/// feature).
pub fn parse(url: &str) -> Result<StoreUrl, StoreUrlError> {
    match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(_) if !cfg!(feature = "sqlite") => Err(StoreUrlError::SqliteNotBuilt),
        StoreUrl::Redis(_) if !cfg!(feature = "redis") => Err(StoreUrlError::RedisNotBuilt),
        StoreUrl::Memcached(_) if !cfg!(feature = "memcached") => Err(StoreUrlError::MemcachedNotBuilt),
        StoreUrl::Postgres(_) if !cfg!(feature = "postgres") => Err(StoreUrlError::PostgresNotBuilt),
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres(pg) => {
            // The store's options (pool_size, statement_timeout_ms, …), so
            // `tessera config check` refuses what `serve` would.
            tessera_postgres::PostgresOptions::from_url(&pg).map_err(|e| StoreUrlError::BadOptions(e.0))?;
            Ok(StoreUrl::Postgres(pg))
        }
        u => Ok(u),
    }
}

#[cfg(feature = "redis")]
fn open_redis(url: &str) -> Result<Arc<dyn Store>, OpenError> {
    let store = tessera_redis::RedisStore::open_lazy(url).map_err(|e| OpenError::Open {
        url: crate::config::mask_url_password(url),
        message: e.to_string(),
    })?;
    Ok(Arc::new(InstrumentedStore::new(store)))
}

#[cfg(not(feature = "redis"))]
fn open_redis(_url: &str) -> Result<Arc<dyn Store>, OpenError> {
    Err(StoreUrlError::RedisNotBuilt.into())
}

/// A `memcached://` store dials on first use too: the service starts while
/// memcached is down and answers 503 until it is back.
#[cfg(feature = "memcached")]
fn open_memcached(url: &str) -> Result<Arc<dyn Store>, OpenError> {
    let store = tessera_memcached::MemcachedStore::open_lazy(url).map_err(|e| OpenError::Open {
        url: url.to_owned(),
        message: e.to_string(),
    })?;
    Ok(Arc::new(InstrumentedStore::new(store)))
}

#[cfg(not(feature = "memcached"))]
fn open_memcached(_url: &str) -> Result<Arc<dyn Store>, OpenError> {
    Err(StoreUrlError::MemcachedNotBuilt.into())
}

/// A `postgres://` store connects (and migrates its schema) on first use,
/// and answers 503 while the database is down, recovering by itself.
#[cfg(feature = "postgres")]
fn open_postgres(url: &str) -> Result<Arc<dyn Store>, OpenError> {
    let store = tessera_postgres::PostgresStore::open_lazy(url).map_err(|e| OpenError::Open {
        url: crate::config::mask_url_password(url),
        message: e.to_string(),
    })?;
    Ok(Arc::new(InstrumentedStore::new(store)))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(_url: &str) -> Result<Arc<dyn Store>, OpenError> {
    Err(StoreUrlError::PostgresNotBuilt.into())
}

#[cfg(feature = "sqlite")]
fn open_sqlite(config: &Config, url: &str, path: PathBuf) -> Result<Arc<dyn Store>, OpenError> {
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
fn open_sqlite(_config: &Config, _url: &str, _path: PathBuf) -> Result<Arc<dyn Store>, OpenError> {
    Err(StoreUrlError::SqliteNotBuilt.into())
}
