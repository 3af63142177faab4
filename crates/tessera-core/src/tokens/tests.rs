use super::*;
use crate::access::{AccessClaims, Audience};
use crate::clients::{Client, ClientKind};
use crate::error::Error;
use crate::keys::KeyPolicy;
use crate::memory::MemoryStore;
use crate::model::{Binding, EventKind, NewEvent, RefreshFamily, RevokeReason, SessionRecord};
use crate::policy::SessionPolicy;
use crate::secret::TokenHash;
use crate::sessions::{AuthInput, CreateSession};
use crate::store::{EventQuery, EventStore, RefreshStore, SessionStore, SigningKeyStore, StoreError};
use crate::time::{Clock, ManualClock, Timestamp};

const T0: Timestamp = Timestamp::from_unix_secs(1_800_000_000);

struct H {
    svc: TokenService,
    clock: ManualClock,
    store: Arc<MemoryStore>,
}

/// A token service over `store`, with a signing key kept in `keys`,
/// reading `clock`.
async fn service_on(
    store: Arc<dyn RefreshStore>,
    keys: Arc<dyn SigningKeyStore>,
    clock: &ManualClock,
    clients: Vec<Client>,
    grace: i64,
) -> TokenService {
    let svc = keyless_service_on(store, keys, clock, clients, grace);
    svc.keys().ensure_key().await.unwrap();
    svc.keys().reload().await.unwrap();
    svc
}

/// [`service_on`] without any signing key: it cannot mint.
fn keyless_service_on(
    store: Arc<dyn RefreshStore>,
    keys: Arc<dyn SigningKeyStore>,
    clock: &ManualClock,
    clients: Vec<Client>,
    grace: i64,
) -> TokenService {
    let policy = TokenPolicy {
        reuse_grace_secs: grace,
        ..TokenPolicy::default()
    };
    keyless_service_with(store, keys, clock, clients, policy)
}

fn keyless_service_with(
    store: Arc<dyn RefreshStore>,
    keys: Arc<dyn SigningKeyStore>,
    clock: &ManualClock,
    clients: Vec<Client>,
    policy: TokenPolicy,
) -> TokenService {
    let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
    let sessions = Sessions::new(store.clone(), clock_arc.clone(), SessionPolicy::default());
    let sealer = Arc::new(Sealer::new(&Sealer::generate_key()));
    let keys = Arc::new(KeyManager::new(
        keys,
        clock_arc,
        sealer.clone(),
        KeyPolicy::default(),
    ));
    TokenService::new(
        sessions,
        store,
        keys,
        Arc::new(ClientRegistry::new(clients).unwrap()),
        sealer,
        policy,
    )
}

async fn setup_with(clients: Vec<Client>, grace: i64) -> H {
    let clock = ManualClock::new(T0);
    let store = Arc::new(MemoryStore::new());
    let svc = service_on(store.clone(), store.clone(), &clock, clients, grace).await;
    H { svc, clock, store }
}

async fn setup() -> H {
    setup_with(vec![], 10).await
}

fn confidential(id: &str, secret: &str, refresh: bool) -> Client {
    Client {
        client_id: id.into(),
        kind: ClientKind::Confidential,
        secret_sha256: Some(TokenHash::of_secret(secret.as_bytes()).0),
        scopes: vec!["read".into(), "write".into()],
        audiences: vec!["api".into()],
        refresh_tokens: refresh,
        dpop_bound_access_tokens: false,
        jwks: None,
        grant_types: vec!["refresh_token".into()],
    }
}

async fn login(h: &H, scope: &str) -> (crate::sessions::IssuedSession, IssuedTokens) {
    login_on(&h.svc, scope).await
}

/// alice logs in (password) and gets tokens of `scope` from `svc`.
async fn login_on(svc: &TokenService, scope: &str) -> (crate::sessions::IssuedSession, IssuedTokens) {
    let s = svc
        .sessions()
        .create(CreateSession {
            subject: "alice".into(),
            auth: Some(AuthInput {
                level: Some(1),
                methods: vec!["pwd".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let t = svc
        .issue_for_session(
            &s.session,
            &TokenRequest {
                scope: Some(scope.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (s, t)
}

fn default_client(h: &H) -> Client {
    h.svc.clients().get("default").unwrap().clone()
}

async fn events_of(h: &H, kind: EventKind) -> usize {
    h.store
        .events(&EventQuery {
            kind: Some(kind),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn jw_13_access_token_carries_rfc_9068_claims() {
    let h = setup().await;
    let (s, t) = login(&h, "read write").await;
    let claims = h
        .svc
        .verify_access_token(&t.access_token, &h.svc.own_token_rules())
        .expect("own token verifies");
    assert_eq!(claims.iss, h.svc.policy().issuer);
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.sid.as_deref(), Some(s.session.handle.as_str()));
    assert_eq!(claims.client_id, "default");
    assert_eq!(claims.scope.as_deref(), Some("read write"));
    assert_eq!(claims.exp - claims.iat, 300);
    assert_eq!(claims.acr.as_deref(), Some("1"));
    assert_eq!(claims.amr, Some(vec!["pwd".to_string()]));
    assert!(claims.auth_time.is_some());
    assert!(!claims.jti.is_empty());
    assert_eq!(t.scope, "read write");
    assert!(t.refresh_token.is_some());
}

#[tokio::test]
async fn rt_01_rotation_issues_new_token_and_consumes_old() {
    let h = setup().await;
    let (_, t) = login(&h, "read").await;
    let c = default_client(&h);
    let rt1 = t.refresh_token.unwrap();
    let r2 = h.svc.refresh(rt1.expose(), &c, None).await.unwrap();
    let rt2 = r2.refresh_token.unwrap();
    assert_ne!(rt1.expose(), rt2.expose());
    assert!(rt2.expose().starts_with("tsr_"));
    // The next rotation works with the successor.
    h.clock.advance_secs(1);
    let r3 = h.svc.refresh(rt2.expose(), &c, None).await.unwrap();
    assert_ne!(r3.refresh_token.unwrap().expose(), rt2.expose());
    assert_eq!(events_of(&h, EventKind::Refreshed).await, 2);
}

#[tokio::test]
async fn rt_11_retry_inside_grace_gets_the_same_successor() {
    let h = setup().await;
    let (_, t) = login(&h, "read").await;
    let c = default_client(&h);
    let rt1 = t.refresh_token.unwrap();
    let a = h.svc.refresh(rt1.expose(), &c, None).await.unwrap();
    h.clock.advance_secs(9);
    let b = h.svc.refresh(rt1.expose(), &c, None).await.unwrap();
    assert_eq!(
        a.refresh_token.unwrap().expose(),
        b.refresh_token.unwrap().expose()
    );
    assert_eq!(events_of(&h, EventKind::Refreshed).await, 1, "one rotation");
}

#[tokio::test]
async fn rt_02_reuse_after_grace_revokes_session_and_family() {
    let h = setup().await;
    let (s, t) = login(&h, "read").await;
    let c = default_client(&h);
    let rt1 = t.refresh_token.unwrap();
    let r2 = h.svc.refresh(rt1.expose(), &c, None).await.unwrap();
    let rt2 = r2.refresh_token.unwrap();
    h.clock.advance_secs(11);
    let e = h.svc.refresh(rt1.expose(), &c, None).await.unwrap_err();
    assert_eq!(e.code(), "invalid_grant");
    // The active successor is dead too, and so is the session.
    assert_eq!(
        h.svc.refresh(rt2.expose(), &c, None).await.unwrap_err().code(),
        "invalid_grant"
    );
    assert!(matches!(
        h.svc.sessions().verify(s.token.expose()).await,
        Err(Error::SessionRevoked)
    ));
    assert_eq!(events_of(&h, EventKind::RefreshTokenReuse).await, 1);
    assert_eq!(
        h.svc.introspect(&r2.access_token).await.unwrap(),
        Introspection::Inactive,
        "the access token minted from RT2 is inactive"
    );
}

#[tokio::test]
async fn rt_11_grace_zero_is_strict() {
    let h = setup_with(vec![], 0).await;
    let (_, t) = login(&h, "").await;
    let c = default_client(&h);
    let rt1 = t.refresh_token.unwrap();
    h.svc.refresh(rt1.expose(), &c, None).await.unwrap();
    assert_eq!(
        h.svc.refresh(rt1.expose(), &c, None).await.unwrap_err().code(),
        "invalid_grant"
    );
    assert_eq!(events_of(&h, EventKind::RefreshTokenReuse).await, 1);
}

/// A policy asking for an hour of grace gets at most a minute: a consumed
/// token presented 61 s after its rotation is reuse.
#[tokio::test]
async fn rt_11_grace_window_is_capped_at_60_secs() {
    let h = setup_with(vec![], 3600).await;
    assert_eq!(h.svc.policy().reuse_grace_secs, MAX_REUSE_GRACE_SECS);
    let (_, t) = login(&h, "").await;
    let c = default_client(&h);
    let rt1 = t.refresh_token.unwrap();
    h.svc.refresh(rt1.expose(), &c, None).await.unwrap();
    h.clock.advance_secs(60);
    h.svc
        .refresh(rt1.expose(), &c, None)
        .await
        .expect("inside the cap");
    h.clock.advance_secs(1);
    assert_eq!(
        h.svc.refresh(rt1.expose(), &c, None).await.unwrap_err().code(),
        "invalid_grant"
    );
    assert_eq!(events_of(&h, EventKind::RefreshTokenReuse).await, 1);
}

#[tokio::test]
async fn rt_07_refresh_narrows_never_widens() {
    let h = setup().await;
    let (_, t) = login(&h, "read write").await;
    let c = default_client(&h);
    let rt = t.refresh_token.unwrap();
    let e = h
        .svc
        .refresh(rt.expose(), &c, Some("read admin"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_scope");
    let n = h.svc.refresh(rt.expose(), &c, Some("read")).await.unwrap();
    assert_eq!(n.scope, "read");
    let claims = h
        .svc
        .verify_access_token(&n.access_token, &h.svc.own_token_rules())
        .unwrap();
    assert_eq!(claims.scope.as_deref(), Some("read"));
    // The family keeps the full grant.
    let n2 = h
        .svc
        .refresh(n.refresh_token.unwrap().expose(), &c, None)
        .await
        .unwrap();
    assert_eq!(n2.scope, "read write");
}

#[tokio::test]
async fn rt_06_token_bound_to_its_client() {
    let h = setup_with(vec![confidential("svc", "s3cret", true)], 10).await;
    let (_, t) = login(&h, "read").await;
    let svc = h.svc.clients().get("svc").unwrap().clone();
    let e = h
        .svc
        .refresh(t.refresh_token.unwrap().expose(), &svc, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_grant");
    assert_eq!(
        events_of(&h, EventKind::RefreshTokenReuse).await,
        0,
        "not a reuse"
    );
}

#[tokio::test]
async fn rt_14_client_without_refresh_tokens_gets_none() {
    let h = setup_with(vec![confidential("svc", "s3cret", false)], 10).await;
    let s = h
        .svc
        .sessions()
        .create(CreateSession {
            subject: "bob".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let t = h
        .svc
        .issue_for_session(
            &s.session,
            &TokenRequest {
                client_id: Some("svc".into()),
                scope: Some("read".into()),
                audience: Some(Audience::new(vec!["api".into()])),
                dpop_jkt: None,
                resource: None,
            },
        )
        .await
        .unwrap();
    assert!(t.refresh_token.is_none());
    let bad = h
        .svc
        .issue_for_session(
            &s.session,
            &TokenRequest {
                client_id: Some("svc".into()),
                scope: Some("admin".into()),
                audience: None,
                dpop_jkt: None,
                resource: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(bad.code(), "invalid_scope");
}

#[tokio::test]
async fn rt_04_rt_05_family_follows_session_limits() {
    let h = setup().await;
    let (_, t) = login(&h, "").await;
    let c = default_client(&h);
    let mut rt = t.refresh_token.unwrap();
    // Refreshing every 20 minutes keeps the 30-minute idle window alive…
    for _ in 0..30 {
        h.clock.advance_secs(20 * 60);
        match h.svc.refresh(rt.expose(), &c, None).await {
            Ok(n) => rt = n.refresh_token.unwrap(),
            Err(e) => {
                // …until the 8-hour absolute limit.
                assert_eq!(e.code(), "invalid_grant");
                assert!(h.clock.now() >= T0.plus_secs(8 * 3600));
                break;
            }
        }
    }
    assert!(
        h.clock.now() >= T0.plus_secs(8 * 3600),
        "absolute expiry ended the family"
    );
    // Idle: a fresh login, then 31 minutes of silence.
    let (_, t) = login(&h, "").await;
    h.clock.advance_secs(31 * 60);
    assert_eq!(
        h.svc
            .refresh(t.refresh_token.unwrap().expose(), &c, None)
            .await
            .unwrap_err()
            .code(),
        "invalid_grant"
    );
}

#[tokio::test]
async fn rt_10_logout_and_elevate_end_the_family() {
    let h = setup().await;
    let c = default_client(&h);
    let (s, t) = login(&h, "").await;
    h.svc
        .sessions()
        .elevate(
            s.token.expose(),
            AuthInput {
                level: Some(2),
                methods: vec!["otp".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        h.svc
            .refresh(t.refresh_token.unwrap().expose(), &c, None)
            .await
            .unwrap_err()
            .code(),
        "invalid_grant"
    );

    let (s, t) = login(&h, "").await;
    h.svc
        .sessions()
        .revoke_token(s.token.expose(), RevokeReason::Logout)
        .await
        .unwrap();
    assert_eq!(
        h.svc
            .refresh(t.refresh_token.unwrap().expose(), &c, None)
            .await
            .unwrap_err()
            .code(),
        "invalid_grant"
    );
}

#[tokio::test]
async fn rv_revoke_and_introspect() {
    let h = setup().await;
    let c = default_client(&h);
    let (_, t) = login(&h, "read").await;
    let rt = t.refresh_token.unwrap();
    match h.svc.introspect(rt.expose()).await.unwrap() {
        Introspection::Active(m) => {
            assert_eq!(m["active"], true);
            assert_eq!(m["client_id"], "default");
            assert_eq!(m["sub"], "alice");
        }
        Introspection::Inactive => panic!("fresh refresh token is active"),
    }
    match h.svc.introspect(&t.access_token).await.unwrap() {
        Introspection::Active(m) => {
            assert_eq!(m["scope"], "read");
            assert!(m.contains_key("exp") && m.contains_key("iat") && m.contains_key("aud"));
        }
        Introspection::Inactive => panic!("fresh access token is active"),
    }
    // RV-05: unknown tokens revoke fine, RV-09: and introspect inactive.
    h.svc.revoke("garbage", &c).await.unwrap();
    for junk in [
        "garbage",
        "tsr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "a.b.c",
        "",
    ] {
        let i = h.svc.introspect(junk).await.unwrap();
        assert_eq!(serde_json::to_string(&i).unwrap(), r#"{"active":false}"#);
    }
    // RV-06: a refresh token revoked whatever the hint; its access tokens die.
    h.svc.revoke(rt.expose(), &c).await.unwrap();
    assert_eq!(
        h.svc.introspect(rt.expose()).await.unwrap(),
        Introspection::Inactive
    );
    assert_eq!(
        h.svc.introspect(&t.access_token).await.unwrap(),
        Introspection::Inactive
    );
    assert_eq!(
        h.svc.refresh(rt.expose(), &c, None).await.unwrap_err().code(),
        "invalid_grant"
    );
}

#[tokio::test]
async fn rv_11_expired_access_token_is_inactive() {
    let h = setup().await;
    let (_, t) = login(&h, "").await;
    h.clock.advance_secs(301);
    assert_eq!(
        h.svc.introspect(&t.access_token).await.unwrap(),
        Introspection::Inactive
    );
}

#[test]
fn scope_parsing() {
    assert_eq!(parse_scope(Some("a  b a")).unwrap(), vec!["a", "b"]);
    assert_eq!(parse_scope(None).unwrap(), Vec::<String>::new());
    assert!(parse_scope(Some("a\"b")).is_err());
    assert!(parse_scope(Some("é")).is_err());
    assert!(parse_scope(Some(&"a".repeat(2000))).is_err());
}

/// At grace 0, a refresh that cannot mint its access token (no signing key
/// available) must not consume the presented token: the rotation is the
/// last step, so the client's retry once signing works again rotates
/// normally instead of being taken as theft.
#[tokio::test]
async fn rt_refresh_that_cannot_mint_leaves_the_family_unrotated_at_grace_0() {
    let h = setup_with(vec![], 0).await;
    let (s, t) = login(&h, "").await;
    let c = default_client(&h);
    let rt1 = t.refresh_token.unwrap();

    // The same store and clock, but a key manager that holds no key.
    let keyless = keyless_service_on(h.store.clone(), h.store.clone(), &h.clock, vec![], 0);
    let e = keyless.refresh(rt1.expose(), &c, None).await.unwrap_err();
    assert_eq!(e.code(), "temporarily_unavailable");
    assert_eq!(events_of(&h, EventKind::Refreshed).await, 0, "nothing rotated");

    let r = h
        .svc
        .refresh(rt1.expose(), &c, None)
        .await
        .expect("the retry rotates");
    assert!(r.refresh_token.is_some());
    assert_eq!(events_of(&h, EventKind::RefreshTokenReuse).await, 0);
    h.svc
        .sessions()
        .verify(s.token.expose())
        .await
        .expect("the session lives");
}

/// Nothing a refresh does after its rotation committed may fail it: the
/// idle slide is part of the rotation's write. A store that fails every
/// call after a rotation still lets the refresh succeed, and the session's
/// idle window was slid by the rotation itself.
#[tokio::test]
async fn refresh_makes_no_store_call_after_the_rotation() {
    let clock = ManualClock::new(T0);
    let store = Arc::new(LoggedReads::default());
    let svc = service_on(store.clone(), Arc::new(MemoryStore::new()), &clock, vec![], 0).await;
    let (s, t) = login_on(&svc, "").await;
    let c = svc.clients().get("default").unwrap().clone();
    // Past the touch throttle, so the refresh slides the idle window.
    clock.advance_secs(120);
    store
        .fail_after_rotation
        .store(true, std::sync::atomic::Ordering::SeqCst);

    let r = svc.refresh(t.refresh_token.unwrap().expose(), &c, None).await;
    assert!(r.is_ok(), "{r:?}");
    store
        .fail_after_rotation
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let now = clock.now();
    let stored = store.get(&s.session.handle).await.unwrap().unwrap();
    assert_eq!(stored.last_seen_at, now, "slid by the rotation's write");
    assert_eq!(
        stored.idle_expires_at,
        now.plus_millis(stored.idle_timeout_ms)
            .min(stored.absolute_expires_at)
    );
}

/// Inside the touch throttle a refresh slides nothing, as a verify would not.
#[tokio::test]
async fn refresh_inside_the_touch_throttle_does_not_slide() {
    let h = setup().await;
    let (s, t) = login(&h, "").await;
    let c = default_client(&h);
    h.clock.advance_secs(5);
    h.svc
        .refresh(t.refresh_token.unwrap().expose(), &c, None)
        .await
        .unwrap();
    let stored = h.store.get(&s.session.handle).await.unwrap().unwrap();
    assert_eq!(stored.last_seen_at, s.session.last_seen_at);
    assert_eq!(stored.idle_expires_at, s.session.idle_expires_at);
}

/// The memory store's sessions and refresh families (all a refresh
/// touches), logging which reads it was asked for; armed with
/// `fail_after_rotation`, it fails every call made after a rotation.
#[derive(Default)]
struct LoggedReads {
    inner: MemoryStore,
    log: std::sync::Mutex<Vec<&'static str>>,
    fail_after_rotation: std::sync::atomic::AtomicBool,
    rotated: std::sync::atomic::AtomicBool,
    /// Armed, every call after the next state-changing one fails: a
    /// crash between two writes.
    crash_after_write: std::sync::atomic::AtomicBool,
    wrote: std::sync::atomic::AtomicBool,
}

impl LoggedReads {
    fn gate(&self) -> crate::store::StoreResult<()> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.fail_after_rotation.load(SeqCst) && self.rotated.load(SeqCst) {
            return Err(StoreError::Unavailable("a store call after the rotation".into()));
        }
        if self.crash_after_write.load(SeqCst) && self.wrote.load(SeqCst) {
            return Err(StoreError::Unavailable("crashed after a write".into()));
        }
        Ok(())
    }

    /// Counts only while armed: the crash is after the next write.
    fn written(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.crash_after_write.load(SeqCst) {
            self.wrote.store(true, SeqCst);
        }
    }

    fn note(&self, read: &'static str) {
        self.log.lock().unwrap().push(read);
    }

    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

#[async_trait::async_trait]
impl SessionStore for LoggedReads {
    async fn create(
        &self,
        s: &SessionRecord,
        o: &crate::store::CreateOptions,
        e: &[NewEvent],
    ) -> crate::store::StoreResult<crate::store::CreateOutcome> {
        self.gate()?;
        let out = self.inner.create(s, o, e).await?;
        self.written();
        Ok(out)
    }
    async fn get(&self, handle: &str) -> crate::store::StoreResult<Option<Arc<SessionRecord>>> {
        self.gate()?;
        self.note("get");
        self.inner.get(handle).await
    }
    async fn get_by_token(&self, hash: &TokenHash) -> crate::store::StoreResult<Option<Arc<SessionRecord>>> {
        self.gate()?;
        self.note("get_by_token");
        self.inner.get_by_token(hash).await
    }
    async fn touch(
        &self,
        h: &str,
        t: &TokenHash,
        seen: Timestamp,
        idle: Timestamp,
    ) -> crate::store::StoreResult<bool> {
        self.gate()?;
        self.inner.touch(h, t, seen, idle).await
    }
    async fn update(&self, s: &SessionRecord, v: u64, e: &[NewEvent]) -> crate::store::StoreResult<bool> {
        self.gate()?;
        let r = self.inner.update(s, v, e).await;
        self.written();
        r
    }
    async fn list_by_subject(&self, subject: &str) -> crate::store::StoreResult<Vec<Arc<SessionRecord>>> {
        self.gate()?;
        self.inner.list_by_subject(subject).await
    }
    async fn revoke_subject(
        &self,
        subject: &str,
        except: Option<&str>,
        reason: RevokeReason,
        now: Timestamp,
    ) -> crate::store::StoreResult<Vec<String>> {
        self.gate()?;
        self.inner.revoke_subject(subject, except, reason, now).await
    }
    async fn revoke_all_active(
        &self,
        reason: RevokeReason,
        now: Timestamp,
        batch: u32,
    ) -> crate::store::StoreResult<u32> {
        self.gate()?;
        self.inner.revoke_all_active(reason, now, batch).await
    }
    async fn sweep(&self, now: Timestamp, batch: u32) -> crate::store::StoreResult<u32> {
        self.gate()?;
        self.inner.sweep(now, batch).await
    }
    async fn count_active(&self, now: Timestamp) -> crate::store::StoreResult<u64> {
        self.gate()?;
        self.inner.count_active(now).await
    }
}

#[async_trait::async_trait]
impl RefreshStore for LoggedReads {
    async fn create_refresh_family(
        &self,
        family: &RefreshFamily,
        first: &TokenHash,
        events: &[NewEvent],
    ) -> crate::store::StoreResult<()> {
        self.gate()?;
        self.inner.create_refresh_family(family, first, events).await
    }
    async fn create_with_refresh_family(
        &self,
        session: &SessionRecord,
        opts: &crate::store::CreateOptions,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> crate::store::StoreResult<crate::store::CreateOutcome> {
        self.gate()?;
        let out = self
            .inner
            .create_with_refresh_family(session, opts, events, family, first)
            .await?;
        self.written();
        Ok(out)
    }
    async fn update_with_refresh_family(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> crate::store::StoreResult<bool> {
        self.gate()?;
        let out = self
            .inner
            .update_with_refresh_family(session, expected_version, events, family, first)
            .await?;
        self.written();
        Ok(out)
    }
    async fn find_refresh(
        &self,
        hash: &TokenHash,
    ) -> crate::store::StoreResult<Option<crate::model::RefreshLookup>> {
        self.gate()?;
        self.note("find_refresh");
        self.inner.find_refresh(hash).await
    }
    async fn find_refresh_with_session(
        &self,
        hash: &TokenHash,
    ) -> crate::store::StoreResult<Option<(crate::model::RefreshLookup, Option<Arc<SessionRecord>>)>> {
        self.gate()?;
        self.note("find_refresh_with_session");
        self.inner.find_refresh_with_session(hash).await
    }
    async fn rotate_refresh(
        &self,
        r: &crate::store::Rotation<'_>,
        events: &[NewEvent],
    ) -> crate::store::StoreResult<bool> {
        self.gate()?;
        let rotated = self.inner.rotate_refresh(r, events).await?;
        if rotated {
            self.rotated.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(rotated)
    }
    async fn clear_sealed_successors(&self, before: Timestamp, batch: u32) -> crate::store::StoreResult<u32> {
        self.gate()?;
        self.inner.clear_sealed_successors(before, batch).await
    }
    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        reason: RevokeReason,
        now: Timestamp,
        events: &[NewEvent],
    ) -> crate::store::StoreResult<bool> {
        self.gate()?;
        let r = self
            .inner
            .revoke_refresh_family(family_id, reason, now, events)
            .await;
        self.written();
        r
    }
    async fn refresh_families_of(&self, handle: &str) -> crate::store::StoreResult<Vec<Arc<RefreshFamily>>> {
        self.gate()?;
        self.inner.refresh_families_of(handle).await
    }
}

/// A refresh reads the store once before it writes: the token's family and
/// the family's session come from one `find_refresh_with_session` (one SQL
/// statement on SQLite), not `find_refresh` and then `get`. The same holds
/// for a retry inside the grace window.
#[tokio::test]
async fn refresh_reads_token_and_session_in_one_store_call() {
    let clock = ManualClock::new(T0);
    let store = Arc::new(LoggedReads::default());
    let svc = service_on(
        store.clone(),
        Arc::new(MemoryStore::new()),
        &clock,
        vec![],
        TokenPolicy::default().reuse_grace_secs,
    )
    .await;
    let (_, t) = login_on(&svc, "").await;
    let c = svc.clients().get("default").unwrap().clone();
    let rt = t.refresh_token.unwrap();
    store.take();

    let rotated = svc.refresh(rt.expose(), &c, None).await.unwrap();
    assert_eq!(store.take(), ["find_refresh_with_session"], "rotation");
    clock.advance_secs(1);
    let again = svc.refresh(rt.expose(), &c, None).await.unwrap();
    assert_eq!(
        store.take(),
        ["find_refresh_with_session"],
        "retry inside the grace"
    );
    assert_eq!(
        rotated.refresh_token.unwrap().expose(),
        again.refresh_token.unwrap().expose()
    );
}

// --- Sender-constrained tokens: DPoP (RFC 9449) and mTLS (RFC 8705) ---

const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
const OTHER_JKT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

async fn login_bound(
    h: &H,
    client: Option<&str>,
    jkt: Option<&str>,
    cert: Option<Binding>,
) -> Result<IssuedTokens, OAuthError> {
    let s = h
        .svc
        .sessions()
        .create(CreateSession {
            subject: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    h.svc
        .issue_for_session_with(
            &s.session,
            &TokenRequest {
                client_id: client.map(str::to_owned),
                dpop_jkt: jkt.map(str::to_owned),
                ..Default::default()
            },
            cert,
        )
        .await
}

fn cnf_of(h: &H, at: &str) -> Option<serde_json::Value> {
    h.svc
        .verify_access_token(at, &h.svc.own_token_rules())
        .unwrap()
        .cnf
}

fn dpop(jkt: &str) -> Binding {
    Binding::Dpop { jkt: jkt.into() }
}

#[tokio::test]
async fn dp_19_dpop_jkt_binds_the_access_token_and_the_refresh_token() {
    let h = setup().await;
    let t = login_bound(&h, None, Some(JKT), None).await.unwrap();
    assert_eq!(t.token_type, "DPoP");
    assert_eq!(cnf_of(&h, &t.access_token), Some(serde_json::json!({"jkt": JKT})));
    let rt = t.refresh_token.unwrap();
    let client = default_client(&h);
    // Without a proof, or with another key: refused, nothing rotated.
    let e = h.svc.refresh(rt.expose(), &client, None).await.unwrap_err();
    assert_eq!(e.code(), "invalid_dpop_proof", "{e}");
    let e = h
        .svc
        .refresh_with(rt.expose(), &client, None, &[], Some(&dpop(OTHER_JKT)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_grant", "{e}");
    let e = h
        .svc
        .refresh_with(
            rt.expose(),
            &client,
            None,
            &[],
            Some(&Binding::Mtls { x5t_s256: JKT.into() }),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_grant", "{e}");
    // With the key: rotated, and the new access token bound again.
    let n = h
        .svc
        .refresh_with(rt.expose(), &client, None, &[], Some(&dpop(JKT)))
        .await
        .unwrap();
    assert_eq!(n.token_type, "DPoP");
    assert_eq!(cnf_of(&h, &n.access_token), Some(serde_json::json!({"jkt": JKT})));
    // The successor is bound too.
    let e = h
        .svc
        .refresh(n.refresh_token.unwrap().expose(), &client, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_dpop_proof");
}

#[tokio::test]
async fn dpop_jkt_must_be_a_thumbprint() {
    let h = setup().await;
    for bad in [
        "",
        "abc",
        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4",
        "0ZcOCORZNYy+DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
    ] {
        let e = login_bound(&h, None, Some(bad), None).await.unwrap_err();
        assert_eq!(e.code(), "invalid_request", "{bad:?}");
    }
}

#[tokio::test]
async fn unbound_refresh_token_with_a_proof_binds_the_access_token_and_the_family() {
    let h = setup().await;
    let t = login_bound(&h, None, None, None).await.unwrap();
    assert_eq!(t.token_type, "Bearer");
    assert_eq!(cnf_of(&h, &t.access_token), None);
    let n = h
        .svc
        .refresh_with(
            t.refresh_token.unwrap().expose(),
            &default_client(&h),
            None,
            &[],
            Some(&dpop(JKT)),
        )
        .await
        .unwrap();
    assert_eq!(n.token_type, "DPoP");
    assert_eq!(cnf_of(&h, &n.access_token), Some(serde_json::json!({"jkt": JKT})));
    // RFC 9449 §5: a public client's refresh tokens issued with a proof
    // are bound to its key: the successor needs it.
    let rt = n.refresh_token.unwrap();
    let e = h
        .svc
        .refresh(rt.expose(), &default_client(&h), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_dpop_proof");
    let e = h
        .svc
        .refresh_with(
            rt.expose(),
            &default_client(&h),
            None,
            &[],
            Some(&dpop(OTHER_JKT)),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_grant");
    h.svc
        .refresh_with(rt.expose(), &default_client(&h), None, &[], Some(&dpop(JKT)))
        .await
        .unwrap();
}

#[tokio::test]
async fn confidential_clients_refresh_tokens_stay_unbound() {
    // RFC 9449 §5: a confidential client's refresh token is bound to its
    // authentication, not to the DPoP key.
    let h = setup_with(vec![confidential("svc", "s3cret", true)], 10).await;
    let s = h
        .svc
        .sessions()
        .create(CreateSession {
            subject: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let t = h
        .svc
        .issue_for_session(
            &s.session,
            &TokenRequest {
                client_id: Some("svc".into()),
                scope: Some("read".into()),
                audience: Some(Audience::one("api")),
                dpop_jkt: Some(JKT.into()),
                resource: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(t.token_type, "DPoP");
    let client = h.svc.clients().get("svc").unwrap().clone();
    let n = h
        .svc
        .refresh(t.refresh_token.unwrap().expose(), &client, None)
        .await
        .unwrap();
    assert_eq!(n.token_type, "Bearer");
}

#[tokio::test]
async fn dp_20_client_that_must_use_dpop() {
    let mut c = confidential("strict", "s3cret", true);
    c.kind = ClientKind::Public;
    c.secret_sha256 = None;
    c.dpop_bound_access_tokens = true;
    c.audiences = vec!["*".into()];
    let h = setup_with(vec![c], 10).await;
    let e = login_bound(&h, Some("strict"), None, None).await.unwrap_err();
    assert_eq!(e.code(), "invalid_dpop_proof");
    let e = login_bound(
        &h,
        Some("strict"),
        None,
        Some(Binding::Mtls { x5t_s256: JKT.into() }),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.code(),
        "invalid_dpop_proof",
        "a certificate does not stand in for DPoP"
    );
    let s = h
        .svc
        .sessions()
        .create(CreateSession {
            subject: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let t = h
        .svc
        .issue_for_session(
            &s.session,
            &TokenRequest {
                client_id: Some("strict".into()),
                scope: Some("read".into()),
                audience: Some(Audience::one("api")),
                dpop_jkt: Some(JKT.into()),
                resource: None,
            },
        )
        .await
        .unwrap();
    let client = h.svc.clients().get("strict").unwrap().clone();
    let rt = t.refresh_token.unwrap();
    let e = h.svc.refresh(rt.expose(), &client, None).await.unwrap_err();
    assert_eq!(e.code(), "invalid_dpop_proof");
    h.svc
        .refresh_with(rt.expose(), &client, None, &[], Some(&dpop(JKT)))
        .await
        .unwrap();
}

#[tokio::test]
async fn mt_01_certificate_binds_the_tokens() {
    let h = setup().await;
    let cert = Binding::Mtls {
        x5t_s256: "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2".into(),
    };
    let t = login_bound(&h, None, None, Some(cert.clone())).await.unwrap();
    assert_eq!(t.token_type, "Bearer", "RFC 8705 keeps the Bearer type");
    assert_eq!(
        cnf_of(&h, &t.access_token),
        Some(serde_json::json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}))
    );
    let rt = t.refresh_token.unwrap();
    let client = default_client(&h);
    let e = h.svc.refresh(rt.expose(), &client, None).await.unwrap_err();
    assert_eq!(e.code(), "invalid_grant", "without the certificate");
    let n = h
        .svc
        .refresh_with(rt.expose(), &client, None, &[], Some(&cert))
        .await
        .unwrap();
    assert!(cnf_of(&h, &n.access_token).is_some());
}

#[tokio::test]
async fn dp_mt_03_introspection_returns_cnf_and_token_type() {
    let h = setup().await;
    let t = login_bound(&h, None, Some(JKT), None).await.unwrap();
    let Introspection::Active(m) = h.svc.introspect(&t.access_token).await.unwrap() else {
        panic!("active");
    };
    assert_eq!(m["token_type"], "DPoP");
    assert_eq!(m["cnf"], serde_json::json!({"jkt": JKT}));
    let Introspection::Active(m) = h
        .svc
        .introspect(t.refresh_token.as_ref().unwrap().expose())
        .await
        .unwrap()
    else {
        panic!("active");
    };
    assert_eq!(m["cnf"], serde_json::json!({"jkt": JKT}));
    let cert = Binding::Mtls { x5t_s256: JKT.into() };
    let t = login_bound(&h, None, None, Some(cert)).await.unwrap();
    let Introspection::Active(m) = h.svc.introspect(&t.access_token).await.unwrap() else {
        panic!("active");
    };
    assert_eq!(m["token_type"], "Bearer");
    assert_eq!(m["cnf"], serde_json::json!({"x5t#S256": JKT}));
}

/// RT-02 under a crash: the theft response is two writes (the session and
/// the family). Whichever of them a crash interrupts after, the session
/// must not stay valid: failed before, a crashed reuse left the family
/// revoked and the session verifying.
#[tokio::test]
async fn rt_02_a_crash_inside_the_theft_response_never_leaves_the_session_valid() {
    use std::sync::atomic::Ordering::SeqCst;
    let clock = ManualClock::new(T0);
    let store = Arc::new(LoggedReads::default());
    let svc = service_on(store.clone(), Arc::new(MemoryStore::new()), &clock, vec![], 0).await;
    let (s, t) = login_on(&svc, "").await;
    let c = svc.clients().get("default").unwrap().clone();
    let rt = t.refresh_token.unwrap();
    svc.refresh(rt.expose(), &c, None).await.unwrap();
    clock.advance_secs(1);

    store.crash_after_write.store(true, SeqCst);
    let reuse = svc.refresh(rt.expose(), &c, None).await;
    assert!(reuse.is_err(), "the reuse is refused: {reuse:?}");
    store.crash_after_write.store(false, SeqCst);

    let verified = svc.sessions().verify(s.token.expose()).await;
    assert!(
        matches!(verified, Err(crate::Error::SessionRevoked)),
        "after a crash between the theft response's writes the session must be ended: {verified:?}"
    );
}

/// A login with tokens is one store write: a crash right after it leaves
/// the session with its refresh family. As two writes (the session, then
/// the family) a `kill -9` between them left sessions whose refresh token
/// was never stored, listed for their subject (the crash loop found them).
#[tokio::test]
async fn a_login_with_tokens_stores_the_session_and_its_refresh_family_in_one_write() {
    use std::sync::atomic::Ordering::SeqCst;
    let clock = ManualClock::new(T0);
    let store = Arc::new(LoggedReads::default());
    let svc = service_on(store.clone(), Arc::new(MemoryStore::new()), &clock, vec![], 0).await;
    let prepared = svc.prepare(&TokenRequest::default()).await.unwrap();

    store.crash_after_write.store(true, SeqCst);
    let login = svc
        .login(
            CreateSession {
                subject: "alice".into(),
                ..Default::default()
            },
            prepared,
        )
        .await;
    store.crash_after_write.store(false, SeqCst);
    let (s, t) = login.expect("nothing after the one write may fail the login");

    let families = store.refresh_families_of(&s.session.handle).await.unwrap();
    assert_eq!(families.len(), 1, "the family was stored in the session's write");
    assert_eq!(families[0].session_token_hash, s.session.token_hash);
    assert_eq!(families[0].created_at, s.session.created_at);
    let c = svc.clients().get("default").unwrap().clone();
    svc.refresh(t.refresh_token.unwrap().expose(), &c, None)
        .await
        .expect("its refresh token works");
}

/// Step-up with tokens is one store write too: the elevated session and
/// its new refresh family.
#[tokio::test]
async fn a_step_up_with_tokens_stores_the_session_and_its_refresh_family_in_one_write() {
    use std::sync::atomic::Ordering::SeqCst;
    let clock = ManualClock::new(T0);
    let store = Arc::new(LoggedReads::default());
    let svc = service_on(store.clone(), Arc::new(MemoryStore::new()), &clock, vec![], 0).await;
    let (s, _) = login_on(&svc, "").await;
    let prepared = svc.prepare(&TokenRequest::default()).await.unwrap();

    store.crash_after_write.store(true, SeqCst);
    let stepped = svc
        .elevate(
            s.token.expose(),
            AuthInput {
                level: Some(2),
                methods: vec!["otp".into()],
            },
            prepared,
        )
        .await;
    store.crash_after_write.store(false, SeqCst);
    let (e, t) = stepped.expect("nothing after the one write may fail the step-up");

    assert_eq!(e.session.auth.level, 2);
    let families = store.refresh_families_of(&s.session.handle).await.unwrap();
    let new: Vec<_> = families
        .iter()
        .filter(|f| f.session_token_hash == e.session.token_hash)
        .collect();
    assert_eq!(new.len(), 1, "the new family was stored in the session's write");
    let c = svc.clients().get("default").unwrap().clone();
    svc.refresh(t.refresh_token.unwrap().expose(), &c, None)
        .await
        .expect("its refresh token works");
}

/// Without a signing key a login with tokens writes nothing: no session
/// is left behind for tokens that cannot be issued.
#[tokio::test]
async fn a_login_with_tokens_and_no_signing_key_writes_nothing() {
    let clock = ManualClock::new(T0);
    let store = Arc::new(MemoryStore::new());
    let svc = keyless_service_on(store.clone(), Arc::new(MemoryStore::new()), &clock, vec![], 0);
    let prepared = svc.prepare(&TokenRequest::default()).await.unwrap();
    let r = svc
        .login(
            CreateSession {
                subject: "alice".into(),
                ..Default::default()
            },
            prepared,
        )
        .await;
    assert!(
        matches!(r, Err(LoginError::Tokens(OAuthError::Unavailable(_)))),
        "{r:?}"
    );
    assert!(store.list_by_subject("alice").await.unwrap().is_empty());
}

// ------------------------------------------------------------------ client_credentials

fn service_client(id: &str) -> Client {
    Client {
        audiences: vec!["api".into(), "billing".into()],
        grant_types: vec!["client_credentials".into()],
        ..confidential(id, "s3cret", false)
    }
}

#[tokio::test]
async fn client_credentials_token_names_the_client_and_has_no_session_or_refresh_token() {
    let mut svc = service_client("svc");
    svc.audiences = vec!["api".into()];
    let h = setup_with(vec![svc], 10).await;
    let c = h.svc.find_client("svc").await.unwrap().unwrap();
    let t = h.svc.client_credentials(&c, None, &[], &[], None).await.unwrap();
    assert!(t.refresh_token.is_none());
    assert_eq!(t.token_type, "Bearer");
    // No scope asked: the registered ones; no audience: the only one.
    assert_eq!(t.scope, "read write");
    let claims = h
        .svc
        .verify_access_token(&t.access_token, &h.svc.own_token_rules())
        .unwrap();
    assert_eq!(claims.sub, "svc");
    assert_eq!(claims.client_id, "svc");
    assert_eq!(claims.sid, None);
    assert_eq!(claims.aud, Audience::one("api"));
    assert_eq!((claims.auth_time, claims.acr.as_deref()), (None, None));
    let Introspection::Active(m) = h.svc.introspect(&t.access_token).await.unwrap() else {
        panic!("inactive");
    };
    assert_eq!(m["sub"], "svc");
    assert!(!m.contains_key("sid"));
    // RFC 7009 on a session-less token: a no-op, the token stays active.
    h.svc.revoke(&t.access_token, &c).await.unwrap();
    assert!(matches!(
        h.svc.introspect(&t.access_token).await.unwrap(),
        Introspection::Active(_)
    ));
    // Expired: inactive.
    h.clock.advance_secs(h.svc.policy().access_token_ttl_secs);
    assert_eq!(
        h.svc.introspect(&t.access_token).await.unwrap(),
        Introspection::Inactive
    );
}

#[tokio::test]
async fn client_credentials_scope_and_audience_stay_within_the_registration() {
    let h = setup_with(vec![service_client("svc")], 10).await;
    let c = h.svc.find_client("svc").await.unwrap().unwrap();
    let t = h
        .svc
        .client_credentials(&c, Some("read"), &["billing".into()], &[], None)
        .await
        .unwrap();
    assert_eq!(t.scope, "read");
    let e = h
        .svc
        .client_credentials(&c, Some("read admin"), &[], &[], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_scope");
    let e = h
        .svc
        .client_credentials(&c, None, &["other".into()], &[], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_target");
    // Several audiences, none asked, the default one not among them.
    let e = h
        .svc
        .client_credentials(&c, None, &[], &[], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_target");
}

#[tokio::test]
async fn client_credentials_needs_a_confidential_client_registered_for_it() {
    let mut no_grant = service_client("nogrant");
    no_grant.grant_types = vec!["refresh_token".into()];
    let h = setup_with(vec![no_grant], 10).await;
    let c = h.svc.find_client("nogrant").await.unwrap().unwrap();
    let e = h
        .svc
        .client_credentials(&c, None, &["api".into()], &[], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unauthorized_client");
    let public = default_client(&h);
    let e = h
        .svc
        .client_credentials(&public, None, &[], &[], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unauthorized_client");
}

#[tokio::test]
async fn client_credentials_token_dies_with_its_client() {
    let clock = ManualClock::new(T0);
    let store = Arc::new(MemoryStore::new());
    let issuing = service_on(
        store.clone(),
        store.clone(),
        &clock,
        vec![service_client("svc")],
        10,
    )
    .await;
    let c = issuing.find_client("svc").await.unwrap().unwrap();
    let t = issuing
        .client_credentials(&c, None, &["api".into()], &[], None)
        .await
        .unwrap();
    // The same store and keys, the client no longer registered.
    let after = TokenService::new(
        issuing.sessions().clone(),
        store,
        issuing.keys().clone(),
        Arc::new(ClientRegistry::new(vec![]).unwrap()),
        Arc::new(Sealer::new(&Sealer::generate_key())),
        TokenPolicy::default(),
    );
    assert_eq!(
        after.introspect(&t.access_token).await.unwrap(),
        Introspection::Inactive
    );
}

#[tokio::test]
async fn client_credentials_binds_to_the_holder() {
    let h = setup_with(vec![service_client("svc")], 10).await;
    let c = h.svc.find_client("svc").await.unwrap().unwrap();
    let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    let holder = Binding::dpop(jkt).unwrap();
    let t = h
        .svc
        .client_credentials(&c, None, &["api".into()], &[], Some(&holder))
        .await
        .unwrap();
    assert_eq!(t.token_type, "DPoP");
    let claims = h
        .svc
        .verify_access_token(&t.access_token, &h.svc.own_token_rules())
        .unwrap();
    assert_eq!(claims.cnf.unwrap()["jkt"], jkt);
}
// ---------------------------------------------------------------- RFC 8707 and RFC 8693

const RS_A: &str = "https://rs-a.example";
const RS_B: &str = "https://rs-b.example";

/// A service over two registered resources and `gateway`, a confidential
/// client allowed `read write`, the audiences `orders` and `rs-a`.
async fn setup_targets() -> H {
    let clock = ManualClock::new(T0);
    let store = Arc::new(MemoryStore::new());
    let mut gateway = confidential("gateway", "s3cret", false);
    gateway.audiences = vec!["orders".into(), RS_A.into()];
    gateway.grant_types = vec![TOKEN_EXCHANGE_GRANT.into()];
    let policy = TokenPolicy {
        resources: vec![RS_A.into(), RS_B.into()],
        ..TokenPolicy::default()
    };
    let svc = keyless_service_with(store.clone(), store.clone(), &clock, vec![gateway], policy);
    svc.keys().ensure_key().await.unwrap();
    svc.keys().reload().await.unwrap();
    H { svc, clock, store }
}

fn claims_of(h: &H, at: &str) -> AccessClaims {
    h.svc.verify_access_token(at, &h.svc.own_token_rules()).unwrap()
}

fn exchange_of<'a>(subject: &'a str) -> ExchangeRequest<'a> {
    ExchangeRequest {
        subject_token: subject,
        subject_token_type: ACCESS_TOKEN_TYPE,
        ..ExchangeRequest::default()
    }
}

fn gateway(h: &H) -> Client {
    h.svc.clients().get("gateway").unwrap().clone()
}

#[tokio::test]
async fn jw_16_resource_limits_the_audience_to_that_resource() {
    let h = setup_targets().await;
    let (s, _) = login(&h, "read").await;
    let t = h
        .svc
        .issue_for_session(
            &s.session,
            &TokenRequest {
                resource: Some(Audience::one(RS_A)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let c = claims_of(&h, &t.access_token);
    assert_eq!(
        c.aud.as_slice(),
        [RS_A.to_owned()],
        "aud is only the resource asked for"
    );
    // Presented at another resource server, the token is refused.
    let at_b = crate::access::Expected {
        audience: crate::access::AudienceRule::Contains(RS_B),
        ..h.svc.own_token_rules()
    };
    assert!(
        h.svc.verify_access_token(&t.access_token, &at_b).is_err(),
        "rs-b refuses it"
    );
    // A refresh narrows to a granted resource and refuses another one.
    let rt = t.refresh_token.unwrap();
    let n = h
        .svc
        .refresh_with(rt.expose(), &default_client(&h), None, &[RS_B.into()], None)
        .await;
    assert_eq!(
        n.unwrap_err().code(),
        "invalid_target",
        "a refresh never widens the audience"
    );
    let n = h
        .svc
        .refresh_with(rt.expose(), &default_client(&h), None, &[RS_A.into()], None)
        .await
        .unwrap();
    assert_eq!(claims_of(&h, &n.access_token).aud.as_slice(), [RS_A.to_owned()]);
}

#[tokio::test]
async fn jw_16_unknown_or_disallowed_resources_are_invalid_target() {
    let h = setup_targets().await;
    let (s, _) = login(&h, "read").await;
    let ask = |client: Option<&str>, resource: &[&str]| TokenRequest {
        client_id: client.map(str::to_owned),
        resource: Some(Audience::new(resource.iter().map(|r| (*r).to_owned()).collect())),
        ..Default::default()
    };
    for (client, resource, why) in [
        (None, &["https://unknown.example"][..], "not registered"),
        (None, &["https://rs-a.example/#x"][..], "fragment"),
        (None, &["rs-a"][..], "not absolute"),
        (None, &[][..], "empty list"),
        (
            Some("gateway"),
            &[RS_B][..],
            "registered but not allowed for the client",
        ),
    ] {
        let e = h
            .svc
            .issue_for_session(&s.session, &ask(client, resource))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid_target", "{why}: {e}");
        assert_eq!(
            h.svc.prepare(&ask(client, resource)).await.unwrap_err().code(),
            "invalid_target"
        );
    }
    // Both `audience` and `resource`: one way of naming the target.
    let both = TokenRequest {
        audience: Some(Audience::one("api")),
        resource: Some(Audience::one(RS_A)),
        ..Default::default()
    };
    assert_eq!(h.svc.prepare(&both).await.unwrap_err().code(), "invalid_request");
    // The client's own explicit audience counts as registered.
    let mut t = ask(Some("gateway"), &[RS_A]);
    t.scope = Some("read".into());
    assert!(h.svc.prepare(&t).await.is_ok());
}

#[tokio::test]
async fn token_exchange_narrows_to_one_audience_with_act() {
    let h = setup_targets().await;
    let (s, t) = login(&h, "read write admin").await;
    let gw = gateway(&h);
    let aud = ["orders".to_owned()];
    let req = ExchangeRequest {
        scope: Some("read"),
        audience: &aud,
        ..exchange_of(&t.access_token)
    };
    let out = h.svc.exchange(&req, &gw, None).await.unwrap();
    assert!(
        out.refresh_token.is_none(),
        "an exchange never issues a refresh token"
    );
    assert_eq!(out.scope, "read");
    let c = claims_of(&h, &out.access_token);
    let before = claims_of(&h, &t.access_token);
    assert_eq!(c.sub, "alice");
    assert_eq!(
        c.sid.as_deref(),
        Some(s.session.handle.as_str()),
        "revoking the session revokes the exchanged token"
    );
    assert_eq!(c.client_id, "gateway");
    assert_eq!(c.aud.as_slice(), aud);
    assert_eq!(
        c.act,
        Some(serde_json::json!({"sub": "gateway"})),
        "the gateway acts for alice"
    );
    assert!(c.exp <= before.exp, "never outlives the subject token");
    assert_eq!(
        (c.acr, c.amr, c.auth_time),
        (before.acr, before.amr, before.auth_time)
    );

    // No scope: what both the subject token and the client allow.
    let req = ExchangeRequest {
        audience: &aud,
        ..exchange_of(&t.access_token)
    };
    assert_eq!(h.svc.exchange(&req, &gw, None).await.unwrap().scope, "read write");

    // A chain: exchanging the exchanged token nests the earlier actor.
    let again = ExchangeRequest {
        resource: &[RS_A.to_owned()],
        ..exchange_of(&out.access_token)
    };
    let twice = h.svc.exchange(&again, &gw, None).await.unwrap();
    let c2 = claims_of(&h, &twice.access_token);
    assert_eq!(c2.aud.as_slice(), [RS_A.to_owned()]);
    assert_eq!(
        c2.act,
        Some(serde_json::json!({"sub": "gateway", "act": {"sub": "gateway"}}))
    );

    // The session ends: so do its exchanged tokens, and exchanging them.
    h.svc
        .sessions()
        .revoke(&s.session.handle, RevokeReason::Revoked)
        .await
        .unwrap();
    assert_eq!(
        h.svc.introspect(&out.access_token).await.unwrap(),
        Introspection::Inactive
    );
    let e = h.svc.exchange(&req, &gw, None).await.unwrap_err();
    assert_eq!(e.code(), "invalid_grant");
}

#[tokio::test]
async fn token_exchange_refuses_widening_and_more_than_one_audience() {
    let h = setup_targets().await;
    let (_, t) = login(&h, "read").await;
    let gw = gateway(&h);
    let orders = ["orders".to_owned()];
    let two = ["orders".to_owned(), "api".to_owned()];
    let rs_a = [RS_A.to_owned()];
    let billing = ["billing".to_owned()];
    let unknown = ["https://unknown.example".to_owned()];
    let cases: Vec<(ExchangeRequest<'_>, &str, &str)> = vec![
        (
            ExchangeRequest {
                scope: Some("read write"),
                audience: &orders,
                ..exchange_of(&t.access_token)
            },
            "invalid_scope",
            "widening the scope",
        ),
        (
            ExchangeRequest {
                audience: &[],
                ..exchange_of(&t.access_token)
            },
            "invalid_target",
            "no audience",
        ),
        (
            ExchangeRequest {
                audience: &two,
                ..exchange_of(&t.access_token)
            },
            "invalid_target",
            "two audiences",
        ),
        (
            ExchangeRequest {
                audience: &orders,
                resource: &rs_a,
                ..exchange_of(&t.access_token)
            },
            "invalid_target",
            "audience and resource",
        ),
        (
            ExchangeRequest {
                audience: &billing,
                ..exchange_of(&t.access_token)
            },
            "invalid_target",
            "audience not allowed for the client",
        ),
        (
            ExchangeRequest {
                resource: &unknown,
                ..exchange_of(&t.access_token)
            },
            "invalid_target",
            "unknown resource",
        ),
        (
            ExchangeRequest {
                audience: &orders,
                ..exchange_of("not-a-token")
            },
            "invalid_grant",
            "a subject token that is not ours",
        ),
        (
            ExchangeRequest {
                audience: &orders,
                subject_token_type: "urn:ietf:params:oauth:token-type:saml2",
                ..exchange_of(&t.access_token)
            },
            "invalid_request",
            "another token type",
        ),
        (
            ExchangeRequest {
                audience: &orders,
                requested_token_type: Some("urn:ietf:params:oauth:token-type:refresh_token"),
                ..exchange_of(&t.access_token)
            },
            "invalid_request",
            "asking for a refresh token",
        ),
        (
            ExchangeRequest {
                audience: &orders,
                actor_token: Some(&t.access_token),
                ..exchange_of(&t.access_token)
            },
            "invalid_request",
            "actor_token without its type",
        ),
        (
            ExchangeRequest {
                audience: &orders,
                actor_token: Some(&t.access_token),
                actor_token_type: Some(ACCESS_TOKEN_TYPE),
                ..exchange_of(&t.access_token)
            },
            "invalid_grant",
            "an actor token of another client",
        ),
    ];
    for (req, code, why) in cases {
        let e = h.svc.exchange(&req, &gw, None).await.unwrap_err();
        assert_eq!(e.code(), code, "{why}: {e}");
    }
    // Public clients cannot exchange.
    let req = ExchangeRequest {
        audience: &orders,
        ..exchange_of(&t.access_token)
    };
    let e = h.svc.exchange(&req, &default_client(&h), None).await.unwrap_err();
    assert_eq!(e.code(), "unauthorized_client");
    // An expired subject token is not exchanged.
    h.clock.advance_secs(301);
    let e = h.svc.exchange(&req, &gw, None).await.unwrap_err();
    assert_eq!(e.code(), "invalid_grant");
}

#[tokio::test]
async fn token_exchange_binds_the_new_token_to_the_callers_key() {
    let h = setup_targets().await;
    let (_, t) = login(&h, "read").await;
    let orders = ["orders".to_owned()];
    let req = ExchangeRequest {
        audience: &orders,
        ..exchange_of(&t.access_token)
    };
    let out = h
        .svc
        .exchange(&req, &gateway(&h), Some(&dpop(JKT)))
        .await
        .unwrap();
    assert_eq!(out.token_type, "DPoP");
    assert_eq!(
        cnf_of(&h, &out.access_token),
        Some(serde_json::json!({"jkt": JKT}))
    );
}

/// A client registered at run time (`tessera clients create`, the
/// `ClientStore`) is a client of `tokens` at login as much as of the token
/// endpoint; once revoked it is unknown to both.
#[tokio::test]
async fn a_stored_client_gets_tokens_at_login_until_it_is_revoked() {
    use crate::store::ClientStore;
    let clock = ManualClock::new(T0);
    let store = Arc::new(MemoryStore::new());
    let svc = service_on(store.clone(), store.clone(), &clock, vec![], 10)
        .await
        .with_client_store(store.clone());
    let mut reports = confidential("reports", "s3cret", false);
    reports.grant_types = vec!["client_credentials".into()];
    let record = crate::model::ClientRecord {
        client_id: "reports".into(),
        created_at: T0,
        revoked_at: None,
        registration: crate::clients::Registration::of(&reports).to_json(),
    };
    store.insert_client(&record).await.unwrap();
    let s = svc
        .sessions()
        .create(CreateSession {
            subject: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let req = TokenRequest {
        client_id: Some("reports".into()),
        scope: Some("read".into()),
        audience: Some(Audience::one("api")),
        ..Default::default()
    };
    svc.prepare(&req).await.unwrap();
    let t = svc.issue_for_session(&s.session, &req).await.unwrap();
    assert_eq!(
        svc.verify_access_token(&t.access_token, &svc.own_token_rules())
            .unwrap()
            .client_id,
        "reports"
    );
    assert!(
        t.refresh_token.is_none(),
        "a stored client never gets refresh tokens"
    );
    // Its registration still binds: a scope it was not given is refused.
    let wider = TokenRequest {
        scope: Some("admin".into()),
        ..req.clone()
    };
    assert_eq!(svc.prepare(&wider).await.unwrap_err().code(), "invalid_scope");

    store.revoke_client("reports", T0).await.unwrap();
    assert_eq!(svc.prepare(&req).await.unwrap_err().code(), "invalid_request");
}
