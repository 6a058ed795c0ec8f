//! Liveness and readiness probes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::http::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The owner database answers.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let ok = match state.owner.conn().await {
        Ok(conn) => conn.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    if ok {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "owner_database": "ok" })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "owner_database": "unreachable" })),
        )
    }
}
