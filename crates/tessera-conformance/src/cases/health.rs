//! [`StoreHealth`]: the readiness probe.

use std::sync::Arc;

use tessera_core::StoreHealth;

pub async fn store_ping_answers<S: StoreHealth>(store: Arc<S>) {
    store.ping().await.expect("ping on a fresh store");
    // `/readyz` is polled concurrently with traffic; pings must not serialize
    // into an error.
    let pings = (0..16).map(|_| {
        let s = store.clone();
        tokio::spawn(async move { s.ping().await })
    });
    for p in futures::future::join_all(pings).await {
        p.expect("ping task").expect("concurrent ping");
    }
}
