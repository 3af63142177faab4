//! [`ApiKeyStore`]: the service's backend API keys.

use std::sync::Arc;

use tessera_core::secret::{self, API_KEY_ID_PREFIX};
use tessera_core::{ApiKeyRecord, ApiKeyScope, ApiKeyStore, SecretToken, StoreError, Timestamp, TokenKind};

use crate::support::*;

pub async fn store_api_keys_fresh_store_is_empty<S: ApiKeyStore>(store: Arc<S>) {
    let s = &*store;
    let tok = SecretToken::generate(TokenKind::ApiKey);
    assert!(
        s.list_api_keys().await.expect("list_api_keys").is_empty(),
        "a fresh store has no API keys"
    );
    assert!(
        s.api_key_by_hash(&tok.hash())
            .await
            .expect("api_key_by_hash")
            .is_none()
    );
    assert!(
        !s.revoke_api_key("key_nonexistent", T0)
            .await
            .expect("revoke_api_key")
    );
    if let Some(c) = complete_store() {
        assert!(all_events(&*c).await.is_empty(), "no-op calls append no events");
    }
}

pub async fn store_api_keys<S: ApiKeyStore>(store: Arc<S>) {
    let s = &*store;
    let key = |name: &str, at: Timestamp, scopes: &[ApiKeyScope]| ApiKeyRecord {
        id: secret::new_id(API_KEY_ID_PREFIX),
        name: name.to_owned(),
        hash: SecretToken::generate(TokenKind::ApiKey).hash(),
        created_at: at,
        revoked_at: None,
        scopes: scopes.to_vec(),
    };
    // Scopes round-trip as stored: one, several, all, and none at all.
    let newer = key(
        "deploy bot",
        T0.plus_millis(SEC),
        &[ApiKeyScope::Sessions, ApiKeyScope::Events],
    );
    let older = key("ünï 'quoted' \"name\"", T0, &[ApiKeyScope::Revocations]);
    let admin = key("admin", T0.plus_millis(3 * SEC), &ApiKeyScope::ALL);
    let powerless = key("none", T0.plus_millis(4 * SEC), &[]);
    // Inserted newest first: "oldest first" is by creation time.
    s.insert_api_key(&newer).await.expect("insert_api_key");
    s.insert_api_key(&older).await.expect("insert_api_key");

    let mut dup_id = key("dup id", T0.plus_millis(2 * SEC), &[]);
    dup_id.id = newer.id.clone();
    let mut dup_hash = key("dup hash", T0.plus_millis(2 * SEC), &[]);
    dup_hash.hash = older.hash;
    for (what, dup) in [("id", &dup_id), ("hash", &dup_hash)] {
        let r = s.insert_api_key(dup).await;
        assert!(matches!(r, Err(StoreError::Duplicate)), "duplicate {what}: {r:?}");
    }
    assert!(
        s.api_key_by_hash(&dup_id.hash)
            .await
            .expect("api_key_by_hash")
            .is_none(),
        "dup not written"
    );
    s.insert_api_key(&admin).await.expect("insert_api_key");
    s.insert_api_key(&powerless).await.expect("insert_api_key");
    let listed = s.list_api_keys().await.expect("list_api_keys");
    assert_eq!(
        listed,
        vec![older.clone(), newer.clone(), admin.clone(), powerless.clone()],
        "all keys, oldest first, with their scopes, nothing else"
    );
    for k in [&admin, &powerless] {
        assert_eq!(
            s.api_key_by_hash(&k.hash)
                .await
                .expect("api_key_by_hash")
                .as_ref(),
            Some(k)
        );
    }

    assert_eq!(
        s.api_key_by_hash(&newer.hash).await.expect("api_key_by_hash"),
        Some(newer.clone())
    );
    assert_eq!(
        s.api_key_by_hash(&older.hash).await.expect("api_key_by_hash"),
        Some(older.clone())
    );
    let stranger = SecretToken::generate(TokenKind::ApiKey).hash();
    assert_eq!(s.api_key_by_hash(&stranger).await.expect("api_key_by_hash"), None);

    let at = T0.plus_millis(MIN);
    assert!(s.revoke_api_key(&newer.id, at).await.expect("revoke_api_key"));
    assert!(
        !s.revoke_api_key(&newer.id, at.plus_millis(MIN))
            .await
            .expect("revoke_api_key"),
        "already revoked"
    );
    assert!(
        !s.revoke_api_key("key_nonexistent", at)
            .await
            .expect("revoke_api_key")
    );
    let revoked = ApiKeyRecord {
        revoked_at: Some(at),
        ..newer.clone()
    };
    assert_eq!(
        s.api_key_by_hash(&newer.hash).await.expect("api_key_by_hash"),
        Some(revoked.clone()),
        "a revoked key is still found, with its first revocation time"
    );
    assert_eq!(
        s.list_api_keys().await.expect("list_api_keys"),
        vec![older, revoked, admin, powerless],
        "revoked keys are listed"
    );
}
