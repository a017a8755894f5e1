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

/// Ready for traffic: not draining, and the store answers.
pub async fn readyz(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let draining = node.is_draining();
    let store = node.store.ping().await;
    let ready = !draining && store;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"ready": ready, "draining": draining, "database": store})))
}

pub async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    metrics::gauge!("chat_online_users").set(node.presence.local_online_users() as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], node.metrics.render())
}
