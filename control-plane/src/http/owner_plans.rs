//! `/api/owner/plans`: list, create and edit subscription plans.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use owner::plans::{Plan, PlanFields, plan_list};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, ClientIp};
use super::owner_auth::CurrentOperator;
use crate::Result;
use crate::http::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, edit))
}

#[derive(Serialize, ToSchema)]
struct PlanList {
    plans: Vec<Plan>,
}

/// Every plan, retired ones too, cheapest first.
#[utoipa::path(get, path = "/plans", tag = "plans", responses((status = 200, body = PlanList)))]
async fn list(State(state): State<AppState>, _operator: CurrentOperator) -> Result<Json<PlanList>> {
    let conn = state.owner.conn().await?;
    Ok(Json(PlanList {
        plans: plan_list(&**conn).await?,
    }))
}

/// One plan.
#[utoipa::path(get, path = "/plans/{code}", tag = "plans", params(("code" = String, Path)), responses((status = 200, body = Plan)))]
async fn show(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(code): Path<String>,
) -> Result<Json<Plan>> {
    let conn = state.owner.conn().await?;
    Ok(Json(owner::plans::plan_fetch(&**conn, &code).await?))
}

#[derive(Deserialize)]
struct PlanCreate {
    code: String,
    #[serde(flatten)]
    fields: PlanFields,
}

// By hand: derived, the flattened fields become an `allOf` with `PlanFields`, whose
// `additionalProperties: false` would then refuse `code`. This is `PlanFields` with `code`.
impl utoipa::PartialSchema for PlanCreate {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
        let mut fields = match PlanFields::schema() {
            utoipa::openapi::RefOr::T(Schema::Object(fields)) => fields,
            other => return other,
        };
        fields.properties.insert(
            "code".into(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[a-z][a-z0-9-]{0,31}$"))
                .description(Some("Fixed once the plan exists."))
                .into(),
        );
        fields.required.push("code".into());
        fields.description = Some("A new plan: its code and its fields.".into());
        fields.into()
    }
}

impl ToSchema for PlanCreate {}

/// Create a plan; 409 `plan_exists` if the code is taken.
#[utoipa::path(post, path = "/plans", tag = "plans", request_body = PlanCreate, responses((status = 201, body = Plan)))]
async fn create(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<PlanCreate>,
) -> Result<(StatusCode, Json<Plan>)> {
    operator.require_write()?;
    let plan = state
        .billing
        .plan_create(&operator.actor(ip), &req.code, &req.fields)
        .await?;
    Ok((StatusCode::CREATED, Json(plan)))
}

/// Replace a plan's fields (the code stays).
#[utoipa::path(put, path = "/plans/{code}", tag = "plans", params(("code" = String, Path)), request_body = PlanFields, responses((status = 200, body = Plan)))]
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
