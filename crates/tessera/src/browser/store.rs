//! Opening a store from a URL (`memory://`, `sqlite://PATH`, `redis://…`,
//! `postgres://…`, `memcached://…`),
//! the same grammar as the service's `--store` (`tessera_core::store_url`),
//! so an app and the service can share one SQLite file or one Redis.

use std::sync::Arc;

pub use tessera_core::store_url::StoreUrl;
use tessera_core::store_url::StoreUrlError;
use tessera_core::{MemoryStore, Store};

use super::config::ConfigError;

impl From<StoreUrlError> for ConfigError {
    fn from(e: StoreUrlError) -> Self {
        ConfigError::StoreUrl(e.to_string())
    }
}

/// Opens the store `url` names; for `sqlite://` the file's directory is
/// created. A `redis://` store (feature `redis`) connects on first use and
/// must be opened within a Tokio runtime.
pub fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, ConfigError> {
    match url {
        StoreUrl::Memory => Ok(Arc::new(MemoryStore::new())),
        StoreUrl::Sqlite(path) => open_sqlite(path),
        StoreUrl::Redis(url) => open_redis(url),
        StoreUrl::Memcached(url) => open_memcached(url),
        StoreUrl::Postgres(url) => open_postgres(url),
    }
}

#[cfg(feature = "redis")]
fn open_redis(url: &str) -> Result<Arc<dyn Store>, ConfigError> {
    let store = tessera_redis::RedisStore::open_lazy(url).map_err(|e| ConfigError::Store(e.to_string()))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "redis"))]
fn open_redis(_url: &str) -> Result<Arc<dyn Store>, ConfigError> {
    Err(StoreUrlError::RedisNotBuilt.into())
}

#[cfg(feature = "memcached")]
fn open_memcached(url: &str) -> Result<Arc<dyn Store>, ConfigError> {
    let store =
        tessera_memcached::MemcachedStore::open_lazy(url).map_err(|e| ConfigError::Store(e.to_string()))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "memcached"))]
fn open_memcached(_url: &str) -> Result<Arc<dyn Store>, ConfigError> {
    Err(StoreUrlError::MemcachedNotBuilt.into())
}

#[cfg(feature = "postgres")]
fn open_postgres(url: &str) -> Result<Arc<dyn Store>, ConfigError> {
    let store =
        tessera_postgres::PostgresStore::open_lazy(url).map_err(|e| ConfigError::Store(e.to_string()))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(_url: &str) -> Result<Arc<dyn Store>, ConfigError> {
    Err(StoreUrlError::PostgresNotBuilt.into())
}

#[cfg(feature = "sqlite")]
fn open_sqlite(path: &std::path::Path) -> Result<Arc<dyn Store>, ConfigError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| ConfigError::Store(format!("cannot create {}: {e}", dir.display())))?;
    }
    let store = tessera_sqlite::SqliteStore::open(path, tessera_sqlite::SqliteOptions::default())
        .map_err(|e| ConfigError::Store(e.to_string()))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_path: &std::path::Path) -> Result<Arc<dyn Store>, ConfigError> {
    Err(StoreUrlError::SqliteNotBuilt.into())
}
