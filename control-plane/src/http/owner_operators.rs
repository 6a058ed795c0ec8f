//! `/api/owner/operators`: list, invite, change role or status (owners only).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch};
use axum::{Json, Router};
use owner::operators::{Operator, OperatorRole, operator_list};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::extract::{ApiJson, ClientIp};
use super::owner_auth::CurrentOperator;
use crate::Result;
use crate::http::state::AppState;
use crate::operators::{invite, require_owner, update};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/operators", get(list).post(create))
        .route("/operators/{id}", patch(change))
}

async fn list(State(state): State<AppState>, operator: CurrentOperator) -> Result<Json<Value>> {
    require_owner(&operator.0)?;
    let conn = state.owner.conn().await?;
    Ok(Json(json!({ "operators": operator_list(&**conn).await? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    email: String,
    role: OperatorRole,
}

/// 201 with the operator and a one-time password, shown only in this answer.
async fn create(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<InviteRequest>,
) -> Result<(StatusCode, Json<Value>)> {
    let actor = operator.actor(ip);
    let (invited, password) =
        invite(&state.owner, &operator.0, &actor, &req.email, req.role).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "operator": invited, "one_time_password": password.expose_secret() })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRequest {
    role: Option<OperatorRole>,
    active: Option<bool>,
}

async fn change(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<ChangeRequest>,
) -> Result<Json<Operator>> {
    let actor = operator.actor(ip);
    let updated = update(&state.owner, &operator.0, &actor, id, req.role, req.active).await?;
    Ok(Json(updated))
}
