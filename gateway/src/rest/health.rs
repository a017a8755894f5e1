//! Liveness, readiness and metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::node::Node;

/// Alive: the process answers.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready for traffic: not draining, and the database (and Redis) answered
/// within `UNREACHABLE_GRACE_MS`.
pub async fn readyz(State(node): State<Arc<Node>>) -> impl IntoResponse {
    readiness_response(node.health.readiness())
}

fn readiness_response(readiness: shared::health::Readiness) -> axum::response::Response {
    let (status, body) = readiness.response();
    (StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), Json(body)).into_response()
}

pub async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    metrics::gauge!("chat_online_users").set(node.presence.local_online_users() as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], node.metrics.render())
}
