//! `/api/owner/plans`: list, create and edit subscription plans.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use owner::plans::{Plan, PlanFields, plan_list};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{ApiJson, ClientIp};
use super::owner_auth::CurrentOperator;
use crate::Result;
use crate::http::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/plans", get(list).post(create))
        .route("/plans/{code}", get(show).put(edit))
}

async fn list(State(state): State<AppState>, _operator: CurrentOperator) -> Result<Json<Value>> {
    let conn = state.owner.conn().await?;
    Ok(Json(json!({ "plans": plan_list(&**conn).await? })))
}

async fn show(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(code): Path<String>,
) -> Result<Json<Plan>> {
    let conn = state.owner.conn().await?;
    Ok(Json(owner::plans::plan_fetch(&**conn, &code).await?))
}

#[derive(Deserialize)]
struct CreateRequest {
    code: String,
    #[serde(flatten)]
    fields: PlanFields,
}

async fn create(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<Plan>)> {
    operator.require_write()?;
    let plan = state
        .billing
        .plan_create(&operator.actor(ip), &req.code, &req.fields)
        .await?;
    Ok((StatusCode::CREATED, Json(plan)))
}

/// Replaces a plan's fields (the code stays).
async fn edit(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(code): Path<String>,
    ApiJson(fields): ApiJson<PlanFields>,
) -> Result<Json<Plan>> {
    operator.require_write()?;
    Ok(Json(
        state
            .billing
            .plan_edit(&operator.actor(ip), &code, &fields)
            .await?,
    ))
}
