//! The shared store conformance suite, against a private `redis-server`:
//! each case on a fresh prefix of its own.
#![forbid(unsafe_code)]

use tessera_redis::testing as support;

use std::sync::Arc;

use tessera_redis::RedisStore;

async fn make_store() -> Arc<RedisStore> {
    Arc::new(support::fresh_store(None).await)
}

tessera_conformance::conformance_suite!(make_store);
