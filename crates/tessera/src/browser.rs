//! Cookie sessions for axum/tower apps.
