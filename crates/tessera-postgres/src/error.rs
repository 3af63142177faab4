//! How driver failures become [`StoreError`]s.

use tessera_core::StoreError;
use tokio_postgres::error::SqlState;

/// A failure inside one store operation: the driver's (retried when it is
/// a serialization failure or a deadlock) or the operation's own.
#[derive(Debug)]
pub(crate) enum Fail {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Pg(e) => map(e),
            Fail::Store(e) => e,
        }
    }
}

/// Maps a driver error: a uniqueness violation is
/// [`StoreError::Duplicate`]; everything else (a lost connection, a
/// statement timeout, a refused login, a missing table) is
/// [`StoreError::Unavailable`], which callers treat as "fail closed".
pub(crate) fn map(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if *db.code() == SqlState::UNIQUE_VIOLATION => StoreError::Duplicate,
        Some(db) => StoreError::Unavailable(format!("PostgreSQL: {} ({})", db.message(), db.code().code())),
        None => StoreError::Unavailable(format!("PostgreSQL: {e}")),
    }
}

/// Whether the whole transaction may simply be run again: PostgreSQL
/// aborted it to break a deadlock or a serialization conflict, and nothing
/// of it was committed.
pub(crate) fn retryable(f: &Fail) -> bool {
    matches!(f, Fail::Pg(e) if e.code().is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    }))
}
