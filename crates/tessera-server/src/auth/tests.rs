use super::*;
use tessera_core::MemoryStore;

#[tokio::test]
async fn keys_authenticate_until_revoked() {
    let store = Arc::new(MemoryStore::new());
    let (rec, secret) = create_api_key(
        store.as_ref(),
        "t",
        &[ApiKeyScope::Events, ApiKeyScope::Sessions],
        Timestamp::from_unix_secs(1),
    )
    .await
    .unwrap();
    let keys = ApiKeys::new(store.clone(), Duration::ZERO);
    let header = format!("Bearer {}", secret.expose());
    let key = keys.authenticate(Some(header.as_bytes())).await.unwrap();
    assert_eq!(&*key.id, rec.id.as_str());
    assert_eq!(key.scopes, [ApiKeyScope::Sessions, ApiKeyScope::Events]);
    let lower = format!("bearer {}", secret.expose());
    assert!(keys.authenticate(Some(lower.as_bytes())).await.is_ok());
    assert!(
        store
            .revoke_api_key(&rec.id, Timestamp::from_unix_secs(2))
            .await
            .unwrap()
    );
    assert!(matches!(
        keys.authenticate(Some(header.as_bytes())).await,
        Err(ApiError::Unauthorized(_))
    ));
}

/// A revocation through the service takes effect in this process at
/// once, whatever the cache holds.
#[tokio::test]
async fn revocation_through_the_service_clears_the_cache() {
    let keys = ApiKeys::new(Arc::new(MemoryStore::new()), Duration::from_secs(3600));
    let now = Timestamp::from_unix_secs(1);
    let (rec, secret) = keys.create("t", &[ApiKeyScope::Admin], now).await.unwrap();
    let header = format!("Bearer {}", secret.expose());
    assert!(
        keys.authenticate(Some(header.as_bytes())).await.is_ok(),
        "now cached"
    );
    assert!(keys.revoke(&rec.id, now).await.unwrap());
    assert!(matches!(
        keys.authenticate(Some(header.as_bytes())).await,
        Err(ApiError::Unauthorized(_))
    ));
    assert_eq!(keys.list().await.unwrap()[0].revoked_at, Some(now));
}

#[tokio::test]
async fn malformed_and_missing_keys_are_refused() {
    let keys = ApiKeys::new(Arc::new(MemoryStore::new()), Duration::from_secs(5));
    let long = format!("Bearer {}", "a".repeat(10_000));
    for v in [
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer"),
        Some("Bearer tsk_short"),
        Some(long.as_str()),
        Some("Bearer tss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let r = keys.authenticate(v.map(str::as_bytes)).await;
        assert!(matches!(r, Err(ApiError::Unauthorized(_))), "{v:?}");
    }
    // Well-formed but unknown.
    let (_, secret) = new_api_key("x", &[ApiKeyScope::Admin], Timestamp::from_unix_secs(1));
    let h = format!("Bearer {}", secret.expose());
    assert!(keys.authenticate(Some(h.as_bytes())).await.is_err());
}
