//! Reading the session cookie from `Cookie` and writing `Set-Cookie`.

use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderValue};
use cookie::Cookie;
use tessera_core::Timestamp;
use tessera_core::cookie_header::{self, SessionCookie};

use super::config::{CookieConfig, SameSite};

/// At most this many distinct session-cookie values are revoked by a
/// logout, as the service's `/auth/logout` does.
pub(crate) const MAX_LOGOUT_COOKIES: usize = 4;
/// A cookie value longer than this is not looked at (SC-13); session tokens
/// and nonces are 47 and 43 characters.
const MAX_VALUE_LEN: usize = 128;

/// The session cookie as the request presents it, borrowed from the
/// headers: the layer reads this on every request, so it copies nothing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionValue<'h> {
    #[default]
    Absent,
    /// One value (perhaps sent more than once), of a plausible length.
    One(&'h str),
    /// One value, too long, empty or not UTF-8: refused unread, and expired.
    Garbage,
    /// Several different values: refused, as the service's forward auth
    /// refuses them (`tessera_core::cookie_header::SessionCookie`).
    Conflicting,
}

/// What the request's `Cookie` headers carry for us.
#[derive(Debug, Default)]
pub(crate) struct Presented<'h> {
    pub session: SessionValue<'h>,
    /// The pre-session CSRF nonce, if well-formed.
    pub nonce: Option<&'h str>,
}

/// Reads only the `Cookie` header(s): never the URL, a form or any other
/// header (SC-04). `name` is the session cookie's effective name and
/// `nonce_name` the CSRF nonce cookie's.
///
/// The headers are read as bytes by `tessera_core::cookie_header`, the
/// rule the service uses too: another cookie's non-ASCII byte hides
/// nothing, and two different session-cookie values are a conflict.
pub(crate) fn read<'h>(headers: &'h HeaderMap, name: &str, nonce_name: &str) -> Presented<'h> {
    let raw = || headers.get_all(COOKIE).into_iter().map(HeaderValue::as_bytes);
    let session = match cookie_header::session_cookie(raw(), name.as_bytes()) {
        SessionCookie::Absent => SessionValue::Absent,
        SessionCookie::Conflicting => SessionValue::Conflicting,
        SessionCookie::One(v) => match std::str::from_utf8(v) {
            Ok(v) if !v.is_empty() && v.len() <= MAX_VALUE_LEN => SessionValue::One(v),
            _ => SessionValue::Garbage,
        },
    };
    let nonce = cookie_header::values(raw(), nonce_name.as_bytes())
        .find_map(|v| std::str::from_utf8(v).ok().filter(|v| is_nonce(v)));
    Presented { session, nonce }
}

/// The distinct values of the session cookie (at most
/// [`MAX_LOGOUT_COOKIES`]), for a logout to revoke when they conflict.
pub(crate) fn conflicting_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    let raw = headers.get_all(COOKIE).into_iter().map(HeaderValue::as_bytes);
    cookie_header::distinct_values(raw, name.as_bytes(), MAX_LOGOUT_COOKIES)
        .into_iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_VALUE_LEN)
        .map(str::to_owned)
        .collect()
}

/// The shape of a nonce minted by [`super::csrf::new_nonce`].
pub(crate) fn is_nonce(v: &str) -> bool {
    v.len() == 43
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn base<'c>(cfg: &CookieConfig, name: String, value: String) -> cookie::CookieBuilder<'c> {
    let mut c = Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(match cfg.same_site {
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::Strict => cookie::SameSite::Strict,
        });
    if cfg.secure {
        c = c.secure(true);
    }
    c
}

/// `__Host-tessera=<token>; HttpOnly; SameSite=Lax; Secure; Path=/;
/// Max-Age=<seconds to the absolute expiry>` (SC-05…SC-10).
pub(crate) fn session(
    cfg: &CookieConfig,
    token: &str,
    absolute_expires_at: Timestamp,
    now: Timestamp,
) -> String {
    let mut c = base(cfg, cfg.effective_name().to_owned(), token.to_owned());
    if cfg.persistent {
        let secs = absolute_expires_at.millis_since(now).max(0) / 1000;
        c = c.max_age(cookie::time::Duration::seconds(secs));
    }
    c.build().to_string()
}

/// The same attributes with an empty value and `Max-Age=0` (EX-12).
pub(crate) fn session_removal(cfg: &CookieConfig) -> String {
    removal(cfg, cfg.effective_name().to_owned())
}

/// The pre-session CSRF nonce cookie, alive as long as its tokens.
pub(crate) fn nonce(cfg: &CookieConfig, nonce: &str, ttl_secs: i64) -> String {
    base(cfg, cfg.csrf_nonce_name(), nonce.to_owned())
        .max_age(cookie::time::Duration::seconds(ttl_secs))
        .build()
        .to_string()
}

pub(crate) fn nonce_removal(cfg: &CookieConfig) -> String {
    removal(cfg, cfg.csrf_nonce_name())
}

fn removal(cfg: &CookieConfig, name: String) -> String {
    base(cfg, name, String::new())
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}
