//! The HTTP rules every face of Tessera applies (SPEC §5, "one rule per
//! concern"): the service's forward auth and logout, and the library's
//! browser layer, are adapters over this crate.
//!
//! - [`bearer`]: access tokens at resource servers — `Authorization:
//!   Bearer|DPoP`, the `DPoP` header, `WWW-Authenticate` challenges;
//! - [`cookies`]: the session cookie's configuration (name, `__Host-`
//!   prefix rules, attributes), reading it from `Cookie` request headers
//!   (bytes, one duplicate rule) and writing `Set-Cookie` and its removal;
//! - [`dbsc`]: Device Bound Session Credentials on the wire (headers, the
//!   session instruction, the bound cookie);
//! - [`csrf`]: the CSRF decision, a pure function from a request's fetch
//!   context and a policy to a [`csrf::Verdict`];
//! - [`problem`]: RFC 9457 problem documents, one status and title per code;
//! - [`session_view`]: the public JSON view of a session.
//!
//! It knows `http`'s types but no web framework, so each face keeps only
//! its own request and response plumbing. The rules and the choices made
//! where the faces used to disagree are in `docs/http-rules.md`.
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::todo,
    clippy::unimplemented
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

/// The value of header `name` when the request carries it exactly once and
/// as visible text: the rule for headers whose repetition would be
/// ambiguous (DBSC, the proxied request's URL).
pub fn single_header<'h>(headers: &'h http::HeaderMap, name: &http::HeaderName) -> Option<&'h str> {
    let mut it = headers.get_all(name).iter();
    match (it.next(), it.next()) {
        (Some(v), None) => v.to_str().ok(),
        _ => None,
    }
}

pub mod bearer;
pub mod cookies;
pub mod csrf;
pub mod dbsc;
pub mod origin;
pub mod problem;
pub mod session_view;
