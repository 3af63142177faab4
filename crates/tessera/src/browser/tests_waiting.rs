//! The layer over a store whose lookups wait (like a networked store): a
//! safe request must take the general path and behave exactly as over the
//! memory store, whose lookups never wait.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tessera_core::secret::TokenHash;
use tessera_core::store::{CreateOptions, CreateOutcome, SessionStore, StoreResult};
use tessera_core::{
    AuthInput, DeviceInput, MemoryStore, NewEvent, RevokeReason, SessionPolicy, SessionRecord, Sessions,
    SystemClock, Timestamp,
};
use tower::ServiceExt;

use super::*;

/// The memory store's sessions (all the layer uses), but every session
/// lookup yields to the runtime first.
#[derive(Default)]
struct Waiting(MemoryStore);

#[async_trait]
impl SessionStore for Waiting {
    async fn create(
        &self,
        s: &SessionRecord,
        o: &CreateOptions,
        e: &[NewEvent],
    ) -> StoreResult<CreateOutcome> {
        self.0.create(s, o, e).await
    }
    async fn get(&self, handle: &str) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.0.get(handle).await
    }
    async fn get_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Arc<SessionRecord>>> {
        tokio::task::yield_now().await;
        self.0.get_by_token(hash).await
    }
    async fn touch(&self, h: &str, t: &TokenHash, seen: Timestamp, idle: Timestamp) -> StoreResult<bool> {
        self.0.touch(h, t, seen, idle).await
    }
    async fn update(&self, s: &SessionRecord, v: u64, e: &[NewEvent]) -> StoreResult<bool> {
        self.0.update(s, v, e).await
    }
    async fn list_by_subject(&self, subject: &str) -> StoreResult<Vec<Arc<SessionRecord>>> {
        self.0.list_by_subject(subject).await
    }
    async fn revoke_subject(
        &self,
        subject: &str,
        except: Option<&str>,
        reason: RevokeReason,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        self.0.revoke_subject(subject, except, reason, now).await
    }
    async fn revoke_all_active(&self, reason: RevokeReason, now: Timestamp, batch: u32) -> StoreResult<u32> {
        self.0.revoke_all_active(reason, now, batch).await
    }
    async fn sweep(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        self.0.sweep(now, batch).await
    }
    async fn count_active(&self, now: Timestamp) -> StoreResult<u64> {
        self.0.count_active(now).await
    }
}

async fn login(s: Session) -> Result<&'static str, Error> {
    s.login("alice", AuthInput::default(), DeviceInput::default())
        .await?;
    Ok("ok")
}

async fn me(RequireSession(s): RequireSession) -> String {
    s.subject().unwrap_or_default()
}

async fn logout(s: Session) -> Result<&'static str, Error> {
    s.logout().await?;
    Ok("bye")
}

fn app(store: Arc<dyn SessionStore>) -> (Router, SessionLayer) {
    let sessions = Sessions::new(store, Arc::new(SystemClock), SessionPolicy::default());
    let layer = SessionLayer::new(sessions, CookieConfig::default());
    let app = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .layer(layer.clone());
    (app, layer)
}

struct Answer {
    status: StatusCode,
    set_cookie: Vec<String>,
    cache_control: Option<String>,
    body: String,
}

async fn send(app: &Router, method: &str, path: &str, cookie: Option<&str>) -> Answer {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "app.example")
        .header("sec-fetch-site", "same-origin");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    let resp = app.clone().oneshot(b.body(Body::empty()).unwrap()).await.unwrap();
    let set_cookie = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let cache_control = resp
        .headers()
        .get(header::CACHE_CONTROL)
        .map(|v| v.to_str().unwrap().to_owned());
    let status = resp.status();
    let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Answer {
        status,
        set_cookie,
        cache_control,
        body,
    }
}

/// The whole sign-in cycle; returns whether the layer ever saw the store wait.
async fn cycle(store: Arc<dyn SessionStore>) -> bool {
    let (app, layer) = app(store);
    let r = send(&app, "POST", "/login", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = r.set_cookie[0].split(';').next().unwrap().to_owned();
    for _ in 0..2 {
        let r = send(&app, "GET", "/me", Some(&cookie)).await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "alice"));
        assert_eq!(r.cache_control.as_deref(), Some("no-store"));
        assert!(r.set_cookie.is_empty());
    }
    // A cookie the server never issued is refused and expired.
    let forged = format!("__Host-tessera=tss_{}", "A".repeat(43));
    let r = send(&app, "GET", "/me", Some(&forged)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.set_cookie[0].contains("Max-Age=0"), "{:?}", r.set_cookie);
    // Revocation is seen by the next request.
    assert_eq!(
        send(&app, "POST", "/logout", Some(&cookie)).await.status,
        StatusCode::OK
    );
    let r = send(&app, "GET", "/me", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.set_cookie[0].contains("Max-Age=0"), "{:?}", r.set_cookie);
    layer.shared.store_waits.0.load(Ordering::Relaxed)
}

#[tokio::test]
async fn a_store_that_waits_gets_the_same_answers() {
    assert!(cycle(Arc::new(Waiting::default())).await);
}

#[tokio::test]
async fn the_memory_store_never_waits() {
    assert!(!cycle(Arc::new(MemoryStore::new())).await);
}
