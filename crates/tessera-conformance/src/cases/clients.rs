//! [`ClientStore`]: OAuth clients registered at run time.

use std::sync::Arc;

use tessera_core::{ClientRecord, ClientStore, StoreError, Timestamp};

use crate::support::*;

fn client(id: &str, at: Timestamp) -> ClientRecord {
    ClientRecord {
        client_id: id.to_owned(),
        created_at: at,
        revoked_at: None,
        registration: format!(
            r#"{{"kind":"confidential","secret_sha256":"{}","scopes":["read","write"],"note":"ünï \"quoted\" {id}"}}"#,
            "ab".repeat(32)
        ),
    }
}

pub async fn store_clients_fresh_store_is_empty<S: ClientStore>(store: Arc<S>) {
    let s = &*store;
    assert!(s.list_clients().await.expect("list_clients").is_empty());
    assert_eq!(s.client_by_id("svc").await.expect("client_by_id"), None);
    assert!(!s.revoke_client("svc", T0).await.expect("revoke_client"));
    if let Some(c) = complete_store() {
        assert!(all_events(&*c).await.is_empty(), "no-op calls append no events");
    }
}

pub async fn store_clients<S: ClientStore>(store: Arc<S>) {
    let s = &*store;
    // Ids are opaque: quotes, wildcards, colons and non-ASCII are plain bytes.
    let newer = client("billing:svc*", T0.plus_millis(SEC));
    let older = client("ïnventory 'svc'", T0);
    let same_time = client("a-same-time", T0.plus_millis(SEC));
    s.insert_client(&newer).await.expect("insert_client");
    s.insert_client(&older).await.expect("insert_client");
    s.insert_client(&same_time).await.expect("insert_client");

    let mut dup = client("billing:svc*", T0.plus_millis(2 * SEC));
    dup.registration = "{}".into();
    let r = s.insert_client(&dup).await;
    assert!(matches!(r, Err(StoreError::Duplicate)), "duplicate id: {r:?}");
    assert_eq!(
        s.client_by_id(&newer.client_id).await.expect("client_by_id"),
        Some(newer.clone()),
        "the duplicate wrote nothing; the registration is kept byte for byte"
    );
    assert_eq!(
        s.list_clients().await.expect("list_clients"),
        vec![older.clone(), same_time.clone(), newer.clone()],
        "oldest first, then by id"
    );
    assert_eq!(
        s.client_by_id("billing:svc").await.expect("client_by_id"),
        None,
        "no prefix match"
    );
    assert_eq!(
        s.client_by_id("billing:svc?").await.expect("client_by_id"),
        None,
        "no pattern match"
    );

    let at = T0.plus_millis(MIN);
    assert!(
        s.revoke_client(&newer.client_id, at)
            .await
            .expect("revoke_client")
    );
    assert!(
        !s.revoke_client(&newer.client_id, at.plus_millis(MIN))
            .await
            .expect("revoke_client"),
        "already revoked"
    );
    assert!(!s.revoke_client("nobody", at).await.expect("revoke_client"));
    let revoked = ClientRecord {
        revoked_at: Some(at),
        ..newer.clone()
    };
    assert_eq!(
        s.client_by_id(&newer.client_id).await.expect("client_by_id"),
        Some(revoked.clone()),
        "a revoked client is still found, with its first revocation time"
    );
    assert_eq!(
        s.list_clients().await.expect("list_clients"),
        vec![older, same_time, revoked],
        "revoked clients are listed"
    );
}

/// Of concurrent registrations of one id exactly one is stored.
pub async fn concurrent_client_inserts_one_wins<S: ClientStore>(store: Arc<S>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = client("racer", T0.plus_millis(i));
            c.registration = format!("{{\"n\":{i}}}");
            (s.insert_client(&c).await, c)
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            (Ok(()), c) => won.push(c),
            (Err(StoreError::Duplicate), _) => {}
            (Err(e), _) => panic!("insert_client: {e}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one registration wins");
    assert_eq!(
        store.list_clients().await.expect("list_clients"),
        won,
        "only the winner is stored"
    );
}
