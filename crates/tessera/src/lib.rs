//! Tessera for Rust applications.
//!
//! - [`browser`]: cookie sessions for axum/tower apps — a layer, extractors,
//!   login/elevate/logout, CSRF — over the same core and stores as the
//!   `tessera` service (SPEC §4.2).
//! - [`resource`]: a resource-server verifier for Tessera's RFC 9068 access
//!   tokens with JWKS caching and the pushed revocation feed (SPEC §4.4).
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::todo,
    clippy::unimplemented
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(feature = "browser")]
pub mod browser;
#[cfg(feature = "resource")]
pub mod resource;

pub use tessera_core as core;
