//! Routes of the demo.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use tessera::browser::{
    CookieConfig, CsrfConfig, CsrfKey, DbscOptions, MaybeSession, RequireRecentAuth, RequireSession,
    SecurityHeadersLayer, Session, SessionLayer, TokenPolicy,
};
use tessera_core::{AuthInput, DeviceInput, Sealer, SessionPolicy, Sessions};

use crate::html;
use crate::users::{self, Passwords, UserError, Users};

/// Seconds a password confirmation stays good for sensitive changes.
pub const RECENT_AUTH_SECS: u32 = 300;

/// How the demo is set up (from the command line, or by tests).
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub allowed_origins: Vec<String>,
    pub insecure_dev_cookies: bool,
    /// Offer DBSC (`SessionLayer::with_dbsc`), sealing key in
    /// `<data-dir>/dbsc-key`.
    pub dbsc: bool,
    /// `DbscPolicy::cookie_ttl_secs`.
    pub dbsc_cookie_ttl_secs: i64,
}

#[derive(Clone)]
pub struct AppState {
    users: Users,
    passwords: Passwords,
}

/// The router with every layer, and the core (for the sweeper).
pub fn build(cfg: &Config, passwords: Passwords) -> anyhow::Result<(Router, Sessions)> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create the data directory {}", cfg.data_dir.display()))?;
    let users = Users::open(&cfg.data_dir.join("users.db"))?;
    let store_url = format!("sqlite://{}", cfg.data_dir.join("sessions.db").display());
    let cookie = if cfg.insecure_dev_cookies {
        CookieConfig::insecure_dev()
    } else {
        CookieConfig::default()
    };
    let mut csrf = CsrfConfig::new()
        .key(csrf_key(&cfg.data_dir)?)
        // Every form carries `csrf_token`, on top of the Fetch Metadata and
        // Origin checks.
        .token_policy(TokenPolicy::Always);
    for o in &cfg.allowed_origins {
        csrf = csrf.allowed_origin(o)?;
    }
    let mut layer = SessionLayer::from_store_url(&store_url, SessionPolicy::default(), cookie)?
        .with_csrf(csrf)
        .login_redirect("/login")
        .step_up_redirect("/reauth?next={next}");
    if cfg.dbsc {
        let mut opts = DbscOptions::new(Arc::new(dbsc_sealer(&cfg.data_dir)?));
        opts.policy.cookie_ttl_secs = cfg.dbsc_cookie_ttl_secs;
        layer = layer.with_dbsc(opts)?;
    }
    let sessions = layer.sessions().clone();

    let security = SecurityHeadersLayer::new().content_security_policy(
        "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    let router = Router::new()
        .route("/", get(root))
        .route("/style.css", get(stylesheet))
        .route("/signup", get(signup_page).post(signup))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/account", get(account))
        .route("/account/sessions/{handle}/revoke", post(revoke))
        .route("/account/sessions/revoke-others", post(revoke_others))
        .route("/account/password", get(password_page).post(change_password))
        .route("/account/delete", post(delete_account))
        .route("/reauth", get(reauth_page).post(reauth))
        .layer(axum::middleware::from_fn(no_store))
        .layer(layer)
        .layer(security)
        .with_state(AppState { users, passwords });
    Ok((router, sessions))
}

/// The CSRF key survives restarts (open forms keep working) and could be
/// shared by several processes: it lives in `<data-dir>/csrf-key`, 0600.
fn csrf_key(dir: &Path) -> anyhow::Result<CsrfKey> {
    let path = dir.join("csrf-key");
    if let Ok(s) = std::fs::read_to_string(&path) {
        return CsrfKey::from_base64url(&s).with_context(|| format!("{} is not a CSRF key", path.display()));
    }
    let mut b = [0u8; 32];
    tessera_core::secret::fill_random(&mut b);
    write_private(&path, &URL_SAFE_NO_PAD.encode(b))?;
    let key = CsrfKey::from_bytes(&b);
    b.fill(0);
    Ok(key)
}

/// The DBSC sealing key, like the CSRF key: kept across restarts (bound
/// cookies and open challenges stay valid) in `<data-dir>/dbsc-key`, 0600.
fn dbsc_sealer(dir: &Path) -> anyhow::Result<Sealer> {
    let path = dir.join("dbsc-key");
    if let Ok(s) = std::fs::read_to_string(&path) {
        return Sealer::from_base64url(s.trim())
            .with_context(|| format!("{} is not a DBSC key", path.display()));
    }
    let mut b = Sealer::generate_key();
    write_private(&path, &URL_SAFE_NO_PAD.encode(b))?;
    let sealer = Sealer::new(&b);
    b.fill(0);
    Ok(sealer)
}

pub(crate) fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")?;
    Ok(())
}

/// Every page of the demo is private or carries a CSRF token: never cached.
async fn no_store(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A server-side failure: logged, shown as a plain page without details.
fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "request failed");
    html::message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Please try again in a moment.",
        ("/", "Home"),
    )
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Only local paths are followed after re-authentication (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/account".to_owned(),
    }
}

fn password_auth(level: u8) -> AuthInput {
    AuthInput {
        level: Some(level),
        methods: vec!["pwd".to_owned()],
    }
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        crate::html::STYLE,
    )
        .into_response()
}

async fn root(MaybeSession(s): MaybeSession) -> Response {
    see_other(if s.is_some() { "/account" } else { "/login" })
}

#[derive(Debug, Default, Deserialize)]
struct Credentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn signup_page(s: Session) -> Response {
    html::signup(&s.csrf_token(), "", None).into_response()
}

async fn signup(State(app): State<AppState>, s: Session, Form(f): Form<Credentials>) -> Response {
    let fail = |status, msg: &str, name: &str| {
        html::with_status(status, html::signup(&s.csrf_token(), name, Some(msg)))
    };
    let username = match users::check_username(&f.username) {
        Ok(u) => u,
        Err(msg) => return fail(StatusCode::BAD_REQUEST, msg, &f.username),
    };
    if let Err(msg) = users::check_new_password(&f.password) {
        return fail(StatusCode::BAD_REQUEST, msg, &username);
    }
    let hash = match app.passwords.hash(f.password).await {
        Ok(h) => h,
        Err(e) => return internal(e),
    };
    let user = match app.users.create(&username, hash).await {
        Ok(u) => u,
        Err(UserError::Taken) => {
            return fail(StatusCode::CONFLICT, "That username is taken.", &username);
        }
        Err(e) => return internal(e),
    };
    tracing::info!(user = %user.id, "account created");
    match s.login(&user.id, password_auth(1), DeviceInput::default()).await {
        Ok(()) => see_other("/account"),
        Err(e) => internal(e),
    }
}

async fn login_page(s: Session) -> Response {
    if s.is_authenticated() {
        return see_other("/account");
    }
    html::login(&s.csrf_token(), "", None).into_response()
}

async fn login(State(app): State<AppState>, s: Session, Form(f): Form<Credentials>) -> Response {
    let user = if f.username.len() > 256 || f.password.len() > users::MAX_PASSWORD_BYTES {
        None
    } else {
        match app.users.by_username(f.username.trim()).await {
            Ok(u) => u,
            Err(e) => return internal(e),
        }
    };
    let ok = app
        .passwords
        .verify(f.password, user.as_ref().map(|u| u.password_hash.clone()))
        .await;
    let Some(user) = user.filter(|_| ok) else {
        tracing::info!("failed sign-in");
        return html::with_status(
            StatusCode::UNAUTHORIZED,
            html::login(&s.csrf_token(), &f.username, Some("Wrong username or password.")),
        );
    };
    match s.login(&user.id, password_auth(1), DeviceInput::default()).await {
        Ok(()) => see_other("/account"),
        Err(e) => internal(e),
    }
}

async fn logout(s: Session) -> Response {
    match s.logout().await {
        Ok(()) => see_other("/login"),
        Err(e) => internal(e),
    }
}

/// The signed-in user, or a response that signs a session of a deleted user
/// out.
async fn current_user(app: &AppState, s: &Session) -> Result<users::User, Response> {
    let subject = s.subject().unwrap_or_default();
    match app.users.by_id(&subject).await {
        Ok(Some(u)) => Ok(u),
        Ok(None) => {
            let _ = s.logout().await;
            Err(see_other("/login"))
        }
        Err(e) => Err(internal(e)),
    }
}

async fn account(State(app): State<AppState>, RequireSession(s): RequireSession) -> Response {
    let user = match current_user(&app, &s).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let sessions = match s.list_sessions().await {
        Ok(l) => l,
        Err(e) => return internal(e),
    };
    html::account(
        &s.csrf_token(),
        &user.username,
        &s.handle().unwrap_or_default(),
        &sessions,
    )
    .into_response()
}

/// Ending sessions and deleting the account need a password entered in the
/// last five minutes (signing in counts), EX-10/EX-14.
fn require_recent(s: &Session) -> Option<Response> {
    (!s.auth_is_recent(1, i64::from(RECENT_AUTH_SECS))).then(|| see_other("/reauth?next=/account"))
}

async fn revoke(RequireSession(s): RequireSession, UrlPath(handle): UrlPath<String>) -> Response {
    if let Some(r) = require_recent(&s) {
        return r;
    }
    let own = s.handle().is_some_and(|h| h == handle);
    match s.revoke(&handle).await {
        Ok(()) if own => see_other("/login"),
        Ok(()) => see_other("/account"),
        Err(tessera::browser::Error::NotFound) => html::message(
            StatusCode::NOT_FOUND,
            "No such session",
            "That session has already ended.",
            ("/account", "Back to your account"),
        ),
        Err(e) => internal(e),
    }
}

async fn revoke_others(RequireSession(s): RequireSession) -> Response {
    if let Some(r) = require_recent(&s) {
        return r;
    }
    match s.revoke_others().await {
        Ok(n) => {
            tracing::info!(revoked = n, "other sessions signed out");
            see_other("/account")
        }
        Err(e) => internal(e),
    }
}

async fn password_page(
    State(app): State<AppState>,
    RequireRecentAuth(s): RequireRecentAuth<2, RECENT_AUTH_SECS>,
) -> Response {
    match current_user(&app, &s).await {
        Ok(u) => html::password(&s.csrf_token(), &u.username, None).into_response(),
        Err(r) => r,
    }
}

#[derive(Debug, Default, Deserialize)]
struct NewPassword {
    #[serde(default)]
    new_password: String,
}

async fn change_password(
    State(app): State<AppState>,
    RequireRecentAuth(s): RequireRecentAuth<2, RECENT_AUTH_SECS>,
    Form(f): Form<NewPassword>,
) -> Response {
    let user = match current_user(&app, &s).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(msg) = users::check_new_password(&f.new_password) {
        return html::with_status(
            StatusCode::BAD_REQUEST,
            html::password(&s.csrf_token(), &user.username, Some(msg)),
        );
    }
    let hash = match app.passwords.hash(f.new_password).await {
        Ok(h) => h,
        Err(e) => return internal(e),
    };
    if let Err(e) = app.users.set_password_hash(&user.id, hash).await {
        return internal(e);
    }
    // A privilege change: new token for this browser (FX-03), and every
    // other session ends.
    let rotated = s
        .elevate(AuthInput {
            level: None,
            methods: vec!["pwd".to_owned()],
        })
        .await;
    if let Err(e) = rotated {
        return internal(e);
    }
    match s.revoke_others().await {
        Ok(n) => {
            tracing::info!(user = %user.id, revoked = n, "password changed");
            see_other("/account")
        }
        Err(e) => internal(e),
    }
}

async fn delete_account(State(app): State<AppState>, RequireSession(s): RequireSession) -> Response {
    if let Some(r) = require_recent(&s) {
        return r;
    }
    let user = match current_user(&app, &s).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    // Sessions first: a half-finished deletion must not leave a live
    // session behind.
    if let Err(e) = s.logout_everywhere().await {
        return internal(e);
    }
    if let Err(e) = app.users.delete(&user.id).await {
        return internal(e);
    }
    tracing::info!(user = %user.id, "account deleted");
    see_other("/login")
}

#[derive(Debug, Default, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn reauth_page(
    State(app): State<AppState>,
    RequireSession(s): RequireSession,
    Query(q): Query<NextQuery>,
) -> Response {
    match current_user(&app, &s).await {
        Ok(u) => {
            html::reauth(&s.csrf_token(), &u.username, &safe_next(q.next.as_deref()), None).into_response()
        }
        Err(r) => r,
    }
}

#[derive(Debug, Default, Deserialize)]
struct ReauthForm {
    #[serde(default)]
    password: String,
    next: Option<String>,
}

async fn reauth(
    State(app): State<AppState>,
    RequireSession(s): RequireSession,
    Form(f): Form<ReauthForm>,
) -> Response {
    let user = match current_user(&app, &s).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let next = safe_next(f.next.as_deref());
    let ok = f.password.len() <= users::MAX_PASSWORD_BYTES
        && app
            .passwords
            .verify(f.password, Some(user.password_hash.clone()))
            .await;
    if !ok {
        return html::with_status(
            StatusCode::UNAUTHORIZED,
            html::reauth(&s.csrf_token(), &user.username, &next, Some("Wrong password.")),
        );
    }
    // Step-up: a new cookie value, same session (FX-02).
    match s.elevate(password_auth(2)).await {
        Ok(()) => see_other(&next),
        Err(e) => internal(e),
    }
}
