//! The conformance suite on the reference in-process store.
#![forbid(unsafe_code)]

use std::sync::Arc;

use tessera_core::MemoryStore;

async fn make_store() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new())
}

tessera_conformance::conformance_suite!(make_store);
