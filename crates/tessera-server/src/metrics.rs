//! Prometheus metrics: the recorder, the HTTP middleware, and
//! [`InstrumentedStore`], the decorator that times every store call.
//!
//! Labels never carry a token, a key, a subject or a handle: routes are the
//! matched route template, never the raw path.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tessera_core::{
    ApiKeyRecord, ApiKeyStore, CreateOptions, CreateOutcome, Event, EventKind, EventQuery, EventStore,
    LeaseStore, NewEvent, RateLimitStore, RefreshFamily, RefreshLookup, RefreshStore, ReplayStore,
    RevokeReason, SessionRecord, SessionStore, SigningKeyRecord, SigningKeyStore, StoreHealth, StoreResult,
    Timestamp, TokenHash,
};

pub const HTTP_REQUESTS: &str = "tessera_http_requests_total";
pub const HTTP_DURATION: &str = "tessera_http_request_duration_seconds";
pub const VERIFY: &str = "tessera_session_verify_total";
pub const SESSIONS_ACTIVE: &str = "tessera_sessions_active";
pub const STORE_DURATION: &str = "tessera_store_operation_duration_seconds";
pub const STORE_ERRORS: &str = "tessera_store_errors_total";
pub const SWEPT: &str = "tessera_sessions_swept_total";
pub const EVENTS_DELETED: &str = "tessera_events_deleted_total";
pub const FORWARD_AUTH: &str = "tessera_forward_auth_total";
pub const RATE_LIMITED: &str = "tessera_rate_limited_total";
pub const HTTP_SHED: &str = "tessera_http_requests_shed_total";

const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide Prometheus recorder, installed on first use. If another
/// recorder is already installed (a test harness), a detached handle is
/// returned so `/metrics` still renders.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = || {
                PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), BUCKETS)
                    .unwrap_or_else(|_| PrometheusBuilder::new())
            };
            let h = match builder().install_recorder() {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder is already installed; /metrics will be empty");
                    builder().build_recorder().handle()
                }
            };
            describe();
            h
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by route template, method and status."
    );
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request latency by route template and method."
    );
    metrics::describe_counter!(
        VERIFY,
        "Session verifications by outcome (ok, invalid, expired, revoked, error)."
    );
    metrics::describe_gauge!(
        SESSIONS_ACTIVE,
        "Sessions neither expired nor revoked (updated periodically)."
    );
    metrics::describe_histogram!(
        STORE_DURATION,
        metrics::Unit::Seconds,
        "Store call latency by operation."
    );
    metrics::describe_counter!(STORE_ERRORS, "Store calls that failed, by operation.");
    metrics::describe_counter!(SWEPT, "Expired sessions deleted by the sweeper.");
    metrics::describe_counter!(
        RATE_LIMITED,
        "Requests refused with 429 by an abuse limit ([rate_limits]), by limit."
    );
    metrics::describe_counter!(
        EVENTS_DELETED,
        "Events deleted by the sweeper past [events] retention_days."
    );
    metrics::describe_counter!(
        FORWARD_AUTH,
        "Forward-auth answers (/auth/verify, /auth/logout) by outcome."
    );
    metrics::describe_counter!(
        HTTP_SHED,
        "Requests answered 503 overloaded at once: [http] max_in_flight were in progress."
    );
}

/// `tessera_http_requests_shed_total`.
pub(crate) fn shed_counter() -> &'static metrics::Counter {
    static COUNTER: OnceLock<metrics::Counter> = OnceLock::new();
    COUNTER.get_or_init(|| metrics::counter!(HTTP_SHED))
}

/// Outcome label of `tessera_session_verify_total` for a verify result.
pub fn record_verify(result: &Result<Arc<SessionRecord>, tessera_core::Error>) {
    use tessera_core::Error as E;
    let outcome = match result {
        Ok(_) => "ok",
        Err(E::SessionInvalid) => "invalid",
        Err(E::SessionExpired) => "expired",
        Err(E::SessionRevoked) => "revoked",
        Err(_) => "error",
    };
    verify_counter(outcome).increment(1);
}

/// Metric handles by their static label values, registered on first use
/// and then reused: registering allocates and hashes the labels, which
/// showed in every hot-path profile. The label values are fixed sets, so
/// the map stays small.
pub(crate) struct Registered<K, V>(OnceLock<std::sync::RwLock<FastMap<K, V>>>);

/// The handle caches are looked up on every request with keys the process
/// chose (route templates, labels), never a client's bytes, so they need no
/// flood-resistant hashing: SipHash was a tenth of the verify path's
/// metrics cost.
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

impl<K: Eq + std::hash::Hash + Copy, V: Clone> Registered<K, V> {
    pub(crate) const fn new() -> Self {
        Self(OnceLock::new())
    }

    pub(crate) fn get(&self, key: K, register: impl FnOnce() -> V) -> V {
        let map = self.0.get_or_init(Default::default);
        if let Ok(g) = map.read()
            && let Some(v) = g.get(&key)
        {
            return v.clone();
        }
        let v = register();
        if let Ok(mut g) = map.write() {
            g.insert(key, v.clone());
        }
        v
    }
}

/// The verify counters, one per outcome: a fixed array, so the busiest
/// counter is found without a lock or a reference-count bump.
fn verify_counter(outcome: &'static str) -> &'static metrics::Counter {
    const OUTCOMES: [&str; 5] = ["ok", "invalid", "expired", "revoked", "error"];
    static COUNTERS: OnceLock<[metrics::Counter; 5]> = OnceLock::new();
    let counters = COUNTERS.get_or_init(|| OUTCOMES.map(|o| metrics::counter!(VERIFY, "outcome" => o)));
    let i = OUTCOMES
        .iter()
        .position(|o| *o == outcome)
        .unwrap_or(OUTCOMES.len() - 1);
    &counters[i]
}

/// `tessera_forward_auth_total{endpoint, outcome}`.
pub(crate) fn forward_auth_counter(endpoint: &'static str, outcome: &'static str) -> metrics::Counter {
    static COUNTERS: Registered<(&'static str, &'static str), metrics::Counter> = Registered::new();
    COUNTERS.get(
        (endpoint, outcome),
        || metrics::counter!(FORWARD_AUTH, "endpoint" => endpoint, "outcome" => outcome),
    )
}

/// Standard methods by name; anything else is one label, so a client
/// cannot grow the label set (and this cache) with made-up methods.
pub(crate) fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

type HttpHandles = (metrics::Counter, metrics::Histogram);

/// The request counter and latency histogram of one (route, method,
/// status), looked up once and then reused: registering labels allocates
/// and hashes them, which showed in the verify profile. Routes are the
/// router's templates, so the cache is bounded.
pub(crate) fn http_handles(route: &str, method: &'static str, status: u16) -> HttpHandles {
    type Cache = std::sync::RwLock<FastMap<Box<str>, FastMap<(&'static str, u16), HttpHandles>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Ok(g) = cache.read()
        && let Some(h) = g.get(route).and_then(|m| m.get(&(method, status)))
    {
        return h.clone();
    }
    let handles = (
        metrics::counter!(HTTP_REQUESTS, "route" => route.to_owned(), "method" => method, "status" => status.to_string()),
        metrics::histogram!(HTTP_DURATION, "route" => route.to_owned(), "method" => method),
    );
    if let Ok(mut g) = cache.write() {
        g.entry(route.into())
            .or_default()
            .insert((method, status), handles.clone());
    }
    handles
}

/// A store decorator that times every call of the store it wraps in
/// `tessera_store_operation_duration_seconds{op}` and counts failures in
/// `tessera_store_errors_total{op}`. It implements each capability its inner
/// store has, so wrapping a complete store yields a complete store.
#[derive(Debug)]
pub struct InstrumentedStore<S> {
    inner: S,
}

impl<S> InstrumentedStore<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

/// The latency histogram of one store operation.
fn store_histogram(op: &'static str) -> metrics::Histogram {
    static HISTOGRAMS: Registered<&'static str, metrics::Histogram> = Registered::new();
    HISTOGRAMS.get(op, || metrics::histogram!(STORE_DURATION, "op" => op))
}

async fn timed<T>(op: &'static str, fut: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let start = Instant::now();
    let r = fut.await;
    store_histogram(op).record(start.elapsed().as_secs_f64());
    if r.is_err() {
        metrics::counter!(STORE_ERRORS, "op" => op).increment(1);
    }
    r
}

#[async_trait]
impl<S: SessionStore> SessionStore for InstrumentedStore<S> {
    async fn create(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
    ) -> StoreResult<CreateOutcome> {
        timed("create", self.inner.create(session, opts, events)).await
    }

    async fn get(&self, handle: &str) -> StoreResult<Option<Arc<SessionRecord>>> {
        timed("get", self.inner.get(handle)).await
    }

    async fn get_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Arc<SessionRecord>>> {
        timed("get_by_token", self.inner.get_by_token(hash)).await
    }

    async fn touch(
        &self,
        handle: &str,
        token_hash: &TokenHash,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> StoreResult<bool> {
        timed(
            "touch",
            self.inner
                .touch(handle, token_hash, last_seen_at, idle_expires_at),
        )
        .await
    }

    async fn update(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        timed("update", self.inner.update(session, expected_version, events)).await
    }

    async fn list_by_subject(&self, subject: &str) -> StoreResult<Vec<Arc<SessionRecord>>> {
        timed("list_by_subject", self.inner.list_by_subject(subject)).await
    }

    async fn revoke_subject(
        &self,
        subject: &str,
        except: Option<&str>,
        reason: RevokeReason,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        timed(
            "revoke_subject",
            self.inner.revoke_subject(subject, except, reason, now),
        )
        .await
    }

    async fn revoke_all_active(&self, reason: RevokeReason, now: Timestamp, batch: u32) -> StoreResult<u32> {
        timed(
            "revoke_all_active",
            self.inner.revoke_all_active(reason, now, batch),
        )
        .await
    }

    async fn sweep(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        timed("sweep", self.inner.sweep(now, batch)).await
    }

    async fn count_active(&self, now: Timestamp) -> StoreResult<u64> {
        timed("count_active", self.inner.count_active(now)).await
    }
}

#[async_trait]
impl<S: RefreshStore> RefreshStore for InstrumentedStore<S> {
    async fn create_refresh_family(
        &self,
        family: &RefreshFamily,
        first: &TokenHash,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        timed(
            "create_refresh_family",
            self.inner.create_refresh_family(family, first, events),
        )
        .await
    }

    async fn create_with_refresh_family(
        &self,
        session: &SessionRecord,
        opts: &CreateOptions,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> StoreResult<CreateOutcome> {
        timed(
            "create_with_refresh_family",
            self.inner
                .create_with_refresh_family(session, opts, events, family, first),
        )
        .await
    }

    async fn update_with_refresh_family(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        events: &[NewEvent],
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> StoreResult<bool> {
        timed(
            "update_with_refresh_family",
            self.inner
                .update_with_refresh_family(session, expected_version, events, family, first),
        )
        .await
    }

    async fn find_refresh(&self, hash: &TokenHash) -> StoreResult<Option<RefreshLookup>> {
        timed("find_refresh", self.inner.find_refresh(hash)).await
    }

    async fn find_refresh_with_session(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshLookup, Option<Arc<SessionRecord>>)>> {
        // Forwarded, not left to the provided method: that would make it the
        // two separate reads again (timed as `find_refresh` and `get`).
        timed(
            "find_refresh_with_session",
            self.inner.find_refresh_with_session(hash),
        )
        .await
    }

    async fn rotate_refresh(
        &self,
        rotation: &tessera_core::Rotation<'_>,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        timed("rotate_refresh", self.inner.rotate_refresh(rotation, events)).await
    }

    async fn clear_sealed_successors(&self, rotated_before: Timestamp, batch: u32) -> StoreResult<u32> {
        timed(
            "clear_sealed_successors",
            self.inner.clear_sealed_successors(rotated_before, batch),
        )
        .await
    }

    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        reason: RevokeReason,
        now: Timestamp,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        timed(
            "revoke_refresh_family",
            self.inner.revoke_refresh_family(family_id, reason, now, events),
        )
        .await
    }

    async fn refresh_families_of(&self, handle: &str) -> StoreResult<Vec<Arc<RefreshFamily>>> {
        timed("refresh_families_of", self.inner.refresh_families_of(handle)).await
    }
}

#[async_trait]
impl<S: EventStore> EventStore for InstrumentedStore<S> {
    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<Event>> {
        timed("events", self.inner.events(query)).await
    }

    async fn events_cursor_since(&self, kind: EventKind, since: Timestamp) -> StoreResult<u64> {
        timed("events_cursor_since", self.inner.events_cursor_since(kind, since)).await
    }

    async fn delete_events_before(&self, cutoff: Timestamp, batch: u32) -> StoreResult<u32> {
        timed(
            "delete_events_before",
            self.inner.delete_events_before(cutoff, batch),
        )
        .await
    }

    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        timed("append_events", self.inner.append_events(events)).await
    }
}

#[async_trait]
impl<S: SigningKeyStore> SigningKeyStore for InstrumentedStore<S> {
    async fn insert_signing_key(&self, key: &SigningKeyRecord, if_newest: Option<&str>) -> StoreResult<bool> {
        timed(
            "insert_signing_key",
            self.inner.insert_signing_key(key, if_newest),
        )
        .await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        timed("signing_keys", self.inner.signing_keys()).await
    }

    async fn delete_signing_key(&self, kid: &str) -> StoreResult<bool> {
        timed("delete_signing_key", self.inner.delete_signing_key(kid)).await
    }

    async fn revoke_signing_key(&self, kid: &str, now: Timestamp) -> StoreResult<bool> {
        timed("revoke_signing_key", self.inner.revoke_signing_key(kid, now)).await
    }
}

#[async_trait]
impl<S: ApiKeyStore> ApiKeyStore for InstrumentedStore<S> {
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        timed("insert_api_key", self.inner.insert_api_key(key)).await
    }

    async fn api_key_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<ApiKeyRecord>> {
        timed("api_key_by_hash", self.inner.api_key_by_hash(hash)).await
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        timed("list_api_keys", self.inner.list_api_keys()).await
    }

    async fn revoke_api_key(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        timed("revoke_api_key", self.inner.revoke_api_key(id, now)).await
    }
}

#[async_trait]
impl<S: tessera_core::ClientStore> tessera_core::ClientStore for InstrumentedStore<S> {
    async fn insert_client(&self, client: &tessera_core::ClientRecord) -> StoreResult<()> {
        timed("insert_client", self.inner.insert_client(client)).await
    }

    async fn client_by_id(&self, client_id: &str) -> StoreResult<Option<tessera_core::ClientRecord>> {
        timed("client_by_id", self.inner.client_by_id(client_id)).await
    }

    async fn list_clients(&self) -> StoreResult<Vec<tessera_core::ClientRecord>> {
        timed("list_clients", self.inner.list_clients()).await
    }

    async fn revoke_client(&self, client_id: &str, now: Timestamp) -> StoreResult<bool> {
        timed("revoke_client", self.inner.revoke_client(client_id, now)).await
    }
}

#[async_trait]
impl<S: LeaseStore> LeaseStore for InstrumentedStore<S> {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        timed("acquire_lease", self.inner.acquire_lease(name, holder, ttl, now)).await
    }

    async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> StoreResult<bool> {
        timed("renew_lease", self.inner.renew_lease(name, holder, ttl, now)).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool> {
        timed("release_lease", self.inner.release_lease(name, holder)).await
    }
}

#[async_trait]
impl<S: ReplayStore> ReplayStore for InstrumentedStore<S> {
    async fn use_once(&self, marker: &[u8; 32], expires_at: Timestamp, now: Timestamp) -> StoreResult<bool> {
        timed("use_once", self.inner.use_once(marker, expires_at, now)).await
    }

    async fn sweep_markers(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        timed("sweep_markers", self.inner.sweep_markers(now, batch)).await
    }
}

#[async_trait]
impl<S: RateLimitStore> RateLimitStore for InstrumentedStore<S> {
    async fn add_hits(
        &self,
        key: &[u8; 32],
        window: u64,
        hits: u64,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<tessera_core::store::WindowTotals> {
        timed(
            "add_hits",
            self.inner.add_hits(key, window, hits, expires_at, now),
        )
        .await
    }

    async fn sweep_counters(&self, now: Timestamp, batch: u32) -> StoreResult<u32> {
        timed("sweep_counters", self.inner.sweep_counters(now, batch)).await
    }
}

#[async_trait]
impl<S: StoreHealth> StoreHealth for InstrumentedStore<S> {
    async fn ping(&self) -> StoreResult<()> {
        timed("ping", self.inner.ping()).await
    }
}

#[cfg(test)]
mod tests;

/// One request refused by the abuse limit `limit`.
pub fn rate_limited(limit: &'static str) {
    metrics::counter!(RATE_LIMITED, "limit" => limit).increment(1);
}
