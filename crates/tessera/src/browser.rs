//! Cookie sessions and CSRF protection for axum/tower apps (SPEC §4.2),
//! over the same core and stores as the `tessera` service.
//!
//! ```no_run
//! use axum::{Router, routing::{get, post}};
//! use tessera::browser::{CookieConfig, CsrfConfig, RequireSession, Session, SessionLayer};
//! use tessera::core::{AuthInput, DeviceInput, SessionPolicy};
//!
//! async fn me(RequireSession(s): RequireSession) -> String {
//!     s.subject().unwrap_or_default()
//! }
//!
//! async fn login(s: Session) -> Result<&'static str, tessera::browser::Error> {
//!     // … check the password first …
//!     s.login("user-42", AuthInput { level: Some(1), methods: vec!["pwd".into()] }, DeviceInput::default())
//!         .await?;
//!     Ok("welcome")
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = SessionLayer::from_store_url("sqlite://./data/sessions.db", SessionPolicy::default(), CookieConfig::default())?
//!     .with_csrf(CsrfConfig::new().allowed_origin("https://app.example")?);
//! let app: Router = Router::new().route("/me", get(me)).route("/login", post(login)).layer(layer);
//! # Ok(()) }
//! ```
//!
//! What the layer does on every request:
//!
//! - reads the session cookie from the `Cookie` header only (never from a
//!   URL, a form or another header) and verifies it with
//!   [`Sessions::verify`](tessera_core::Sessions::verify), which also slides
//!   the idle expiry. Cookies are read by [`tessera_http::cookies`], the
//!   service's rule: as bytes, so another cookie's non-ASCII byte hides
//!   nothing. Malformed, unknown, expired or revoked: the request is signed
//!   out, and the response expires the cookie. Two different values of the
//!   session cookie (one planted by a sibling site) are refused: the
//!   request is signed out and no cookie is touched, and a logout revokes
//!   both. A store failure answers 503 `store_unavailable` (fails closed);
//! - for state-changing methods, runs the CSRF checks of [`CsrfConfig`]
//!   (also before login, against login CSRF), the header rule being
//!   [`tessera_http::csrf::judge`] as in the service's forward auth, and
//!   answers 403 `csrf_rejected` on failure;
//! - puts a [`Session`] into the request extensions; handlers use it
//!   directly or through [`MaybeSession`], [`RequireSession`],
//!   [`RequireLevel`] and [`RequireRecentAuth`];
//! - writes what the handler did to the session onto the response:
//!   `Set-Cookie`, `Clear-Site-Data` on logout, and `Cache-Control: no-store`
//!   on every response that sets a cookie (and, unless turned off, on every
//!   response to a signed-in request that set no `Cache-Control` itself).
//!
//! Non-browser clients calling state-changing routes behind the layer must send an
//! allowed `Origin` or a token; mount machine endpoints (webhooks) outside it.
//!
//! # Device Bound Session Credentials
//!
//! [`SessionLayer::with_dbsc`] turns on DBSC (SPEC §4.5) by the same rules
//! and wire format as the service (`tessera_core::dbsc`,
//! [`tessera_http::dbsc`]):
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use tessera::browser::{CookieConfig, DbscOptions, DbscPolicy, SessionLayer};
//! # use tessera::core::{Sealer, SessionPolicy};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Shared by every process of the app, like the store.
//! let sealer = Arc::new(Sealer::from_base64url(&std::env::var("DBSC_KEY")?)?);
//! let layer = SessionLayer::from_store_url("sqlite://./data/sessions.db", SessionPolicy::default(), CookieConfig::default())?
//!     .with_dbsc(DbscOptions {
//!         policy: DbscPolicy { required_level: Some(2), ..DbscPolicy::default() },
//!         ..DbscOptions::new(sealer)
//!     })?;
//! # Ok(()) }
//! ```
//!
//! - `POST /auth/dbsc/register` and `POST /auth/dbsc/refresh` are answered
//!   by the layer before the app (and without the CSRF checks: the device
//!   key's proof over a session-bound, single-use challenge is what a
//!   cross-site page cannot forge), with the service's statuses and
//!   headers. The layer must wrap the app at the root.
//! - The response of a request whose handler called [`Session::login`]
//!   carries `Secure-Session-Registration` (automatic: the session to bind
//!   is the one just created).
//! - A bound session without its own unexpired bound cookie is signed out
//!   for the extractors and [`Session`]; its session cookie is kept (the
//!   browser refreshes and retries) and a [`Session::logout`] still
//!   revokes it.
//! - [`Session::elevate`] to `required_level` or above from an unbound
//!   session fails with [`Error::DeviceBindingRequired`] (403).
//!
//! Chromium binds sessions only over HTTPS with a trusted certificate (or
//! on `localhost`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, header};
use tessera_core::{DeviceInput, SessionPolicy, SessionRecord, Sessions, SystemClock};
use tessera_http::cookies::SessionValue;
use tessera_http::csrf::{Evidence, FetchContext, Verdict, is_safe_method, judge};
use tessera_http::problem::Code;
use tower::{Layer, Service};

mod config;
mod cookies;
mod csrf;
mod dbsc;
mod extract;
mod headers;
mod problem;
mod session;
mod store;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_waiting;

pub use config::{ConfigError, CsrfConfig, CsrfKey, TokenPolicy};
pub use csrf::{CSRF_FIELD, CSRF_HEADER};
pub use dbsc::DbscOptions;
pub use extract::{MaybeSession, Rejection, RequireLevel, RequireRecentAuth, RequireSession};
pub use headers::{SecurityHeaders, SecurityHeadersLayer, json_only};
pub use problem::Error;
pub use session::Session;
pub use store::StoreUrl;
pub use tessera_core::dbsc::DbscPolicy;
pub use tessera_http::cookies::{CookieConfig, CookieConfigError, SameSite};
/// The JSON view of a session the service shows too
/// (`PublicSession::of(&record)`).
pub use tessera_http::session_view::PublicSession;

/// Configuration shared by every request of one layer.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) sessions: Sessions,
    pub(crate) cookie: CookieConfig,
    /// The CSRF nonce cookie's name, made once rather than on every request.
    pub(crate) nonce_cookie: String,
    pub(crate) csrf: CsrfConfig,
    pub(crate) login_redirect: Option<String>,
    pub(crate) step_up_redirect: Option<String>,
    pub(crate) no_store_authenticated: bool,
    /// Set once the store made a verification wait (see `verify_now`).
    pub(crate) store_waits: StoreWaits,
    /// Device Bound Session Credentials, when enabled.
    pub(crate) dbsc: Option<dbsc::DbscState>,
}

/// Whether the store has ever made a request wait; clones start from the
/// value at the time.
#[derive(Debug, Default)]
pub(crate) struct StoreWaits(AtomicBool);

impl Clone for StoreWaits {
    fn clone(&self) -> Self {
        Self(AtomicBool::new(self.0.load(Ordering::Relaxed)))
    }
}

/// The tower layer for cookie sessions and CSRF; see the [module
/// docs](self).
#[derive(Debug, Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
    /// The store a URL opened, kept for DBSC's single-use markers.
    store: Option<OpenedStore>,
}

#[derive(Clone)]
struct OpenedStore(Arc<dyn tessera_core::Store>);

impl std::fmt::Debug for OpenedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenedStore")
    }
}

static INSECURE_WARNED: AtomicBool = AtomicBool::new(false);

impl SessionLayer {
    /// A layer over `sessions` with the given cookie and a default
    /// [`CsrfConfig`] (random per-process key, origin = the request's host).
    pub fn new(sessions: Sessions, cookie: CookieConfig) -> Self {
        if let Err(e) = cookie.validate() {
            tracing::error!(error = %e, "the session cookie configuration is invalid; browsers may drop the cookie");
        }
        if !cookie.secure && !INSECURE_WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                cookie = cookie.effective_name(),
                "session cookies lack `Secure` and the `__Host-` prefix (insecure_dev); use this only for plain-HTTP development"
            );
        }
        Self {
            shared: Arc::new(Shared {
                sessions,
                nonce_cookie: cookies::nonce_name(&cookie),
                cookie,
                csrf: CsrfConfig::new(),
                login_redirect: None,
                step_up_redirect: None,
                no_store_authenticated: true,
                store_waits: StoreWaits::default(),
                dbsc: None,
            }),
            store: None,
        }
    }

    /// Opens the store a URL names (`memory://`, `sqlite://PATH`, with
    /// feature `redis` `redis://…`/`rediss://…`, with feature `postgres`
    /// `postgres://…`; the same format as the service's, so both can share
    /// one SQLite file, one Redis or one PostgreSQL database) with the
    /// system clock. A Redis or PostgreSQL store must be opened within a
    /// Tokio runtime.
    pub fn from_store_url(
        url: &str,
        policy: SessionPolicy,
        cookie: CookieConfig,
    ) -> Result<Self, ConfigError> {
        cookie.validate()?;
        policy.validate().map_err(ConfigError::Policy)?;
        let store = store::open(&StoreUrl::parse(url)?)?;
        let mut layer = Self::new(
            Sessions::new(store.clone(), Arc::new(SystemClock), policy),
            cookie,
        );
        layer.store = Some(OpenedStore(store));
        Ok(layer)
    }

    /// Enables Device Bound Session Credentials (SPEC §4.5): the layer
    /// answers `POST /auth/dbsc/register` and `POST /auth/dbsc/refresh`
    /// itself, adds `Secure-Session-Registration` to the response of every
    /// request that logs in, treats a device-bound session as signed out
    /// unless the request carries its own unexpired bound cookie, and
    /// refuses [`Session::elevate`] to `policy.required_level` or above
    /// from an unbound session. The layer must wrap the app at the root
    /// (the paths are absolute). The challenges' single-use markers go to
    /// `options.replay`, else to the store [`SessionLayer::from_store_url`]
    /// opened; with neither this is an error.
    pub fn with_dbsc(mut self, options: dbsc::DbscOptions) -> Result<Self, ConfigError> {
        let replay: Arc<dyn tessera_core::ReplayStore> = match (options.replay, &self.store) {
            (Some(r), _) => r,
            (None, Some(s)) => s.0.clone(),
            (None, None) => return Err(ConfigError::DbscStore),
        };
        let name = &options.cookie_name;
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            || name == self.shared.cookie.effective_name()
            || *name == self.shared.nonce_cookie
        {
            return Err(ConfigError::DbscCookieName);
        }
        let dbsc = tessera_core::dbsc::Dbsc::new(
            self.shared.sessions.clone(),
            replay,
            options.sealer,
            options.policy,
        );
        Arc::make_mut(&mut self.shared).dbsc = Some(dbsc::DbscState {
            dbsc,
            cookie_name: options.cookie_name,
        });
        Ok(self)
    }

    pub fn with_csrf(mut self, csrf: CsrfConfig) -> Self {
        Arc::make_mut(&mut self.shared).csrf = csrf;
        self
    }

    /// Signed-out requests to [`RequireSession`] and friends get a 303 to
    /// this URL instead of a 401 problem (for HTML apps). `{next}` in it is
    /// replaced by the request path, e.g. `/login?next={next}`.
    pub fn login_redirect(mut self, url: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.shared).login_redirect = Some(url.into());
        self
    }

    /// Signed-in requests without the level [`RequireLevel`] or
    /// [`RequireRecentAuth`] asks for get a 303 to this URL instead of a 403
    /// (`{next}` as in [`SessionLayer::login_redirect`]), e.g.
    /// `/reauth?next={next}`.
    pub fn step_up_redirect(mut self, url: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.shared).step_up_redirect = Some(url.into());
        self
    }

    /// Whether responses to signed-in requests get `Cache-Control: no-store`
    /// when the handler set no `Cache-Control` (default true).
    pub fn no_store_when_authenticated(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.shared).no_store_authenticated = on;
        self
    }

    pub fn sessions(&self) -> &Sessions {
        &self.shared.sessions
    }

    pub fn cookie_config(&self) -> &CookieConfig {
        &self.shared.cookie
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`SessionLayer`].
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request<Body>> for SessionService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if self.shared.dbsc.is_some() && dbsc::is_endpoint(&req) {
            let shared = self.shared.clone();
            let register = req.uri().path() == tessera_http::dbsc::REGISTER_PATH;
            let (parts, _body) = req.into_parts();
            return Box::pin(async move {
                match &shared.dbsc {
                    Some(d) => Ok(dbsc::serve(&shared, d, register, &parts.headers).await),
                    None => Ok(problem::problem(Code::NotFound, "DBSC is not enabled")),
                }
            });
        }
        // A safe method needs no CSRF check, so the store lookup is its only
        // wait. When the store answers at once (the memory store always does;
        // SQLite does for reads), the service that was driven ready handles
        // the request here: no clone of it and no boxed state for the whole
        // exchange, only a small future that writes the cookie changes.
        if is_safe_method(req.method().as_str().as_bytes()) {
            let shared = &self.shared;
            let presented = cookies::read(
                req.headers(),
                &shared.cookie,
                &shared.nonce_cookie,
                bound_name(shared),
            );
            if let Some(verified) = verify_now(shared, &presented) {
                let nonce = presented.nonce.map(str::to_owned);
                let (current, bad_cookie, unadmitted) = match verified {
                    Ok(v) => v,
                    Err(e) => {
                        let resp = axum::response::IntoResponse::into_response(Error::Core(e));
                        return Box::pin(async move { Ok(resp) });
                    }
                };
                let device = DeviceSource::of(req.headers(), req.extensions());
                let mut conflicting = conflicting(shared, &presented, req.headers());
                note_skipped(req.headers(), unadmitted.is_some());
                conflicting.extend(unadmitted);
                let session =
                    session::Session::new(shared.clone(), device, current, nonce, bad_cookie, conflicting);
                req.extensions_mut().insert(session.clone());
                let fut = self.inner.call(req);
                return Box::pin(async move {
                    let mut resp = fut.await?;
                    session.apply(&mut resp);
                    Ok(resp)
                });
            }
        }
        // The clone that was driven to readiness handles this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(handle(self.shared.clone(), inner, req))
    }
}

/// What verifying the presented session cookies gave: the session (with the
/// cookie value that verified), whether a cookie was refused, and the
/// token of a device-bound session presented without its bound cookie
/// (signed out, but a logout still revokes it).
type Verified =
    Result<(Option<(Arc<SessionRecord>, session::Token)>, bool, Option<String>), tessera_core::Error>;

/// Verifies the presented session cookie. Several different values are
/// refused without a lookup (the service's rule), and so is a garbled one.
/// A store failure is an error (the request fails closed).
async fn verify_presented(shared: &Shared, presented: &cookies::Presented<'_>) -> Verified {
    let token = match presented.session {
        SessionValue::Absent => return Ok((None, false, None)),
        SessionValue::Invalid => return Ok((None, true, None)),
        SessionValue::Conflicting => {
            // No cookie is expired: the one this site set is the only one
            // a removal reaches, and dropping it would leave the other
            // (perhaps planted) value alone in the browser.
            tracing::info!("session cookies with different values refused");
            return Ok((None, false, None));
        }
        SessionValue::One(token) => token,
    };
    match shared.sessions.verify(token).await {
        Ok(rec) => {
            if let Some(d) = &shared.dbsc
                && !d.dbsc.admits(&rec, presented.bound.map(str::as_bytes))
            {
                // DB-09: the session cookie alone no longer signs in. The
                // cookie stays (the browser refreshes the bound cookie
                // and retries), and a logout still ends the session.
                tracing::info!(session = %rec.handle, "device-bound session without its bound cookie");
                return Ok((None, false, Some(token.to_owned())));
            }
            Ok((Some((rec, session::Token::new(token))), false, None))
        }
        Err(
            e @ (tessera_core::Error::SessionInvalid
            | tessera_core::Error::SessionExpired
            | tessera_core::Error::SessionRevoked),
        ) => {
            // Never adopted (SC-03); the response expires it. The value
            // itself is never logged.
            tracing::info!(reason = %e, "session cookie refused");
            Ok((None, true, None))
        }
        Err(e) => Err(e),
    }
}

/// DB-16: a browser that could not refresh says so in
/// `Secure-Session-Skipped`; the request stays unbound (so signed out for
/// a bound session), and the reason is logged.
fn note_skipped(headers: &axum::http::HeaderMap, unadmitted: bool) {
    if unadmitted && let Some(reason) = headers.get(tessera_http::dbsc::SECURE_SESSION_SKIPPED) {
        tracing::info!(reason = ?reason, "DBSC refresh skipped by the browser");
    }
}

/// The DBSC bound cookie's name, when DBSC is on.
fn bound_name(shared: &Shared) -> Option<&str> {
    shared.dbsc.as_ref().map(|d| d.cookie_name.as_str())
}

/// The values a logout revokes when the session cookies conflict (none
/// otherwise: then the session, if any, is the one to end).
fn conflicting(
    shared: &Shared,
    presented: &cookies::Presented<'_>,
    headers: &axum::http::HeaderMap,
) -> Vec<String> {
    if presented.session == SessionValue::Conflicting {
        cookies::conflicting_values(headers, &shared.cookie)
    } else {
        Vec::new()
    }
}

/// [`verify_presented`] if it completes without waiting, else `None`.
///
/// A store that had to wait once is not tried this way again: its lookup
/// started here is dropped (stores are cancel-safe, as any future may be
/// dropped) and redone on the general path, and that waste must not repeat
/// on every request.
fn verify_now(shared: &Shared, presented: &cookies::Presented<'_>) -> Option<Verified> {
    if shared.store_waits.0.load(Ordering::Relaxed) {
        return None;
    }
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(verify_presented(shared, presented)).poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => {
            shared.store_waits.0.store(true, Ordering::Relaxed);
            None
        }
    }
}

async fn handle<S>(shared: Arc<Shared>, mut inner: S, req: Request<Body>) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    let (mut parts, mut body) = req.into_parts();
    let presented = cookies::read(
        &parts.headers,
        &shared.cookie,
        &shared.nonce_cookie,
        bound_name(&shared),
    );

    // Header checks first: a cross-site request is refused before the
    // store is touched.
    let method = parts.method.as_str().as_bytes();
    let state_changing = !is_safe_method(method);
    let evidence = if state_changing {
        let authority = parts.uri.authority().map(|a| a.as_str());
        let ctx = FetchContext::from_headers(&parts.headers, Some(method), authority);
        match judge(&ctx, &shared.csrf.policy()) {
            Verdict::Refuse(why) => {
                tracing::info!(reason = why.detail(), method = %parts.method, "CSRF check refused a request");
                return Ok(problem::problem(Code::CsrfRejected, why.detail()));
            }
            Verdict::Allow(evidence) => evidence,
        }
    } else {
        Evidence::SafeMethod
    };

    let (current, bad_cookie, unadmitted) = match verify_presented(&shared, &presented).await {
        Ok(v) => v,
        Err(e) => return Ok(axum::response::IntoResponse::into_response(Error::Core(e))),
    };
    let nonce = presented.nonce.map(str::to_owned);

    let session = session::Session::new(
        shared.clone(),
        DeviceSource::of(&parts.headers, &parts.extensions),
        current,
        nonce,
        bad_cookie,
        {
            let mut c = conflicting(&shared, &presented, &parts.headers);
            note_skipped(&parts.headers, unadmitted.is_some());
            c.extend(unadmitted);
            c
        },
    );

    if state_changing {
        let need_token = evidence == Evidence::None || shared.csrf.token_policy == TokenPolicy::Always;
        let header_token = parts
            .headers
            .get(CSRF_HEADER)
            .map(|v| v.to_str().unwrap_or("").to_owned());
        let token = match header_token {
            Some(t) => Some(t),
            None if need_token && csrf::is_urlencoded_form(&parts.headers) => {
                let bytes = match axum::body::to_bytes(body, shared.csrf.max_form_bytes).await {
                    Ok(b) => b,
                    Err(_) => {
                        return Ok(problem::problem(Code::PayloadTooLarge, "form body too large"));
                    }
                };
                let t = csrf::form_token(&bytes);
                body = Body::from(bytes);
                t
            }
            None => None,
        };
        match token {
            Some(t) if !session.verify_csrf_token(&t) => {
                return Ok(problem::problem(
                    Code::CsrfRejected,
                    "CSRF token invalid for this session",
                ));
            }
            None if need_token => {
                return Ok(problem::problem(
                    Code::CsrfRejected,
                    "CSRF token missing (no Sec-Fetch-Site, Origin or Referer header)",
                ));
            }
            _ => {}
        }
    }

    parts.extensions.insert(session.clone());
    let mut resp = inner.call(Request::from_parts(parts, body)).await?;
    session.apply(&mut resp);
    Ok(resp)
}

/// Where the device facts of a login come from: the `User-Agent` header and
/// the peer address from `ConnectInfo`. Kept as they are (a refcounted header
/// value and a copy) and turned into strings only if the request logs in,
/// so ordinary requests allocate nothing for them.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeviceSource {
    user_agent: Option<axum::http::HeaderValue>,
    peer: Option<SocketAddr>,
}

impl DeviceSource {
    fn of(headers: &axum::http::HeaderMap, extensions: &axum::http::Extensions) -> Self {
        Self {
            user_agent: headers.get(header::USER_AGENT).cloned(),
            peer: extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0),
        }
    }

    /// The user agent (if printable) and the peer IP.
    pub(crate) fn to_input(&self) -> DeviceInput {
        let user_agent = self
            .user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.chars().any(|c| c.is_control() && c != '\t'))
            .map(str::to_owned);
        DeviceInput {
            user_agent,
            ip: self.peer.map(|p| p.ip().to_string()),
        }
    }
}
