//! Reading the session cookie from `Cookie` and writing `Set-Cookie`.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use cookie::Cookie;
use tessera_core::Timestamp;

use super::config::{CookieConfig, SameSite};

/// At most this many cookies of the session's name are tried (a browser
/// sends several only when cookies of other paths or domains were tossed in).
const MAX_CANDIDATES: usize = 4;
/// A cookie value longer than this is not looked at (SC-13); session tokens
/// and nonces are 47 and 43 characters.
const MAX_VALUE_LEN: usize = 128;

/// What the request's `Cookie` headers carry for us, borrowed from them: the
/// layer reads this on every request, so it copies nothing.
#[derive(Debug, Default)]
pub(crate) struct Presented<'h> {
    session: [&'h str; MAX_CANDIDATES],
    session_count: usize,
    /// A cookie of the session's name was present but too long or garbled.
    pub garbage: bool,
    /// The pre-session CSRF nonce, if well-formed.
    pub nonce: Option<&'h str>,
}

impl<'h> Presented<'h> {
    /// Values of the session cookie, in header order.
    pub fn session(&self) -> &[&'h str] {
        &self.session[..self.session_count]
    }
}

/// Reads only the `Cookie` header(s): never the URL, a form or any other
/// header (SC-04). `name` is the session cookie's effective name and
/// `nonce_name` the CSRF nonce cookie's.
///
/// Splits like `cookie::Cookie::split_parse` without percent-decoding: pairs
/// at `;`, name and value at the first `=`, both trimmed; a pair without `=`
/// is skipped. (A valid header value holds only visible ASCII, space and tab,
/// so trimming ASCII whitespace trims what `str::trim` would.)
pub(crate) fn read<'h>(headers: &'h HeaderMap, name: &str, nonce_name: &str) -> Presented<'h> {
    let mut out = Presented::default();
    for value in headers.get_all(COOKIE) {
        let Ok(s) = value.to_str() else { continue };
        for pair in s.split(';') {
            let Some(eq) = pair.bytes().position(|b| b == b'=') else {
                continue;
            };
            let (n, v) = (pair[..eq].trim_ascii(), &pair[eq + 1..]);
            if n == name {
                let v = v.trim_ascii();
                if v.len() > MAX_VALUE_LEN || v.is_empty() {
                    out.garbage = true;
                } else if out.session_count < MAX_CANDIDATES {
                    out.session[out.session_count] = v;
                    out.session_count += 1;
                }
            } else if n == nonce_name && out.nonce.is_none() {
                let v = v.trim_ascii();
                if is_nonce(v) {
                    out.nonce = Some(v);
                }
            }
        }
    }
    out
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
