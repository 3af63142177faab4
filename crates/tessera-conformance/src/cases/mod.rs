//! The cases, one module per store capability and two cross-cutting ones.
//! Each case is a `pub async fn<S: …>(Arc<S>)` bound by the capabilities it
//! uses, that panics on a violation; the macros of the crate root run each
//! as its own test on a fresh store.
//!
//! - [`sessions`], [`refresh`], [`signing_keys`], [`api_keys`], [`events`],
//!   [`leases`], [`replay`], [`rate_limits`], [`health`]: one capability's contract, straight against
//!   the store.
//! - [`domain`]: the checklist's rules through the services.
//! - [`concurrency`]: atomicity of the session services under real
//!   parallelism.
//! - [`model`]: random sequences of operations against a reference model.

pub mod api_keys;
pub mod clients;
pub mod concurrency;
pub mod domain;
pub mod events;
pub mod health;
pub mod leases;
pub mod model;
pub mod rate_limits;
pub mod refresh;
pub mod replay;
pub mod sessions;
pub mod signing_keys;
