//! The shared store conformance suite, against PostgreSQL (see
//! `tessera_postgres::testing`): each case in a fresh schema of its own.
#![forbid(unsafe_code)]

use std::sync::Arc;

use tessera_postgres::PostgresStore;
use tessera_postgres::testing as support;

async fn make_store() -> Arc<PostgresStore> {
    Arc::new(support::fresh_store().await)
}

tessera_conformance::conformance_suite!(make_store);
