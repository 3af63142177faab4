use super::*;

/// The full suite's extra checks depend on this: without it every
/// "nothing was written" snapshot would quietly skip the API keys.
#[tokio::test]
async fn a_case_on_a_complete_store_sees_it() {
    assert!(complete_store().is_none(), "outside a case");
    let store = Arc::new(tessera_core::MemoryStore::new());
    __on_complete_store(store, |s| async move {
        let seen = complete_store().expect("inside the case");
        assert_eq!(
            Arc::as_ptr(&seen).cast::<()>(),
            Arc::as_ptr(&s).cast::<()>(),
            "the store under test itself"
        );
        let snap = snapshot(&*s, &[], T0).await;
        assert_eq!(snap.api_keys, Some(0));
    })
    .await;
}
