//! Black-box tests of the real `tessera` binary over HTTP (one test binary,
//! so the suite links once).
#![forbid(unsafe_code)]

mod api;
mod bad_input;
mod concurrency;
mod config_cli;
mod forward_auth;
mod harness;
mod listener;
mod restart;
mod tokens;
