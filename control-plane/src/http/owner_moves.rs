//! `/api/owner/tenants/{id}/move` and `/moves`: moving a tenant's database to another
//! server. A move starts in the answer (a refused one changes nothing) and is carried
//! out in the background; `?wait=true` waits (up to [`WAIT_LIMIT`]) for the finished one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{ApiJson, ApiQuery, ClientIp};
use super::owner_auth::CurrentOperator;
use super::owner_tenants::{WAIT_LIMIT, WaitQuery, find};
use crate::Result;
use crate::http::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tenants/{id}/move", post(start))
        .route("/tenants/{id}/moves", get(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveRequest {
    /// The server to move to.
    to: String,
}

/// 202 with the move copying; with `?wait=true`, 200 with the move switched (or the
/// error that undid it).
async fn start(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    ApiQuery(query): ApiQuery<WaitQuery>,
    ApiJson(body): ApiJson<MoveRequest>,
) -> Result<(StatusCode, Json<Value>)> {
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    let started = state
        .backups
        .start_move(&tenant, &body.to, &operator.actor(ip))
        .await?;
    let record = started.record.clone();
    let backups = std::sync::Arc::clone(&state.backups);
    let handle = state
        .tasks
        .spawn(async move { backups.finish_move(started).await });
    if query.wait
        && let Ok(joined) = tokio::time::timeout(WAIT_LIMIT, handle).await
    {
        let finished = joined.map_err(|e| crate::Error::Internal(format!("move task: {e}")))?;
        return Ok((StatusCode::OK, Json(json!({ "move": finished? }))));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "move": record }))))
}

/// The tenant's moves, newest first.
async fn list(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(key): Path<String>,
) -> Result<Json<Value>> {
    let tenant = find(&state, &key).await?;
    let conn = state.owner.conn().await?;
    let moves = owner::moves::move_list_for_tenant(&**conn, tenant.id).await?;
    Ok(Json(json!({ "moves": moves })))
}
