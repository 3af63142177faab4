//! The shared store conformance suite, run against a fresh SQLite file per case.
#![forbid(unsafe_code)]

use std::sync::Arc;

use tessera_sqlite::{SqliteOptions, SqliteStore};

async fn make_store() -> Arc<SqliteStore> {
    // Leaked so the directory outlives the store; each case's files are
    // removed with the OS temp dir, not when the test returns.
    let dir: &'static tempfile::TempDir = Box::leak(Box::new(tempfile::tempdir().expect("temp dir")));
    Arc::new(SqliteStore::open(dir.path().join("tessera.db"), SqliteOptions::default()).expect("open store"))
}

tessera_conformance::conformance_suite!(make_store);
