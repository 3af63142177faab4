//! The shared store conformance suite, against memcached
//! (`TESSERA_TEST_MEMCACHED_URL`, or a private one): each case on a fresh
//! prefix of its own.
#![forbid(unsafe_code)]

use std::sync::Arc;

use tessera_memcached::MemcachedStore;
use tessera_memcached::testing as support;

async fn make_store() -> Arc<MemcachedStore> {
    Arc::new(support::fresh_store().await)
}

tessera_conformance::conformance_suite!(make_store);
