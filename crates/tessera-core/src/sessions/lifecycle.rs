//! One session's life: create (login), verify and slide, elevate, read and
//! patch its data, revoke.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::validate::{
    check_live, merge_patch, validate_device, validate_level, validate_methods, validate_subject,
};
use super::{AuthInput, CreateSession, IssuedSession, Sessions};
use crate::error::{Error, Result};
use crate::model::{
    AuthInfo, Binding, EventKind, NewEvent, RefreshFamily, Revocation, RevokeReason, SessionRecord,
};
use crate::secret::{self, SESSION_HANDLE_PREFIX, SecretToken, TokenHash, TokenKind};
use crate::store::{CreateOptions, CreateOutcome, RefreshStore, StoreError, StoreResult, Touch};
use crate::time::Timestamp;

/// A refresh family to store with the session being written: the store to
/// write both through, the family's template and its first token's hash.
type WithFamily<'a> = Option<(&'a dyn RefreshStore, &'a RefreshFamily, &'a TokenHash)>;

/// How many times an operation retries after losing a compare-and-swap.
const CAS_ATTEMPTS: usize = 8;

impl Sessions {
    /// Starts a session (login). Always issues a new token; a valid
    /// `previous_session_token` is revoked in the same atomic step, and its
    /// data carried over only if it is the same subject's (request data wins
    /// on conflicting keys); another subject's data is dropped.
    pub async fn create(&self, req: CreateSession) -> Result<IssuedSession> {
        self.create_inner(req, None).await
    }

    /// [`create`](Self::create), storing a refresh-token family with the
    /// new session in the same atomic step
    /// ([`RefreshStore::create_with_refresh_family`]): a login that hands
    /// out a refresh token either leaves both or neither, whatever stops
    /// it. `family` is a template: its `handle`, `session_token_hash`,
    /// `created_at` and `rotated_at` are taken from the new session.
    /// `families` must be the store this is over (or a wrapper of it).
    pub async fn create_with_refresh_family(
        &self,
        req: CreateSession,
        families: &dyn RefreshStore,
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> Result<IssuedSession> {
        self.create_inner(req, Some((families, family, first))).await
    }

    async fn create_inner(&self, req: CreateSession, with_family: WithFamily<'_>) -> Result<IssuedSession> {
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
            Some(t) => secret::parse(TokenKind::Session, t.as_bytes()).ok(),
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
                handle: secret::new_id(SESSION_HANDLE_PREFIX),
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
            let written = match with_family {
                None => self.store.create(&record, &opts, &events).await,
                Some((families, template, first)) => {
                    let family = template.issued_for(&record, now);
                    families
                        .create_with_refresh_family(&record, &opts, &events, &family, first)
                        .await
                }
            };
            match written {
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
        let hash = session_hash(presented)?;
        let rec = self.by_token(&hash).await?;
        let now = self.clock.now();
        check_live(&rec, now)?;
        let Some(slide) = self.idle_slide(&rec, now) else {
            return Ok(rec);
        };
        let idle_expires_at = slide.idle_expires_at;
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

    /// The session a token hash names, compared in constant time with the
    /// hash the store filed it under; [`Error::SessionInvalid`] when none.
    async fn by_token(&self, hash: &TokenHash) -> Result<Arc<SessionRecord>> {
        let rec = self
            .store
            .get_by_token(hash)
            .await?
            .ok_or(Error::SessionInvalid)?;
        if !rec.token_hash.ct_eq(hash) {
            return Err(Error::SessionInvalid);
        }
        Ok(rec)
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
        self.elevate_inner(presented, auth, None).await
    }

    /// [`elevate`](Self::elevate), storing a refresh-token family with the
    /// elevated session in the same atomic step
    /// ([`RefreshStore::update_with_refresh_family`]); `family` is a
    /// template as for
    /// [`create_with_refresh_family`](Self::create_with_refresh_family).
    pub async fn elevate_with_refresh_family(
        &self,
        presented: &str,
        auth: AuthInput,
        families: &dyn RefreshStore,
        family: &RefreshFamily,
        first: &TokenHash,
    ) -> Result<IssuedSession> {
        self.elevate_inner(presented, auth, Some((families, family, first)))
            .await
    }

    async fn elevate_inner(
        &self,
        presented: &str,
        auth: AuthInput,
        with_family: WithFamily<'_>,
    ) -> Result<IssuedSession> {
        let level = validate_level(auth.level, self.policy.max_auth_level)?;
        let hash = session_hash(presented)?;
        for _ in 0..CAS_ATTEMPTS {
            let rec = self.by_token(&hash).await?;
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
            let written = match with_family {
                None => self.store.update(&next, rec.version, &events).await,
                Some((families, template, first)) => {
                    let family = template.issued_for(&next, now);
                    families
                        .update_with_refresh_family(&next, rec.version, &events, &family, first)
                        .await
                }
            };
            match written {
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
        let hash = session_hash(presented)?;
        let rec = self.by_token(&hash).await?;
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
        if !secret::is_id(SESSION_HANDLE_PREFIX, handle) {
            return Err(Error::NotFound);
        }
        self.store.get(handle).await?.ok_or(Error::NotFound)
    }

    /// The session stored under this handle, revoked or expired included
    /// (until swept): for callers that judge the record themselves, such as
    /// the session an access token or a refresh family names.
    pub async fn lookup(&self, handle: &str) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.store.get(handle).await
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

    /// Binds the live session `handle` to a device key (DBSC) or another
    /// binding, unless it is bound already: a binding is never replaced
    /// (checklist DB-05). Returns whether this call bound it.
    pub async fn bind(&self, handle: &str, binding: Binding) -> Result<bool> {
        for _ in 0..CAS_ATTEMPTS {
            let rec = self.get(handle).await?;
            if rec.binding.is_some() {
                return Ok(false);
            }
            let mut next = SessionRecord::clone(&rec);
            next.version += 1;
            next.binding = Some(binding.clone());
            if self.store.update(&next, rec.version, &[]).await? {
                return Ok(true);
            }
        }
        Err(Error::Conflict)
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
}

/// A presented session token's hash; anything malformed is
/// [`Error::SessionInvalid`], like an unknown token.
fn session_hash(presented: &str) -> Result<TokenHash> {
    secret::parse(TokenKind::Session, presented.as_bytes()).map_err(|_| Error::SessionInvalid)
}
