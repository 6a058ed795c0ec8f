//! `/api/owner/tenants/{id}/move` and `/moves`: moving a tenant's database to another
//! server. A move starts in the answer (a refused one changes nothing) and is carried
//! out in the background; `?wait=true` waits (up to [`WAIT_LIMIT`]) for the finished one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use owner::moves::TenantMove;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, ApiQuery, ClientIp};
use super::owner_auth::CurrentOperator;
use super::owner_tenants::{WAIT_LIMIT, WaitQuery, find};
use crate::Result;
use crate::http::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(list))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MoveRequest {
    /// The server to move to.
    to: String,
}

#[derive(Serialize, ToSchema)]
struct MoveAnswer {
    #[serde(rename = "move")]
    record: TenantMove,
}

/// Move the tenant's database to another server.
///
/// Copied while the tenant keeps serving, then switched over during a short write pause.
/// 202 with the move copying; with `?wait=true`, 200 with the move switched (or the
/// error that undid it).
#[utoipa::path(post, path = "/tenants/{id}/move", tag = "servers", params(("id" = String, Path, description = "The tenant's id or slug"), WaitQuery), request_body = MoveRequest, responses(
    (status = 200, description = "Finished (with `?wait=true`)", body = MoveAnswer),
    (status = 202, description = "Started", body = MoveAnswer),
))]
async fn start(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    ApiQuery(query): ApiQuery<WaitQuery>,
    ApiJson(body): ApiJson<MoveRequest>,
) -> Result<(StatusCode, Json<MoveAnswer>)> {
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
        return Ok((StatusCode::OK, Json(MoveAnswer { record: finished? })));
    }
    Ok((StatusCode::ACCEPTED, Json(MoveAnswer { record })))
}

#[derive(Serialize, ToSchema)]
struct MoveList {
    moves: Vec<TenantMove>,
}

/// The tenant's moves, newest first.
#[utoipa::path(get, path = "/tenants/{id}/moves", tag = "servers", params(("id" = String, Path, description = "The tenant's id or slug")), responses((status = 200, body = MoveList)))]
async fn list(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(key): Path<String>,
) -> Result<Json<MoveList>> {
    let tenant = find(&state, &key).await?;
    let conn = state.owner.conn().await?;
    Ok(Json(MoveList {
        moves: owner::moves::move_list_for_tenant(&**conn, tenant.id).await?,
    }))
}
