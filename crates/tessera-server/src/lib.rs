//! `tessera`, the session-management service: the HTTP edge over
//! [`tessera_core`].
//!
//! - [`config`]: TOML + `TESSERA_*` env + flags, validated.
//! - [`cli`]: the `tessera` command line.
//! - [`app`]: the axum router and its middleware; [`handlers`] are thin.
//! - [`problem`]: [`problem::ApiError`], the one error type, as RFC 9457.
//! - [`auth`]: backend API keys; [`metrics`]: Prometheus and the timed store.
//! - [`openapi`]: the OpenAPI 3.1 document (`GET /openapi.json`).
//! - [`serve`]: startup, bootstrap key, sweeper, graceful shutdown.
//! - [`listener`]: the accept loop, with the connection cap and the
//!   header-read timeout; [`tls`]: HTTPS and client certificates.
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::todo,
    clippy::unimplemented
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod edge;
pub mod extract;
pub mod handlers;
pub mod issuer;
pub mod limits;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod open_store;
pub mod openapi;
pub mod problem;
pub mod serve;
pub mod tls;

pub use app::{App, AppState};
pub use config::Config;
pub use problem::ApiError;
