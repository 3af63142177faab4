use super::*;
use tessera_core::MemoryStore;

#[tokio::test]
async fn instrumented_store_times_calls() {
    let h = handle();
    let store = InstrumentedStore::new(MemoryStore::new());
    store.ping().await.unwrap();
    assert!(store.list_api_keys().await.unwrap().is_empty());
    let text = h.render();
    assert!(text.contains(STORE_DURATION), "{text}");
    assert!(text.contains("op=\"ping\""), "{text}");
}

/// The whole store contract through the decorator, so a capability
/// method it forwards wrongly (or leaves to a provided default) fails
/// here as it would on a bare store.
mod conformance {
    use super::*;

    async fn make_store() -> Arc<InstrumentedStore<MemoryStore>> {
        Arc::new(InstrumentedStore::new(MemoryStore::new()))
    }

    tessera_conformance::conformance_suite!(make_store);
}

/// Forwarded under its own label: the provided method would have been
/// timed as `find_refresh` (and `get`) instead.
#[tokio::test]
async fn instrumented_store_forwards_find_refresh_with_session() {
    let h = handle();
    let store = InstrumentedStore::new(MemoryStore::new());
    let unknown = TokenHash([1; 32]);
    assert!(store.find_refresh_with_session(&unknown).await.unwrap().is_none());
    let text = h.render();
    assert!(text.contains("op=\"find_refresh_with_session\""), "{text}");
}
