//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::problem::ApiResult;

#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = crate::openapi::schemas::Status)))]
/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses(
        (status = 200, description = "The store answers", body = crate::openapi::schemas::Status),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
/// The store answers, and the start-up work that needs it is done.
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state.health.ping().await?;
    if !state.started.load(std::sync::atomic::Ordering::Acquire) {
        return Err(tessera_core::StoreError::Unavailable("the service is still starting".into()).into());
    }
    Ok(Json(json!({ "status": "ready" })))
}

#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
/// Prometheus text exposition format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}
