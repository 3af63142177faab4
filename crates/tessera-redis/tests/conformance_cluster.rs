//! The shared store conformance suite, unchanged, on a private Redis
//! Cluster of three masters (`redis+cluster://`), started once for this
//! test binary by the crate's test support: each case on a fresh prefix,
//! so the cases' keys land on all three masters.
#![forbid(unsafe_code)]

use tessera_redis::testing as support;

use std::sync::Arc;

use tessera_redis::RedisStore;

async fn make_store() -> Arc<RedisStore> {
    Arc::new(support::fresh_cluster_store(None).await)
}

tessera_conformance::conformance_suite!(make_store);
