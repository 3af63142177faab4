//! CSRF tokens, the browser layer's defence for requests that carry no
//! Fetch Metadata, `Origin` or `Referer` (the header rule is
//! [`tessera_http::csrf`], shared with the service).
//!
//! Tokens are never stored. A session-bound token is
//! `s.` + base64url(HMAC-SHA256(key, "tessera-csrf/v1/session" ‖ handle ‖
//! SHA-256 of the session token)), so it is valid only with that session and
//! changes whenever the session token rotates (login, step-up: CS-07).
//!
//! Before login there is no session to bind to. A login form gets a
//! pre-session token bound to a random nonce kept in an `HttpOnly`,
//! `SameSite` cookie (`__Host-tessera-csrf`): `p.` + issue time + `.` +
//! base64url(HMAC(key, "tessera-csrf/v1/pre" ‖ nonce ‖ time)). A forged
//! cross-site login cannot carry it (the attacker cannot read the victim's
//! nonce, nor plant one across the `__Host-` prefix), and it expires after
//! the configured lifetime (2 hours by default). Once the request has a
//! session, a pre-session token no longer counts.

use aws_lc_rs::hmac;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_core::{SessionRecord, Timestamp};

use super::config::{CsrfConfig, CsrfKey};

/// The request header that carries a CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field that carries a CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

const SESSION_LABEL: &[u8] = b"tessera-csrf/v1/session\0";
const PRE_LABEL: &[u8] = b"tessera-csrf/v1/pre\0";
/// Clock skew tolerated on a pre-session token's issue time.
const SKEW_SECS: i64 = 60;

fn b64(tag: &hmac::Tag) -> String {
    URL_SAFE_NO_PAD.encode(tag.as_ref())
}

fn session_message(rec: &SessionRecord) -> Vec<u8> {
    let mut m = Vec::with_capacity(SESSION_LABEL.len() + rec.handle.len() + 33);
    m.extend_from_slice(SESSION_LABEL);
    m.extend_from_slice(rec.handle.as_bytes());
    m.push(0);
    m.extend_from_slice(rec.token_hash.as_bytes());
    m
}

fn pre_message(nonce: &str, issued: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(PRE_LABEL.len() + nonce.len() + 21);
    m.extend_from_slice(PRE_LABEL);
    m.extend_from_slice(nonce.as_bytes());
    m.push(0);
    m.extend_from_slice(issued.to_string().as_bytes());
    m
}

pub(crate) fn session_token(key: &CsrfKey, rec: &SessionRecord) -> String {
    format!("s.{}", b64(&hmac::sign(&key.0, &session_message(rec))))
}

pub(crate) fn pre_session_token(key: &CsrfKey, nonce: &str, now: Timestamp) -> String {
    let issued = now.unix_secs();
    format!(
        "p.{issued}.{}",
        b64(&hmac::sign(&key.0, &pre_message(nonce, issued)))
    )
}

fn decode_tag(s: &str) -> Option<[u8; 32]> {
    if s.len() != 43 {
        return None;
    }
    let mut out = [0u8; 32];
    match tessera_core::b64url::decode_into(s.as_bytes(), &mut out) {
        Some(b) if b.len() == 32 => Some(out),
        _ => None,
    }
}

/// Checks `token` against the request's session (if any) or else its nonce,
/// in constant time (`hmac::verify`).
pub(crate) fn verify(
    cfg: &CsrfConfig,
    token: &str,
    session: Option<&SessionRecord>,
    nonce: Option<&str>,
    now: Timestamp,
) -> bool {
    if token.len() > 128 {
        return false;
    }
    if let Some(rec) = session {
        let Some(tag) = token.strip_prefix("s.").and_then(decode_tag) else {
            return false;
        };
        return hmac::verify(&cfg.key.0, &session_message(rec), &tag).is_ok();
    }
    let Some(nonce) = nonce else { return false };
    let Some((issued, tag)) = token.strip_prefix("p.").and_then(|r| r.split_once('.')) else {
        return false;
    };
    let (Ok(issued), Some(tag)) = (issued.parse::<i64>(), decode_tag(tag)) else {
        return false;
    };
    let age = now.unix_secs().saturating_sub(issued);
    if age < -SKEW_SECS || age > cfg.pre_session_ttl_secs {
        return false;
    }
    hmac::verify(&cfg.key.0, &pre_message(nonce, issued), &tag).is_ok()
}

/// A fresh pre-session nonce (256 bits, base64url).
pub(crate) fn new_nonce() -> String {
    let mut b = [0u8; 32];
    tessera_core::secret::fill_random(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Whether the body is a URL-encoded form (the only body the layer reads to
/// find `csrf_token`; multipart forms must send the `X-CSRF-Token` header).
pub(crate) fn is_urlencoded_form(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// The first `csrf_token` field of a URL-encoded body.
pub(crate) fn form_token(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned())
}
