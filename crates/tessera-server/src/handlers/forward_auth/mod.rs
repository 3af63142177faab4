//! Forward auth for reverse proxies (SPEC §4.2): `GET|HEAD /auth/verify`
//! ([`verify()`]) and `POST /auth/logout` ([`logout()`]).
//!
//! Both are adapters over `tessera_http`, the rules the library's browser
//! layer applies too: they read the request into a fetch context and a
//! cookie value, and turn the verdicts into answers. Every answer has
//! `Cache-Control: no-store` and is counted in
//! `tessera_forward_auth_total{endpoint, outcome}`.

use axum::http::{HeaderValue, header};
use axum::response::Response;

mod logout;
mod verify;

#[cfg(test)]
mod tests;

pub(crate) use logout::__path_logout;
pub use logout::logout;
#[doc(hidden)]
pub use verify::fuzzing;
pub(crate) use verify::{__path_verify, __path_verify_proxied, __path_verify_slash};
pub use verify::{X_TESSERA_AUTH_LEVEL, X_TESSERA_SESSION, X_TESSERA_SUBJECT, verify};

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
