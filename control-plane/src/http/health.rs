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

/// The owner database answers. Also says whether the change feed listens: without it
/// the replica still serves, with other processes' changes showing within the cache TTL,
/// so it does not make the replica unready.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let ok = match state.owner.conn().await {
        Ok(conn) => conn.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    let change_feed = if *state.change_feed.borrow() {
        "listening"
    } else {
        "reconnecting"
    };
    if ok {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "owner_database": "ok", "change_feed": change_feed })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "status": "not_ready", "owner_database": "unreachable", "change_feed": change_feed }),
            ),
        )
    }
}
