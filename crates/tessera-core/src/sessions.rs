//! The session life cycle: the one place where its rules live.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::model::{
    AuthInfo, DeviceInfo, Event, EventKind, NewEvent, Revocation, RevokeReason, SessionRecord, device_label,
};
use crate::policy::SessionPolicy;
use crate::store::{CreateOptions, CreateOutcome, EventQuery, SessionStore, StoreError, Touch};
use crate::time::{Clock, Timestamp};
use crate::token::{self, SESSION_HANDLE_PREFIX, SecretToken, TokenKind};

/// How many times an operation retries after losing a compare-and-swap.
const CAS_ATTEMPTS: usize = 8;
/// Longest user agent kept; longer ones are cut (at a character boundary).
pub const MAX_USER_AGENT_BYTES: usize = 512;
pub const MAX_SUBJECT_BYTES: usize = 256;
const MAX_METHODS: usize = 16;
const MAX_METHOD_BYTES: usize = 32;
/// Largest page of `events`.
pub const MAX_EVENTS_PAGE: u32 = 1000;

/// How the subject authenticated (`auth` in requests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthInput {
    #[serde(default)]
    pub level: Option<u8>,
    #[serde(default)]
    pub methods: Vec<String>,
}

/// Device facts the application passes on (`device` in requests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceInput {
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
}

/// Per-session lifetimes (`ttl` in requests); each bounded by the policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtlInput {
    #[serde(default)]
    pub idle_secs: Option<i64>,
    #[serde(default)]
    pub absolute_secs: Option<i64>,
}

/// A request to start a session (the body of `POST /v1/sessions`, less the
/// token options).
#[derive(Debug, Clone, Default)]
pub struct CreateSession {
    pub subject: String,
    pub auth: Option<AuthInput>,
    pub device: Option<DeviceInput>,
    pub data: Option<Map<String, Value>>,
    pub ttl: Option<TtlInput>,
    /// The pre-login session's token: it is revoked, and its data carried
    /// over only when it belongs to the same subject.
    pub previous_session_token: Option<String>,
}

/// A session together with its freshly issued token, the only time the
/// token exists outside its holder.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub session: Arc<SessionRecord>,
    pub token: SecretToken,
}

/// The session core: every face (service, library) goes through this.
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    policy: Arc<SessionPolicy>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    pub fn new(store: Arc<dyn SessionStore>, clock: Arc<dyn Clock>, policy: SessionPolicy) -> Self {
        Self {
            store,
            clock,
            policy: Arc::new(policy),
        }
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Starts a session (login). Always issues a new token; a valid
    /// `previous_session_token` is revoked in the same atomic step, and its
    /// data carried over only if it is the same subject's (request data wins
    /// on conflicting keys); another subject's data is dropped.
    pub async fn create(&self, req: CreateSession) -> Result<IssuedSession> {
        let subject = validate_subject(&req.subject)?;
        let auth_in = req.auth.unwrap_or_default();
        let level = validate_level(auth_in.level, self.policy.max_auth_level)?;
        let methods = validate_methods(&auth_in.methods, Vec::new())?;
        let device = validate_device(req.device.unwrap_or_default())?;
        let (idle_s, abs_s) = self.validate_ttl(req.ttl.unwrap_or_default())?;
        let req_data = req.data.unwrap_or_default();
        self.check_data_size(&req_data)?;
        let previous = match req.previous_session_token.as_deref() {
            // A malformed previous token cannot name a session: ignore it, a
            // pre-login cookie is not worth failing a login over.
            Some(t) => token::parse(TokenKind::Session, t.as_bytes()).ok(),
            None => None,
        };

        for _ in 0..CAS_ATTEMPTS {
            let now = self.clock.now();
            let mut data = Map::new();
            let mut replace = None;
            if let Some(hash) = &previous
                && let Some(prev) = self.store.get_by_token(hash).await?
                && prev.token_hash.ct_eq(hash)
                && prev.is_active(now)
            {
                // A shared browser must never hand one user's data to the
                // next: another subject's session is still ended (it is this
                // browser's, and must not outlive the login), but its data
                // stays behind (SPEC §4.1). An app that wants a pre-login
                // cart under the new subject passes it in `data` itself.
                if prev.subject == subject {
                    data = prev.data.clone();
                }
                replace = Some((prev.handle.clone(), prev.version));
            }
            data.extend(req_data.clone());
            self.check_data_size(&data)?;

            let token = SecretToken::generate(TokenKind::Session);
            let absolute_expires_at = now.plus_secs(abs_s);
            let idle_timeout_ms = idle_s * 1000;
            let record = SessionRecord {
                handle: token::new_id(SESSION_HANDLE_PREFIX),
                token_hash: token.hash(),
                subject: subject.to_owned(),
                version: 0,
                created_at: now,
                last_seen_at: now,
                idle_timeout_ms,
                idle_expires_at: now.plus_millis(idle_timeout_ms).min(absolute_expires_at),
                absolute_expires_at,
                auth: AuthInfo {
                    level,
                    methods: methods.clone(),
                    time: now,
                },
                device: device.clone(),
                data,
                binding: None,
                revoked: None,
            };
            let opts = CreateOptions {
                replace,
                max_per_subject: self.policy.max_sessions_per_subject,
                now,
            };
            let events = [NewEvent::new(EventKind::Created, &record, now)];
            match self.store.create(&record, &opts, &events).await {
                Ok(CreateOutcome::Created { evicted }) => {
                    if !evicted.is_empty() {
                        tracing::info!(
                            subject_sessions_evicted = evicted.len(),
                            "session limit reached; oldest revoked"
                        );
                    }
                    return Ok(IssuedSession {
                        session: Arc::new(record),
                        token,
                    });
                }
                // The previous session changed under us (a concurrent login
                // or logout); look again.
                Ok(CreateOutcome::Conflict) => continue,
                // 256-bit collisions do not happen; a duplicate means a
                // broken RNG or store, and retrying with fresh values is safe.
                Err(StoreError::Duplicate) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict)
    }

    /// Checks a presented session token and slides the idle expiry.
    ///
    /// A failure writes nothing.
    pub async fn verify(&self, presented: &str) -> Result<Arc<SessionRecord>> {
        let hash =
            token::parse(TokenKind::Session, presented.as_bytes()).map_err(|_| Error::SessionInvalid)?;
        let rec = self
            .store
            .get_by_token(&hash)
            .await?
            .ok_or(Error::SessionInvalid)?;
        if !rec.token_hash.ct_eq(&hash) {
            return Err(Error::SessionInvalid);
        }
        let now = self.clock.now();
        check_live(&rec, now)?;
        if now.millis_since(rec.last_seen_at) < self.policy.touch_after_ms(rec.idle_timeout_ms) {
            return Ok(rec);
        }
        let idle_expires_at = now.plus_millis(rec.idle_timeout_ms).min(rec.absolute_expires_at);
        if self.store.touch(&rec.handle, &hash, now, idle_expires_at).await? {
            let mut next = SessionRecord::clone(&rec);
            next.last_seen_at = now;
            next.idle_expires_at = next.idle_expires_at.max(idle_expires_at);
            return Ok(Arc::new(next));
        }
        // Revoked or re-keyed between our read and the touch: report what it is now.
        match self.store.get_by_token(&hash).await? {
            Some(r) => check_live(&r, now).map(|()| r),
            None => Err(Error::SessionInvalid),
        }
    }

    /// The slide of a live session's idle window on activity that did not
    /// present its session token (a refresh-token use), for a store write
    /// that includes it; `None` while the touch throttle of
    /// [`verify`](Self::verify) says it is not due yet.
    pub fn idle_slide<'a>(&self, rec: &'a SessionRecord, now: Timestamp) -> Option<Touch<'a>> {
        if now.millis_since(rec.last_seen_at) < self.policy.touch_after_ms(rec.idle_timeout_ms) {
            return None;
        }
        Some(Touch {
            handle: &rec.handle,
            token_hash: &rec.token_hash,
            last_seen_at: now,
            idle_expires_at: now.plus_millis(rec.idle_timeout_ms).min(rec.absolute_expires_at),
        })
    }

    /// Step-up or any privilege change: records the new authentication and
    /// replaces the token, keeping the handle. The old token stops working
    /// in the same atomic step.
    pub async fn elevate(&self, presented: &str, auth: AuthInput) -> Result<IssuedSession> {
        let level = validate_level(auth.level, self.policy.max_auth_level)?;
        let hash =
            token::parse(TokenKind::Session, presented.as_bytes()).map_err(|_| Error::SessionInvalid)?;
        for _ in 0..CAS_ATTEMPTS {
            let rec = self
                .store
                .get_by_token(&hash)
                .await?
                .ok_or(Error::SessionInvalid)?;
            if !rec.token_hash.ct_eq(&hash) {
                return Err(Error::SessionInvalid);
            }
            let now = self.clock.now();
            check_live(&rec, now)?;
            let token = SecretToken::generate(TokenKind::Session);
            let mut next = SessionRecord::clone(&rec);
            next.version += 1;
            next.token_hash = token.hash();
            next.auth = AuthInfo {
                level,
                methods: validate_methods(&auth.methods, rec.auth.methods.clone())?,
                time: now,
            };
            next.last_seen_at = now;
            next.idle_expires_at = now.plus_millis(rec.idle_timeout_ms).min(rec.absolute_expires_at);
            let events = [NewEvent::new(EventKind::Elevated, &next, now)];
            match self.store.update(&next, rec.version, &events).await {
                Ok(true) => {
                    return Ok(IssuedSession {
                        session: Arc::new(next),
                        token,
                    });
                }
                Ok(false) | Err(StoreError::Duplicate) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict)
    }

    /// Logout: revokes the session the token belongs to. Revoking an already
    /// revoked or expired session succeeds (logout is idempotent); an
    /// unknown token is [`Error::SessionInvalid`].
    pub async fn revoke_token(&self, presented: &str, reason: RevokeReason) -> Result<()> {
        let hash =
            token::parse(TokenKind::Session, presented.as_bytes()).map_err(|_| Error::SessionInvalid)?;
        let rec = self
            .store
            .get_by_token(&hash)
            .await?
            .ok_or(Error::SessionInvalid)?;
        if !rec.token_hash.ct_eq(&hash) {
            return Err(Error::SessionInvalid);
        }
        self.revoke_record(rec, reason).await.map(|_| ())
    }

    /// Revokes the session with this handle. Returns false if it was
    /// already revoked.
    pub async fn revoke(&self, handle: &str, reason: RevokeReason) -> Result<bool> {
        let rec = self.get_any(handle).await?;
        self.revoke_record(rec, reason).await
    }

    async fn revoke_record(&self, mut rec: Arc<SessionRecord>, reason: RevokeReason) -> Result<bool> {
        for _ in 0..CAS_ATTEMPTS {
            if rec.revoked.is_some() {
                return Ok(false);
            }
            let now = self.clock.now();
            let mut next = SessionRecord::clone(&rec);
            next.version += 1;
            next.revoked = Some(Revocation { at: now, reason });
            let events = [NewEvent::revoked(&next, reason, now)];
            if self.store.update(&next, rec.version, &events).await? {
                return Ok(true);
            }
            rec = self.store.get(&rec.handle).await?.ok_or(Error::NotFound)?;
        }
        Err(Error::Conflict)
    }

    async fn get_any(&self, handle: &str) -> Result<Arc<SessionRecord>> {
        if !token::is_id(SESSION_HANDLE_PREFIX, handle) {
            return Err(Error::NotFound);
        }
        self.store.get(handle).await?.ok_or(Error::NotFound)
    }

    /// The active session with this handle (revoked or expired ones are not
    /// found).
    pub async fn get(&self, handle: &str) -> Result<Arc<SessionRecord>> {
        let rec = self.get_any(handle).await?;
        if rec.is_active(self.clock.now()) {
            Ok(rec)
        } else {
            Err(Error::NotFound)
        }
    }

    /// Applies an RFC 7396 JSON merge patch to the session's `data`.
    pub async fn patch_data(&self, handle: &str, patch: &Value) -> Result<Arc<SessionRecord>> {
        if !patch.is_object() {
            return Err(Error::invalid(
                "data",
                "must be a JSON object (RFC 7396 merge patch)",
            ));
        }
        for _ in 0..CAS_ATTEMPTS {
            let rec = self.get(handle).await?;
            let mut data = Value::Object(rec.data.clone());
            merge_patch(&mut data, patch);
            let Value::Object(data) = data else {
                return Err(Error::invalid("data", "must stay a JSON object"));
            };
            self.check_data_size(&data)?;
            let mut next = SessionRecord::clone(&rec);
            next.version += 1;
            next.data = data;
            if self.store.update(&next, rec.version, &[]).await? {
                return Ok(Arc::new(next));
            }
        }
        Err(Error::Conflict)
    }

    /// The subject's active sessions, newest first.
    pub async fn list(&self, subject: &str) -> Result<Vec<Arc<SessionRecord>>> {
        let subject = validate_subject(subject)?;
        let now = self.clock.now();
        let mut all: Vec<_> = self
            .store
            .list_by_subject(subject)
            .await?
            .into_iter()
            .filter(|s| s.is_active(now))
            .collect();
        all.sort_by(|a, b| (b.created_at, &b.handle).cmp(&(a.created_at, &a.handle)));
        Ok(all)
    }

    /// Revokes every active session of the subject except `except` ("sign
    /// out everywhere", password change, account deletion).
    pub async fn revoke_all(
        &self,
        subject: &str,
        except: Option<&str>,
        reason: RevokeReason,
    ) -> Result<usize> {
        let subject = validate_subject(subject)?;
        // A mistyped `except` must not silently sign the caller out too.
        if let Some(e) = except
            && !token::is_id(SESSION_HANDLE_PREFIX, e)
        {
            return Err(Error::invalid("except", "must be a session handle (ses_…)"));
        }
        let revoked = self
            .store
            .revoke_subject(subject, except, reason, self.clock.now())
            .await?;
        Ok(revoked.len())
    }

    /// Revokes every active session of every subject (EX-09: after a breach
    /// or a signing-secret leak), in batches so requests interleave.
    pub async fn revoke_everyone(&self, reason: RevokeReason, batch: u32) -> Result<u64> {
        let batch = batch.max(1);
        let mut total = 0u64;
        loop {
            let n = self
                .store
                .revoke_all_active(reason, self.clock.now(), batch)
                .await?;
            total += u64::from(n);
            if n < batch {
                return Ok(total);
            }
            tokio_yield().await;
        }
    }

    /// A page of the audit log.
    pub async fn events(&self, mut q: EventQuery) -> Result<Vec<Event>> {
        if let Some(s) = &q.subject {
            validate_subject(s)?;
        }
        if q.limit == 0 || q.limit > MAX_EVENTS_PAGE {
            return Err(Error::invalid(
                "limit",
                format!("must be between 1 and {MAX_EVENTS_PAGE}"),
            ));
        }
        q.limit = q.limit.min(MAX_EVENTS_PAGE);
        Ok(self.store.events(&q).await?)
    }

    /// Deletes expired sessions in batches of `batch`; returns how many went.
    /// Each batch is its own store call, so requests interleave with a sweep.
    pub async fn sweep(&self, batch: u32) -> Result<u64> {
        let mut total = 0u64;
        loop {
            let n = self.store.sweep(self.clock.now(), batch).await?;
            total += u64::from(n);
            if n < batch {
                return Ok(total);
            }
            tokio_yield().await;
        }
    }

    fn validate_ttl(&self, ttl: TtlInput) -> Result<(i64, i64)> {
        let p = &self.policy;
        let idle = ttl.idle_secs.unwrap_or(p.idle_timeout_secs);
        let abs = ttl.absolute_secs.unwrap_or(p.absolute_timeout_secs);
        if !(1..=p.max_idle_timeout_secs).contains(&idle) {
            return Err(Error::invalid(
                "ttl.idle_secs",
                format!("must be between 1 and {}", p.max_idle_timeout_secs),
            ));
        }
        if !(1..=p.max_absolute_timeout_secs).contains(&abs) {
            return Err(Error::invalid(
                "ttl.absolute_secs",
                format!("must be between 1 and {}", p.max_absolute_timeout_secs),
            ));
        }
        Ok((idle.min(abs), abs))
    }

    fn check_data_size(&self, data: &Map<String, Value>) -> Result<()> {
        let mut counter = ByteCounter(0);
        // Writing into a counter cannot fail for a Map of Values.
        let _ = serde_json::to_writer(&mut counter, data);
        if counter.0 > self.policy.max_data_bytes {
            return Err(Error::DataTooLarge {
                limit: self.policy.max_data_bytes,
            });
        }
        Ok(())
    }
}

/// Yields to the scheduler between sweep batches without depending on a
/// particular runtime.
async fn tokio_yield() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn check_live(rec: &SessionRecord, now: Timestamp) -> Result<()> {
    if rec.revoked.is_some() {
        Err(Error::SessionRevoked)
    } else if rec.is_expired(now) {
        Err(Error::SessionExpired)
    } else {
        Ok(())
    }
}

/// Subjects are opaque UTF-8 chosen by the application, 1–256 bytes.
/// Control characters (NUL included) are refused: they are never part of a
/// real identifier and break logs and terminals.
pub fn validate_subject(s: &str) -> Result<&str> {
    if s.is_empty() || s.len() > MAX_SUBJECT_BYTES {
        return Err(Error::invalid(
            "subject",
            format!("must be 1 to {MAX_SUBJECT_BYTES} bytes"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid("subject", "must not contain control characters"));
    }
    Ok(s)
}

fn validate_level(level: Option<u8>, max: u8) -> Result<u8> {
    let level = level.unwrap_or(1);
    if level == 0 || level > max {
        return Err(Error::invalid(
            "auth.level",
            format!("must be between 1 and {max}"),
        ));
    }
    Ok(level)
}

/// `amr` values (RFC 8176 names or application tokens): short, printable
/// tokens. New ones are appended to `base` without duplicates.
fn validate_methods(methods: &[String], mut base: Vec<String>) -> Result<Vec<String>> {
    for m in methods {
        let ok = !m.is_empty()
            && m.len() <= MAX_METHOD_BYTES
            && m.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            return Err(Error::invalid(
                "auth.methods",
                format!("each method must be 1 to {MAX_METHOD_BYTES} characters of [A-Za-z0-9_.-]"),
            ));
        }
        if !base.iter().any(|b| b == m) {
            base.push(m.clone());
        }
    }
    if base.len() > MAX_METHODS {
        return Err(Error::invalid(
            "auth.methods",
            format!("at most {MAX_METHODS} methods"),
        ));
    }
    Ok(base)
}

fn validate_device(d: DeviceInput) -> Result<DeviceInfo> {
    let user_agent = match d.user_agent {
        Some(ua) if ua.chars().any(|c| c.is_control() && c != '\t') => {
            return Err(Error::invalid(
                "device.user_agent",
                "must not contain control characters",
            ));
        }
        Some(mut ua) => {
            if ua.len() > MAX_USER_AGENT_BYTES {
                let mut cut = MAX_USER_AGENT_BYTES;
                while !ua.is_char_boundary(cut) {
                    cut -= 1;
                }
                ua.truncate(cut);
            }
            Some(ua).filter(|s| !s.is_empty())
        }
        None => None,
    };
    let ip = match d.ip {
        Some(ip) => Some(
            ip.parse::<IpAddr>()
                .map_err(|_| Error::invalid("device.ip", "must be an IPv4 or IPv6 address"))?
                .to_string(),
        ),
        None => None,
    };
    Ok(DeviceInfo {
        label: device_label(user_agent.as_deref()),
        user_agent,
        ip,
    })
}

/// RFC 7396 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests;
