//! The browser layer's cookies: the session cookie, read and written by
//! [`tessera_http::cookies`] as the service reads and writes it, and the
//! layer's own pre-session CSRF nonce cookie beside it.

use axum::http::HeaderMap;
use tessera_http::cookies::{self, CookieConfig, SessionValue};

/// What the request's `Cookie` headers carry for us, borrowed from the
/// headers: the layer reads this on every request, so it copies nothing.
#[derive(Debug, Default)]
pub(crate) struct Presented<'h> {
    pub session: SessionValue<'h>,
    /// The pre-session CSRF nonce, if well-formed and not in conflict with
    /// another value.
    pub nonce: Option<&'h str>,
    /// The DBSC bound cookie, when DBSC is on and exactly one value came.
    pub bound: Option<&'h str>,
}

/// Reads only the `Cookie` header(s): never the URL, a form or any other
/// header (SC-04). `nonce_name` is [`nonce_name`] of the configuration,
/// `bound_name` the DBSC bound cookie's when DBSC is on.
pub(crate) fn read<'h>(
    headers: &'h HeaderMap,
    cfg: &CookieConfig,
    nonce_name: &str,
    bound_name: Option<&str>,
) -> Presented<'h> {
    let (session, nonce, bound) = match bound_name {
        Some(b) => {
            let [s, n, b] = cookies::session_values(headers, [cfg.effective_name(), nonce_name, b]);
            (s, n, b)
        }
        None => {
            let [s, n] = cookies::session_values(headers, [cfg.effective_name(), nonce_name]);
            (s, n, SessionValue::Absent)
        }
    };
    let bound = match bound {
        SessionValue::One(v) => Some(v),
        _ => None,
    };
    let nonce = match nonce {
        SessionValue::One(v) if is_nonce(v) => Some(v),
        _ => None,
    };
    Presented {
        session,
        nonce,
        bound,
    }
}

/// The values a logout revokes when the session cookies conflict.
pub(crate) fn conflicting_values(headers: &HeaderMap, cfg: &CookieConfig) -> Vec<String> {
    cookies::logout_values(headers, cfg.effective_name())
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The pre-session CSRF nonce cookie's name: the session cookie's plus
/// `-csrf` (so `__Host-tessera-csrf` by default).
pub(crate) fn nonce_name(cfg: &CookieConfig) -> String {
    format!("{}-csrf", cfg.effective_name())
}

/// The shape of a nonce minted by [`super::csrf::new_nonce`].
pub(crate) fn is_nonce(v: &str) -> bool {
    v.len() == 43
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The pre-session CSRF nonce cookie, alive as long as its tokens, with
/// the session cookie's attributes.
pub(crate) fn nonce(cfg: &CookieConfig, name: &str, nonce: &str, ttl_secs: i64) -> String {
    cookies::set_cookie(cfg, name, nonce, Some(ttl_secs))
}
