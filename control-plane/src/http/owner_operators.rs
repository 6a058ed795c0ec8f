//! `/api/owner/operators`: list, invite, change role or status (owners only).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use owner::operators::{Operator, OperatorRole, operator_list};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiJson, ClientIp};
use super::owner_auth::CurrentOperator;
use crate::Result;
use crate::http::state::AppState;
use crate::operators::{invite, require_owner, update};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(change))
}

#[derive(Serialize, ToSchema)]
struct OperatorList {
    operators: Vec<Operator>,
}

/// The operators (owners only).
#[utoipa::path(get, path = "/operators", tag = "operators", responses((status = 200, body = OperatorList)))]
async fn list(
    State(state): State<AppState>,
    operator: CurrentOperator,
) -> Result<Json<OperatorList>> {
    require_owner(&operator.0)?;
    let conn = state.owner.conn().await?;
    Ok(Json(OperatorList {
        operators: operator_list(&**conn).await?,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    #[schema(min_length = 3, max_length = 254, pattern = "^[^@\\s]+@[^@\\s]+$")]
    email: String,
    role: OperatorRole,
}

#[derive(Serialize, ToSchema)]
struct Invited {
    operator: Operator,
    /// Shown only in this answer; the operator must choose their own at first sign-in.
    one_time_password: String,
}

/// Invite an operator (owners only).
///
/// 201 with the operator and a one-time password, shown only in this answer.
#[utoipa::path(post, path = "/operators", tag = "operators", request_body = InviteRequest, responses((status = 201, body = Invited)))]
async fn create(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<InviteRequest>,
) -> Result<(StatusCode, Json<Invited>)> {
    let actor = operator.actor(ip);
    let (invited, password) =
        invite(&state.owner, &operator.0, &actor, &req.email, req.role).await?;
    Ok((
        StatusCode::CREATED,
        Json(Invited {
            operator: invited,
            one_time_password: password.expose_secret().to_string(),
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OperatorChange {
    role: Option<OperatorRole>,
    /// `false` disables the operator and revokes their sessions.
    active: Option<bool>,
}

/// Change an operator's role or status (owners only).
#[utoipa::path(patch, path = "/operators/{id}", tag = "operators", params(("id" = String, Path, description = "The operator's id")), request_body = OperatorChange, responses((status = 200, body = Operator)))]
async fn change(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<OperatorChange>,
) -> Result<Json<Operator>> {
    // A malformed id names nothing, like an unknown one.
    let id = Uuid::parse_str(&id).map_err(|_| owner::Error::NotFound)?;
    let actor = operator.actor(ip);
    let updated = update(&state.owner, &operator.0, &actor, id, req.role, req.active).await?;
    Ok(Json(updated))
}
