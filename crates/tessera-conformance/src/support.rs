//! Fixtures shared by the cases: record builders, a `Sessions` on a
//! `ManualClock`, snapshots of the store, and error names.

use std::sync::Arc;

use serde_json::{Map, Value};
use tessera_core::secret::{self, SESSION_HANDLE_PREFIX};
use tessera_core::{
    AuthInfo, CreateOptions, CreateOutcome, CreateSession, DeviceInfo, Error, Event, EventKind, EventQuery,
    EventStore, IssuedSession, ManualClock, NewEvent, RefreshFamily, SecretToken, SessionPolicy,
    SessionRecord, SessionStore, Sessions, SigningAlg, SigningKeyRecord, Store, Timestamp, TokenKind,
};

/// The suite's "now" at the start of every case. It has a non-zero
/// millisecond part so a store that keeps whole seconds is caught.
pub const T0: Timestamp = Timestamp::from_unix_millis(1_767_225_600_123);

pub const SEC: i64 = 1_000;
pub const MIN: i64 = 60 * SEC;
pub const HOUR: i64 = 60 * MIN;

/// A new session record of `subject` created at `at`, with a 30 min idle and
/// 8 h absolute window, and the token whose hash it holds.
pub fn session(subject: &str, at: Timestamp) -> (SecretToken, SessionRecord) {
    let token = SecretToken::generate(TokenKind::Session);
    let rec = SessionRecord {
        handle: secret::new_id(SESSION_HANDLE_PREFIX),
        token_hash: token.hash(),
        subject: subject.to_owned(),
        version: 0,
        created_at: at,
        last_seen_at: at,
        idle_timeout_ms: 30 * MIN,
        idle_expires_at: at.plus_millis(30 * MIN),
        absolute_expires_at: at.plus_millis(8 * HOUR),
        auth: AuthInfo {
            level: 1,
            methods: vec!["pwd".to_owned()],
            time: at,
        },
        device: DeviceInfo {
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0".to_owned()),
            ip: Some("192.0.2.10".to_owned()),
            label: "Firefox on Linux".to_owned(),
        },
        data: Map::new(),
        binding: None,
        revoked: None,
    };
    (token, rec)
}

/// A session whose handle sorts where the test wants it among others with
/// the same `created_at` (`rank` replaces the first character after `ses_`).
pub fn session_ranked(subject: &str, at: Timestamp, rank: char) -> (SecretToken, SessionRecord) {
    let (t, mut r) = session(subject, at);
    r.handle.replace_range(4..5, &rank.to_string());
    (t, r)
}

/// A session that is already past its idle expiry at `now` (created 2 h
/// before, 30 min idle window never slid).
pub fn expired_session(subject: &str, now: Timestamp) -> (SecretToken, SessionRecord) {
    session(subject, now.plus_millis(-2 * HOUR))
}

/// A new generation-0 refresh family of `session` issued at `at` to client
/// `app`, and its first refresh token.
pub fn refresh_family(session: &SessionRecord, at: Timestamp) -> (SecretToken, RefreshFamily) {
    let token = SecretToken::generate(TokenKind::Refresh);
    let family = RefreshFamily {
        id: secret::new_id("rtf_"),
        handle: session.handle.clone(),
        session_token_hash: session.token_hash,
        client_id: "app".to_owned(),
        scope: vec!["openid".to_owned(), "profile".to_owned()],
        audience: vec!["tessera".to_owned()],
        generation: 0,
        created_at: at,
        rotated_at: at,
        current_sealed: None,
        binding: None,
        revoked: None,
    };
    (token, family)
}

/// An event the token service would log with a refresh-family write.
pub fn refreshed_event(session: &SessionRecord, at: Timestamp) -> NewEvent {
    NewEvent::new(EventKind::Refreshed, session, at)
}

/// A signing key record; the key material is made-up bytes (stores keep it
/// opaque).
pub fn signing_key(kid: &str, created_at: Timestamp, activates_at: Timestamp) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.to_owned(),
        alg: SigningAlg::EdDSA,
        created_at,
        activates_at,
        private_sealed: format!("sealed:{kid}").into_bytes(),
        public_jwk: format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"{kid}","alg":"EdDSA","use":"sig"}}"#
        ),
        revoked_at: None,
    }
}

/// A JSON object from a `json!` literal; panics if it is not an object.
pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("fixture is not a JSON object: {other}"),
    }
}

pub fn created_event(rec: &SessionRecord) -> NewEvent {
    NewEvent::new(EventKind::Created, rec, rec.created_at)
}

/// Inserts `rec` with its `created` event and no replace or limit.
pub async fn insert(store: &dyn SessionStore, rec: &SessionRecord) {
    let opts = CreateOptions {
        now: rec.created_at,
        ..CreateOptions::default()
    };
    let out = store
        .create(rec, &opts, &[created_event(rec)])
        .await
        .expect("create of a fresh record");
    assert_eq!(
        out,
        CreateOutcome::Created { evicted: vec![] },
        "plain create evicts nothing"
    );
}

/// The stored record, which the test expects to exist.
pub async fn get(store: &dyn SessionStore, handle: &str) -> SessionRecord {
    let r = store.get(handle).await.expect("store.get");
    SessionRecord::clone(&r.unwrap_or_else(|| panic!("session {handle} should be stored")))
}

/// Replaces `rec` through `update`, bumping its version; asserts it swapped.
pub async fn update_ok(store: &dyn SessionStore, next: &SessionRecord, events: &[NewEvent]) {
    assert!(
        store
            .update(next, next.version - 1, events)
            .await
            .expect("store.update"),
        "update of {} at version {} should swap",
        next.handle,
        next.version - 1
    );
}

/// Every event in the store, paging 1000 at a time.
pub async fn all_events(store: &dyn EventStore) -> Vec<Event> {
    events_matching(store, EventQuery::default()).await
}

/// Every event matching `q` (its `after` and `limit` are ignored): pages
/// through with the cursor.
pub async fn events_matching(store: &dyn EventStore, mut q: EventQuery) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    q.after = 0;
    q.limit = 1000;
    loop {
        let page = store.events(&q).await.expect("store.events");
        let n = page.len();
        assert!(n <= 1000, "events returned {n} rows for limit 1000");
        if let Some(last) = page.last() {
            q.after = last.id;
        }
        out.extend(page);
        if n < 1000 {
            return out;
        }
    }
}

/// The events whose handle is `handle`.
pub async fn events_of(store: &dyn EventStore, handle: &str) -> Vec<Event> {
    events_matching(
        store,
        EventQuery {
            handle: Some(handle.to_owned()),
            ..EventQuery::default()
        },
    )
    .await
}

/// Event ids start above 0 (the cursor `after = 0` means "from the start")
/// and strictly increase in write order.
pub fn assert_ids_increasing(events: &[Event]) {
    if let Some(first) = events.first() {
        assert!(
            first.id >= 1,
            "event ids start at 1 or more, else `after = 0` hides one: {}",
            first.id
        );
    }
    for w in events.windows(2) {
        assert!(
            w[0].id < w[1].id,
            "event ids strictly increase: {} then {}",
            w[0].id,
            w[1].id
        );
    }
}

tokio::task_local! {
    static COMPLETE: Arc<dyn Store>;
}

/// The store under test as a complete [`Store`], when the suite runs on one
/// ([`conformance_suite!`](crate::conformance_suite)); `None` under a
/// capability's own macro.
///
/// A case is bound by the capabilities it exercises, so a store that has
/// only those can run it; on a complete store its "nothing was written"
/// checks also cover the records it cannot reach otherwise (a session write
/// adds no API key, a refused rotation no signing key).
pub fn complete_store() -> Option<Arc<dyn Store>> {
    COMPLETE.try_with(Arc::clone).ok()
}

/// Runs `case` on `store` with [`complete_store`] set. Not public API; used
/// by the macros.
#[doc(hidden)]
pub async fn __on_complete_store<S: Store, F: std::future::Future<Output = ()>>(
    store: Arc<S>,
    case: impl FnOnce(Arc<S>) -> F,
) {
    let complete: Arc<dyn Store> = store.clone();
    COMPLETE.scope(complete, case(store)).await;
}

/// Everything the store holds about a set of subjects, for "nothing was
/// written" checks: every session (by handle), every event, the active
/// count, and (on a complete store) the API keys.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub sessions: Vec<SessionRecord>,
    pub events: Vec<Event>,
    pub active: u64,
    pub api_keys: Option<usize>,
}

pub async fn snapshot<S: SessionStore + EventStore>(
    store: &S,
    subjects: &[&str],
    now: Timestamp,
) -> Snapshot {
    let mut sessions = Vec::new();
    for s in subjects {
        for r in store.list_by_subject(s).await.expect("list_by_subject") {
            sessions.push(SessionRecord::clone(&r));
        }
    }
    sessions.sort_by(|a, b| a.handle.cmp(&b.handle));
    let api_keys = match complete_store() {
        Some(c) => Some(c.list_api_keys().await.expect("list_api_keys").len()),
        None => None,
    };
    Snapshot {
        sessions,
        events: all_events(store).await,
        active: store.count_active(now).await.expect("count_active"),
        api_keys,
    }
}

/// The policy the domain cases use: 10 min idle, 1 h absolute, no session
/// limit, writes of the idle slide at most once a minute.
pub fn test_policy() -> SessionPolicy {
    SessionPolicy {
        idle_timeout_secs: 600,
        absolute_timeout_secs: 3600,
        max_idle_timeout_secs: 24 * 3600,
        max_absolute_timeout_secs: 7 * 24 * 3600,
        max_sessions_per_subject: None,
        max_data_bytes: 16 * 1024,
        touch_interval_secs: 60,
        max_auth_level: 9,
    }
}

/// `Sessions` over the store under test, on a clock that starts at [`T0`]
/// and only moves when the case says so.
pub struct Harness<S> {
    pub store: Arc<S>,
    pub clock: ManualClock,
    pub sessions: Sessions,
}

// Not derived: a derive would demand `S: Clone`, and stores are shared, not cloned.
impl<S> Clone for Harness<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            clock: self.clock.clone(),
            sessions: self.sessions.clone(),
        }
    }
}

impl<S: SessionStore + EventStore> Harness<S> {
    pub fn new(store: Arc<S>) -> Self {
        Self::with_policy(store, test_policy())
    }

    pub fn with_policy(store: Arc<S>, policy: SessionPolicy) -> Self {
        assert_eq!(policy.validate(), Ok(()), "the suite's own policy must be valid");
        let clock = ManualClock::new(T0);
        let sessions = Sessions::new(store.clone(), Arc::new(clock.clone()), policy);
        Self {
            store,
            clock,
            sessions,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.sessions.now()
    }

    pub fn advance_ms(&self, ms: i64) {
        self.clock.advance_millis(ms);
    }

    /// Logs `subject` in with default options.
    pub async fn login(&self, subject: &str) -> IssuedSession {
        self.sessions
            .create(login_request(subject))
            .await
            .unwrap_or_else(|e| panic!("login of {subject} failed: {e}"))
    }

    pub async fn stored(&self, handle: &str) -> SessionRecord {
        get(&*self.store, handle).await
    }

    pub async fn snapshot(&self, subjects: &[&str]) -> Snapshot {
        snapshot(&*self.store, subjects, self.now()).await
    }
}

pub fn login_request(subject: &str) -> CreateSession {
    CreateSession {
        subject: subject.to_owned(),
        ..CreateSession::default()
    }
}

/// A short, stable name for an outcome, so cases can `assert_eq!` on what
/// kind of error came back (`Error` has no `PartialEq`).
pub fn kind<T>(r: &Result<T, Error>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => error_kind(e),
    }
}

pub fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::SessionInvalid => "session_invalid",
        Error::SessionExpired => "session_expired",
        Error::SessionRevoked => "session_revoked",
        Error::NotFound => "not_found",
        Error::Validation { .. } => "validation_failed",
        Error::DataTooLarge { .. } => "payload_too_large",
        Error::Conflict => "conflict",
        Error::Store(_) => "store_error",
    }
}

/// Sorted copy, for comparing sets of handles whose order is unspecified.
pub fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Waits for every task; a panic in one is re-raised here with its own
/// message, so a failed assertion inside a task fails the case clearly.
pub async fn join_all<T: 'static>(mut set: tokio::task::JoinSet<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(set.len());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(v) => out.push(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("task did not finish: {e}"),
        }
    }
    out
}

#[cfg(test)]
mod tests;
