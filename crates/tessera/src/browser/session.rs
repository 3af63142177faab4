//! The per-request session handle.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Response, header};
use serde_json::{Map, Value};
use tessera_core::secret::TokenKind;
use tessera_core::{AuthInput, CreateSession, DeviceInput, RevokeReason, SessionRecord};

use super::Shared;
use super::cookies;
use super::csrf;
use super::problem::Error;

/// The request's session, put into the request extensions by
/// [`SessionLayer`](super::SessionLayer) and extracted as `Session`.
///
/// It may be signed out ([`Session::is_authenticated`] false). Operations
/// that change the session (`login`, `elevate`, `logout`, …) take effect in
/// the store at once; the layer writes the matching `Set-Cookie`,
/// `Clear-Site-Data` and `Cache-Control: no-store` onto the response.
/// Clones share state: a change made through one clone is seen by all.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Device facts of this request (user agent, peer IP), used by `login`.
    device: super::DeviceSource,
    state: Mutex<State>,
}

struct Current {
    record: Arc<SessionRecord>,
    /// The cookie value; never logged, never in a body.
    token: Token,
}

/// A session token (the cookie value) held for the request. Every verified
/// or issued token has the session-token length, so it is kept inline: a
/// request that only reads its session allocates nothing for it. Any other
/// length (only if the core's token format changed) goes to the heap.
#[derive(Clone)]
pub(crate) enum Token {
    Inline([u8; TOKEN_LEN]),
    Heap(Box<str>),
}

const TOKEN_LEN: usize = TokenKind::Session.encoded_len();

impl Token {
    pub(crate) fn new(token: &str) -> Self {
        match <[u8; TOKEN_LEN]>::try_from(token.as_bytes()) {
            Ok(b) => Token::Inline(b),
            Err(_) => Token::Heap(token.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Copied whole from a `&str`, so always valid UTF-8.
            Token::Inline(b) => std::str::from_utf8(b).unwrap_or_default(),
            Token::Heap(s) => s,
        }
    }
}

#[derive(Default, PartialEq, Eq)]
enum CookieChange {
    #[default]
    None,
    /// Write the current token.
    Set,
    /// Expire the cookie.
    Expire,
}

#[derive(Default)]
struct State {
    current: Option<Current>,
    cookie: CookieChange,
    clear_site_data: bool,
    /// The pre-session nonce the request presented.
    presented_nonce: Option<String>,
    /// A nonce minted during this request (to be set on the response).
    fresh_nonce: Option<String>,
    /// The different session-cookie values of a refused request: a logout
    /// revokes them all, as the service's does, so that neither comes back
    /// alone once the browser drops the other. Also the token of a
    /// device-bound session that came without its bound cookie.
    conflicting: Vec<String>,
    /// A login happened in this request (DBSC: offer registration).
    logged_in: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state();
        let mut d = f.debug_struct("Session");
        match &st.current {
            Some(c) => d
                .field("handle", &c.record.handle)
                .field("subject", &c.record.subject)
                .field("level", &c.record.auth.level),
            None => d.field("authenticated", &false),
        };
        d.finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        device: super::DeviceSource,
        current: Option<(Arc<SessionRecord>, Token)>,
        presented_nonce: Option<String>,
        expire_cookie: bool,
        conflicting: Vec<String>,
    ) -> Self {
        let state = State {
            current: current.map(|(record, token)| Current { record, token }),
            cookie: if expire_cookie {
                CookieChange::Expire
            } else {
                CookieChange::None
            },
            presented_nonce,
            conflicting,
            ..State::default()
        };
        Self {
            inner: Arc::new(Inner {
                shared,
                device,
                state: Mutex::new(state),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; if one ever did, the
        // state is still a valid value.
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The core this layer works on.
    pub fn sessions(&self) -> &tessera_core::Sessions {
        &self.inner.shared.sessions
    }

    /// Whether the request carries a valid session (or one was started in
    /// this request).
    pub fn is_authenticated(&self) -> bool {
        self.state().current.is_some()
    }

    /// The session record (never contains the token itself).
    pub fn record(&self) -> Option<Arc<SessionRecord>> {
        self.state().current.as_ref().map(|c| c.record.clone())
    }

    pub fn subject(&self) -> Option<String> {
        self.state().current.as_ref().map(|c| c.record.subject.clone())
    }

    /// The public session handle (`ses_…`), safe to show and log.
    pub fn handle(&self) -> Option<String> {
        self.state().current.as_ref().map(|c| c.record.handle.clone())
    }

    /// The authentication level (0 when signed out).
    pub fn auth_level(&self) -> u8 {
        self.state().current.as_ref().map_or(0, |c| c.record.auth.level)
    }

    /// Whether the session has at least `level` and its last authentication
    /// is at most `max_age_secs` old (EX-14).
    pub fn auth_is_recent(&self, level: u8, max_age_secs: i64) -> bool {
        let now = self.sessions().now();
        self.state().current.as_ref().is_some_and(|c| {
            c.record.auth.level >= level
                && now.millis_since(c.record.auth.time) <= max_age_secs.saturating_mul(1000)
        })
    }

    /// The application's `data` object (empty when signed out).
    pub fn data(&self) -> Map<String, Value> {
        self.state()
            .current
            .as_ref()
            .map(|c| c.record.data.clone())
            .unwrap_or_default()
    }

    /// Applies an RFC 7396 merge patch to `data`.
    pub async fn set_data(&self, patch: Value) -> Result<(), Error> {
        let handle = self.handle().ok_or(Error::NotAuthenticated)?;
        let rec = self.sessions().patch_data(&handle, &patch).await?;
        if let Some(c) = self
            .state()
            .current
            .as_mut()
            .filter(|c| c.record.handle == rec.handle)
        {
            // Keep the token hash we hold (a concurrent rotation elsewhere
            // is not ours to adopt).
            let mut next = SessionRecord::clone(&c.record);
            next.data = rec.data.clone();
            next.version = rec.version;
            c.record = Arc::new(next);
        }
        Ok(())
    }

    /// Signs `subject` in: always a new session with a new token via
    /// [`Sessions::create`](tessera_core::Sessions::create). The request's
    /// current session, if any, is passed as `previous_session_token`: it is
    /// revoked in the same step, and its `data` carried over only if it is
    /// the same subject's (FX-01/FX-04; a shared browser never hands one
    /// user's data to the next).
    /// A cookie that did not verify is never passed on, let alone adopted.
    /// Missing device facts are taken from the request (`User-Agent`, and
    /// the peer address from axum's `ConnectInfo<SocketAddr>`).
    pub async fn login(&self, subject: &str, auth: AuthInput, device: DeviceInput) -> Result<(), Error> {
        let previous = self.state().current.as_ref().map(|c| c.token.as_str().to_owned());
        let from_request = self.inner.device.to_input();
        let device = DeviceInput {
            user_agent: device.user_agent.or(from_request.user_agent),
            ip: device.ip.or(from_request.ip),
        };
        let issued = self
            .sessions()
            .create(CreateSession {
                subject: subject.to_owned(),
                auth: Some(auth),
                device: Some(device),
                previous_session_token: previous,
                ..CreateSession::default()
            })
            .await?;
        let mut st = self.state();
        st.current = Some(Current {
            record: issued.session,
            token: Token::new(issued.token.expose()),
        });
        st.cookie = CookieChange::Set;
        st.clear_site_data = false;
        st.logged_in = true;
        Ok(())
    }

    /// Step-up or privilege change: records the new authentication and
    /// replaces the token (new cookie value, same handle); the old token
    /// stops working at once (FX-02/FX-03). A `level` of `None` keeps the
    /// current level (the core would otherwise take it as 1).
    pub async fn elevate(&self, mut auth: AuthInput) -> Result<(), Error> {
        let (token, level, record) = {
            let st = self.state();
            let c = st.current.as_ref().ok_or(Error::NotAuthenticated)?;
            (c.token.as_str().to_owned(), c.record.auth.level, c.record.clone())
        };
        auth.level = auth.level.or(Some(level));
        // DBSC `required_level`: sensitive levels only from a device-bound
        // session (SPEC §4.5).
        if let Some(d) = &self.shared().dbsc {
            let target = auth.level.unwrap_or(level);
            if !d.dbsc.may_elevate_to(&record, target) {
                return Err(Error::DeviceBindingRequired(target));
            }
        }
        let issued = self.sessions().elevate(&token, auth).await?;
        let mut st = self.state();
        st.current = Some(Current {
            record: issued.session,
            token: Token::new(issued.token.expose()),
        });
        st.cookie = CookieChange::Set;
        Ok(())
    }

    /// Signs out: revokes the session, expires the cookie (same attributes,
    /// `Max-Age=0`) and sends `Clear-Site-Data: "cache", "cookies",
    /// "storage"` (EX-12). Idempotent: without a session it still clears.
    /// A request whose session cookies conflicted has no session, but its
    /// different values are all revoked, as the service's logout does.
    pub async fn logout(&self) -> Result<(), Error> {
        let tokens = {
            let st = self.state();
            match &st.current {
                Some(c) => vec![c.token.as_str().to_owned()],
                None => st.conflicting.clone(),
            }
        };
        for t in tokens {
            match self.sessions().revoke_token(&t, RevokeReason::Logout).await {
                // Rotated, deleted or ended meanwhile (or never issued):
                // nothing left to revoke.
                Ok(())
                | Err(
                    tessera_core::Error::SessionInvalid
                    | tessera_core::Error::SessionExpired
                    | tessera_core::Error::SessionRevoked,
                ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.signed_out();
        Ok(())
    }

    /// Ends every session of the subject, this one included, and clears
    /// this browser like [`Session::logout`] (account deletion, "sign out
    /// everywhere"). Returns how many sessions were revoked.
    pub async fn logout_everywhere(&self) -> Result<usize, Error> {
        let subject = self.subject().ok_or(Error::NotAuthenticated)?;
        let n = self
            .sessions()
            .revoke_all(&subject, None, RevokeReason::RevokeAll)
            .await?;
        self.signed_out();
        Ok(n)
    }

    fn signed_out(&self) {
        let mut st = self.state();
        st.current = None;
        st.cookie = CookieChange::Expire;
        st.clear_site_data = true;
    }

    /// The subject's active sessions, newest first.
    pub async fn list_sessions(&self) -> Result<Vec<Arc<SessionRecord>>, Error> {
        let subject = self.subject().ok_or(Error::NotAuthenticated)?;
        Ok(self.sessions().list(&subject).await?)
    }

    /// Revokes one of the subject's sessions by handle. Another subject's
    /// handle, or an unknown one, is [`Error::NotFound`]. Revoking the
    /// current session is a [`Session::logout`].
    pub async fn revoke(&self, handle: &str) -> Result<(), Error> {
        let (subject, own) = {
            let st = self.state();
            let c = st.current.as_ref().ok_or(Error::NotAuthenticated)?;
            (c.record.subject.clone(), c.record.handle.clone())
        };
        if handle == own {
            return self.logout().await;
        }
        let rec = match self.sessions().get(handle).await {
            Ok(r) => r,
            Err(tessera_core::Error::NotFound) => return Err(Error::NotFound),
            Err(e) => return Err(e.into()),
        };
        if rec.subject != subject {
            return Err(Error::NotFound);
        }
        match self.sessions().revoke(handle, RevokeReason::Revoked).await {
            Ok(_) => Ok(()),
            Err(tessera_core::Error::NotFound) => Err(Error::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Revokes every other session of the subject; returns how many.
    pub async fn revoke_others(&self) -> Result<usize, Error> {
        let (subject, own) = {
            let st = self.state();
            let c = st.current.as_ref().ok_or(Error::NotAuthenticated)?;
            (c.record.subject.clone(), c.record.handle.clone())
        };
        Ok(self
            .sessions()
            .revoke_all(&subject, Some(&own), RevokeReason::RevokeAll)
            .await?)
    }

    /// The CSRF token for forms and `X-CSRF-Token` (put it in a hidden
    /// `csrf_token` field). Bound to the current session token, so it
    /// changes on login and step-up; before login, bound to a nonce cookie
    /// that this call sets if the request had none.
    pub fn csrf_token(&self) -> String {
        let shared = self.shared();
        let mut st = self.state();
        if let Some(c) = &st.current {
            return csrf::session_token(&shared.csrf.key, &c.record);
        }
        let nonce = match (&st.presented_nonce, &st.fresh_nonce) {
            (_, Some(n)) | (Some(n), None) => n.clone(),
            (None, None) => {
                let n = csrf::new_nonce();
                st.fresh_nonce = Some(n.clone());
                n
            }
        };
        csrf::pre_session_token(&shared.csrf.key, &nonce, shared.sessions.now())
    }

    /// Checks a CSRF token against this request's session (or nonce).
    pub fn verify_csrf_token(&self, token: &str) -> bool {
        let shared = self.shared();
        let st = self.state();
        csrf::verify(
            &shared.csrf,
            token,
            st.current.as_ref().map(|c| &*c.record),
            st.presented_nonce.as_deref(),
            shared.sessions.now(),
        )
    }

    pub(crate) fn login_redirect_for(&self, parts: &Parts) -> Option<String> {
        self.shared()
            .login_redirect
            .as_deref()
            .map(|t| fill_next(t, parts))
    }

    pub(crate) fn step_up_redirect_for(&self, parts: &Parts) -> Option<String> {
        self.shared()
            .step_up_redirect
            .as_deref()
            .map(|t| fill_next(t, parts))
    }

    /// Writes the cookie changes of this request onto the response.
    pub(crate) fn apply<B>(&self, resp: &mut Response<B>) {
        let shared = self.shared();
        let st = self.state();
        let h = resp.headers_mut();
        let mut set_cookie = Vec::new();
        match (&st.cookie, &st.current) {
            (CookieChange::Set, Some(c)) => {
                set_cookie.push(tessera_http::cookies::session_cookie(
                    &shared.cookie,
                    c.token.as_str(),
                    c.record.absolute_expires_at,
                    shared.sessions.now(),
                ));
                if st.presented_nonce.is_some() {
                    set_cookie.push(tessera_http::cookies::removal(
                        &shared.cookie,
                        &shared.nonce_cookie,
                    ));
                }
            }
            (CookieChange::Set | CookieChange::Expire, _) => {
                set_cookie.push(tessera_http::cookies::session_removal(&shared.cookie));
            }
            (CookieChange::None, _) => {}
        }
        if st.current.is_none()
            && let Some(n) = &st.fresh_nonce
        {
            set_cookie.push(cookies::nonce(
                &shared.cookie,
                &shared.nonce_cookie,
                n,
                shared.csrf.pre_session_ttl_secs,
            ));
        }
        // DBSC: every login offers registration; the session to bind is the
        // one just created, and its challenge is good for that one only.
        if st.logged_in
            && let (Some(d), Some(c)) = (&shared.dbsc, &st.current)
            && c.record.binding.is_none()
            && let Ok(v) = HeaderValue::try_from(tessera_http::dbsc::registration_header(
                &d.dbsc.policy().algs,
                tessera_http::dbsc::REGISTER_PATH,
                &d.dbsc.registration_challenge(&c.record),
            ))
        {
            h.insert(tessera_http::dbsc::SECURE_SESSION_REGISTRATION, v);
        }
        if st.clear_site_data {
            h.insert(
                "clear-site-data",
                HeaderValue::from_static("\"cache\", \"cookies\", \"storage\""),
            );
        }
        let private = !set_cookie.is_empty() || st.clear_site_data;
        for c in set_cookie {
            if let Ok(v) = HeaderValue::try_from(c) {
                h.append(header::SET_COOKIE, v);
            }
        }
        if private {
            // EX-13: nothing that sets a session cookie may be cached.
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        } else if st.current.is_some() && shared.no_store_authenticated {
            // Only when the handler set none of its own.
            h.entry(header::CACHE_CONTROL)
                .or_insert(HeaderValue::from_static("no-store"));
        }
    }
}

/// Replaces `{next}` in a redirect template with the request's path
/// (percent-encoded). The query is left out: whatever a client misplaced
/// there (a token, say) must not be echoed into a `Location` (SC-04).
fn fill_next(template: &str, parts: &Parts) -> String {
    template.replace("{next}", &super::extract::encode_next(parts.uri.path()))
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(Error::LayerMissing)
    }
}
