//! Request handlers: parse, call the core, shape the answer. Nothing else.

pub mod dbsc;
pub mod forward_auth;
pub mod oauth;
pub mod ops;
pub mod revocations;
pub mod sessions;

use axum::http::Method;

use crate::problem::ApiError;

/// Fallback for unknown routes.
pub async fn not_found(method: Method) -> ApiError {
    // The path is not echoed: a client may have misplaced a token in it.
    ApiError::not_found(format!("no route answers {method} at this path"))
}

/// Fallback for a known route with a method it does not answer.
pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on this route"))
}
