//! Request handlers: parse, call the core, shape the answer. Nothing else.

pub mod ops;
pub mod sessions;

use axum::http::{Method, Uri};

use crate::problem::ApiError;

/// Fallback for unknown routes.
pub async fn not_found(uri: Uri) -> ApiError {
    // The path is public (handles are not credentials; tokens never travel in URLs).
    let path: String = uri.path().chars().take(200).collect();
    ApiError::not_found(format!("no route for {path}"))
}

/// Fallback for a known route with a method it does not answer.
pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on this route"))
}
