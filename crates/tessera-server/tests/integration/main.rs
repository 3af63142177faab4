//! Black-box tests of the real `tessera` binary over HTTP (one test binary,
//! so the suite links once), and `parity`, which drives the service's
//! router in process beside the library's layer.
#![forbid(unsafe_code)]

mod api;
mod bad_input;
mod chaos_proxy;
mod concurrency;
mod config_cli;
mod crash;
mod dpop_client;
mod duties;
mod faults;
mod forward_auth;
mod harness;
mod listener;
mod many_nodes;
mod memcached;
mod oauth_client;
mod parity;
mod postgres;
mod rate_limits;
mod redis;
mod restart;
mod tls;
mod tokens;
mod topologies;
