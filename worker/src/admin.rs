//! The worker's small admin HTTP listener: `/metrics` for Prometheus,
//! `/healthz` (alive) and `/readyz` (the database and Redis answer, and the
//! worker is not stopping).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use shared::health::Health;
use shared::telemetry::Telemetry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Admin {
    health: Arc<Health>,
    telemetry: Telemetry,
}

pub fn router(health: Arc<Health>, telemetry: Telemetry) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Admin { health, telemetry })
}

async fn readyz(State(admin): State<Admin>) -> impl IntoResponse {
    let (status, body) = admin.health.readiness().response();
    (StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), Json(body))
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], admin.telemetry.render())
}

/// Serves until `stop`.
pub async fn serve(listener: TcpListener, health: Arc<Health>, telemetry: Telemetry, stop: CancellationToken) {
    let served = axum::serve(listener, router(health, telemetry))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "admin listener failed");
    }
}
