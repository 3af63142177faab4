//! [`SigningKeyStore`]: the access-token signing keys, and the
//! compare-and-set that lets processes sharing a store agree on a rotation.

use std::sync::Arc;

use tessera_core::{SigningAlg, SigningKeyRecord, SigningKeyStore, StoreError};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::support::*;

const DAY: i64 = 24 * HOUR;

pub async fn store_signing_keys_fresh_store_is_empty<S: SigningKeyStore>(store: Arc<S>) {
    let s = &*store;
    assert!(s.signing_keys().await.expect("signing_keys").is_empty());
    assert!(
        !s.delete_signing_key("kid-nonexistent")
            .await
            .expect("delete_signing_key")
    );
    if let Some(c) = complete_store() {
        assert!(all_events(&*c).await.is_empty(), "no-op calls append no events");
    }
}

pub async fn store_signing_keys<S: SigningKeyStore>(store: Arc<S>) {
    let s = &*store;
    let keys = move || async move { s.signing_keys().await.expect("signing_keys") };
    let insert_key = move |k: SigningKeyRecord, if_newest: Option<&'static str>| async move {
        s.insert_signing_key(&k, if_newest)
            .await
            .unwrap_or_else(|e| panic!("insert_signing_key {} if newest {if_newest:?}: {e}", k.kid))
    };
    // Kids sort against activation order, so a store that orders by kid
    // (or by insertion) is caught.
    let mut z = signing_key("kid-z", T0, T0.plus_millis(1));
    z.private_sealed = vec![0, 1, 0, 255, 254, 0];
    let mut m = signing_key("kid-m", T0.plus_millis(2), T0.plus_millis(DAY + 3));
    m.alg = SigningAlg::ES256;
    m.public_jwk = r#"{"kty":"EC","crv":"P-256","kid":"kid-m","note":"ünï \"q\" 'x'"}"#.to_owned();
    let mut c = signing_key("kid-c", T0.plus_millis(4), T0.plus_millis(2 * DAY));
    c.alg = SigningAlg::RS256;
    c.private_sealed = vec![42; 2048];

    assert!(
        insert_key(z.clone(), None).await,
        "the first key goes in with if_newest None"
    );
    assert_eq!(keys().await, vec![z.clone()], "every field round-trips");
    assert!(
        !insert_key(m.clone(), None).await,
        "None means: only into an empty store"
    );
    assert!(
        !insert_key(m.clone(), Some("kid-unknown")).await,
        "an unknown kid is not the newest"
    );
    assert_eq!(keys().await, vec![z.clone()], "refused inserts write nothing");

    assert!(insert_key(c.clone(), Some("kid-z")).await, "CAS on the newest");
    assert!(
        !insert_key(signing_key("kid-x", T0, T0.plus_millis(3 * DAY)), Some("kid-z")).await,
        "kid-z is no longer the newest"
    );
    // Inserted last but activating earlier: kid-c stays the newest.
    assert!(insert_key(m.clone(), Some("kid-c")).await);
    assert_eq!(
        keys().await,
        vec![z.clone(), m.clone(), c.clone()],
        "listed by activates_at, not by kid or insertion order"
    );
    assert!(
        !insert_key(signing_key("kid-y", T0, T0.plus_millis(3 * DAY)), Some("kid-m")).await,
        "the last inserted key is not the newest; the latest activation is"
    );

    // Same activates_at: the greater kid is the newer.
    let d = signing_key("kid-d", T0, c.activates_at);
    assert!(insert_key(d.clone(), Some("kid-c")).await);
    let a = signing_key("kid-a", T0, c.activates_at);
    assert!(
        !insert_key(a.clone(), Some("kid-c")).await,
        "kid-d > kid-c at the same activates_at"
    );
    assert!(insert_key(a.clone(), Some("kid-d")).await);
    assert!(
        !insert_key(signing_key("kid-b", T0, T0), Some("kid-a")).await,
        "kid-a, inserted last, sorts below kid-d"
    );
    let listed = keys().await;
    assert!(
        listed.windows(2).all(|w| w[0].activates_at <= w[1].activates_at),
        "oldest activates_at first: {:?}",
        listed.iter().map(|k| &k.kid).collect::<Vec<_>>()
    );
    let mut by_key = listed.clone();
    by_key.sort_by(|x, y| (x.activates_at, &x.kid).cmp(&(y.activates_at, &y.kid)));
    assert_eq!(
        by_key,
        vec![z.clone(), m.clone(), a.clone(), c.clone(), d.clone()],
        "exactly the accepted keys"
    );

    // A duplicate kid is never inserted.
    let mut dup = signing_key("kid-d", T0, T0.plus_millis(9 * DAY));
    dup.private_sealed = b"other".to_vec();
    let r = s.insert_signing_key(&dup, Some("kid-d")).await;
    assert!(
        matches!(r, Err(StoreError::Duplicate)),
        "a duplicate kid that passes the CAS is StoreError::Duplicate, got {r:?}"
    );
    let r = s.insert_signing_key(&dup, Some("kid-z")).await;
    assert!(
        !matches!(r, Ok(true)),
        "a duplicate kid failing the CAS is not inserted, got {r:?}"
    );
    assert_eq!(keys().await, listed, "duplicates write nothing");

    // Deletion.
    assert!(s.delete_signing_key("kid-z").await.expect("delete_signing_key"));
    assert!(
        !s.delete_signing_key("kid-z").await.expect("delete_signing_key"),
        "already deleted"
    );
    assert!(
        !s.delete_signing_key("kid-nonexistent")
            .await
            .expect("delete_signing_key")
    );
    // Deleting the newest makes the next one the newest.
    assert!(s.delete_signing_key("kid-d").await.expect("delete_signing_key"));
    let e = signing_key("kid-e", T0, T0.plus_millis(5 * DAY));
    assert!(
        !insert_key(e.clone(), Some("kid-d")).await,
        "a deleted key is not the newest"
    );
    assert!(insert_key(e.clone(), Some("kid-c")).await);
    let mut rest = keys().await;
    rest.sort_by(|x, y| (x.activates_at, &x.kid).cmp(&(y.activates_at, &y.kid)));
    assert_eq!(rest, vec![m, a, c, e]);
    if let Some(c) = complete_store() {
        assert!(all_events(&*c).await.is_empty(), "key operations log no events");
    }
}

pub async fn store_signing_key_revoke<S: SigningKeyStore>(store: Arc<S>) {
    let s = &*store;
    let a = signing_key("kid-a", T0, T0);
    let b = signing_key("kid-b", T0.plus_millis(1), T0.plus_millis(DAY));
    assert!(s.insert_signing_key(&a, None).await.expect("insert_signing_key"));
    assert!(
        s.insert_signing_key(&b, Some("kid-a"))
            .await
            .expect("insert_signing_key")
    );
    let at = T0.plus_millis(5 * MIN);
    assert!(
        !s.revoke_signing_key("kid-none", at)
            .await
            .expect("revoke_signing_key"),
        "unknown kid"
    );
    // Revoking the newest key: marked with its time, private part erased,
    // everything else kept.
    assert!(
        s.revoke_signing_key("kid-b", at)
            .await
            .expect("revoke_signing_key")
    );
    let keys = s.signing_keys().await.expect("signing_keys");
    let mut want_b = b.clone();
    want_b.revoked_at = Some(at);
    want_b.private_sealed = Vec::new();
    assert_eq!(keys, vec![a.clone(), want_b.clone()]);
    assert!(
        !s.revoke_signing_key("kid-b", at.plus_millis(1))
            .await
            .expect("revoke_signing_key"),
        "already revoked: nothing changes"
    );
    assert_eq!(
        s.signing_keys().await.expect("signing_keys"),
        vec![a.clone(), want_b]
    );
    // The revoked key still counts as the newest for the compare-and-set.
    let c = signing_key("kid-c", T0.plus_millis(2), T0.plus_millis(2 * DAY));
    assert!(
        !s.insert_signing_key(&c, Some("kid-a"))
            .await
            .expect("insert_signing_key")
    );
    assert!(
        s.insert_signing_key(&c, Some("kid-b"))
            .await
            .expect("insert_signing_key")
    );
    // A record inserted as revoked keeps its mark; deleting a revoked key works.
    let mut d = signing_key("kid-d", T0.plus_millis(3), T0.plus_millis(3 * DAY));
    d.revoked_at = Some(at);
    d.private_sealed = Vec::new();
    assert!(
        s.insert_signing_key(&d, Some("kid-c"))
            .await
            .expect("insert_signing_key")
    );
    assert_eq!(s.signing_keys().await.expect("signing_keys")[3], d);
    assert!(s.delete_signing_key("kid-b").await.expect("delete_signing_key"));
    let kids: Vec<String> = s
        .signing_keys()
        .await
        .expect("signing_keys")
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, vec!["kid-a", "kid-c", "kid-d"]);
}

pub async fn concurrent_key_rotation_one_insert<S: SigningKeyStore>(store: Arc<S>) {
    const TASKS: usize = 8;
    const ROUNDS: usize = 10;
    let s = &*store;
    let mut newest: Option<String> = None;
    for round in 0..ROUNDS {
        let created = T0.plus_millis(round as i64 * HOUR);
        let barrier = Arc::new(Barrier::new(TASKS));
        let mut tasks = JoinSet::new();
        for i in 0..TASKS {
            let (store, barrier, newest) = (store.clone(), barrier.clone(), newest.clone());
            tasks.spawn(async move {
                let mut key = signing_key(&format!("kid-{round:02}-{i}"), created, created.plus_millis(DAY));
                key.public_jwk = format!(r#"{{"kid":"{}","round":{round}}}"#, key.kid);
                barrier.wait().await;
                let r = store.insert_signing_key(&key, newest.as_deref()).await;
                (key, r)
            });
        }
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for (key, r) in join_all(tasks).await {
            match r {
                Ok(true) => winners.push(key),
                Ok(false) => losers.push(key.kid),
                Err(e) => panic!("round {round}: insert of {} failed: {e}", key.kid),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one of {TASKS} inserts with if_newest {newest:?} wins: {:?}",
            winners.iter().map(|k| &k.kid).collect::<Vec<_>>()
        );
        let listed = s.signing_keys().await.expect("signing_keys");
        assert_eq!(listed.len(), round + 1, "round {round}: one key per rotation");
        assert_eq!(
            listed.last(),
            Some(&winners[0]),
            "round {round}: the winner is the newest"
        );
        assert!(
            listed.iter().all(|k| !losers.contains(&k.kid)),
            "round {round}: no loser was stored"
        );
        newest = Some(winners[0].kid.clone());
    }
}
