//! How SQLite failures become [`StoreError`]s.

use rusqlite::ffi;
use tessera_core::StoreError;

/// Maps a driver error: a uniqueness violation is [`StoreError::Duplicate`],
/// a value that does not decode is [`StoreError::Corrupt`], and everything
/// else (I/O, locks, a damaged file) is [`StoreError::Unavailable`], which
/// callers treat as "fail closed".
pub(crate) fn map(e: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    match &e {
        E::SqliteFailure(f, _)
            if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Duplicate
        }
        E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..)
        | E::Utf8Error(..)
        | E::InvalidColumnType(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

pub(crate) trait SqlResultExt<T> {
    fn store(self) -> Result<T, StoreError>;
}

impl<T> SqlResultExt<T> for rusqlite::Result<T> {
    fn store(self) -> Result<T, StoreError> {
        self.map_err(map)
    }
}
