//! `/api/v1/practices/{id}/members`: which users work at which practice
//! (`user_practices`).

use axum::Json;
use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use utoipa::ToSchema;
use utoipa::openapi::schema::Schema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::openapi::{ErrorBody, one_of};
use super::{ApiFailure, ApiJson, AuthUser};
use crate::context::TenantContext;

const MEMBER_ROLES: [&str; 3] = ["member", "manager", "vet"];

pub fn routes() -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(upsert, remove))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Membership {
    /// `member` when left out.
    #[serde(default = "default_role")]
    #[schema(schema_with = member_role)]
    role: String,
}

fn member_role() -> Schema {
    one_of(&MEMBER_ROLES, false)
}

#[derive(Serialize, ToSchema)]
struct Members {
    members: Vec<Member>,
}

/// A user who works at the practice, as `jsonb_build_object` gives it.
#[derive(Deserialize, Serialize, ToSchema)]
struct Member {
    email: String,
    name: String,
    /// `member`, `manager` or `vet`.
    role: String,
    /// When the user joined the practice.
    #[schema(format = DateTime)]
    since: String,
    user_id: Uuid,
}

fn default_role() -> String {
    "member".into()
}

fn ids(practice: &str, user: Option<&str>) -> Result<(Uuid, Option<Uuid>), ApiFailure> {
    let p = Uuid::parse_str(practice).map_err(|_| ApiFailure::NotFound)?;
    let u = user
        .map(|u| Uuid::parse_str(u).map_err(|_| ApiFailure::NotFound))
        .transpose()?;
    Ok((p, u))
}

/// The practice's members, by email.
#[utoipa::path(
    get,
    path = "/api/v1/practices/{id}/members",
    operation_id = "members_list",
    tag = "members",
    params(("id" = Uuid, Path, description = "The practice's id")),
    responses((status = 200, description = "The members", body = Members)),
)]
async fn list(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Members>, ApiFailure> {
    user.require("members:read")?;
    let (practice, _) = ids(&id, None)?;
    let conn = ctx.pool.get().await?;
    if conn
        .query_opt("SELECT 1 FROM practices WHERE id = $1", &[&practice])
        .await?
        .is_none()
    {
        return Err(ApiFailure::NotFound);
    }
    let rows = conn
        .query(
            "SELECT jsonb_build_object('user_id', u.id, 'email', u.email, 'name', u.name, 'role', m.role, 'since', m.created_at) \
             FROM user_practices m JOIN users u ON u.id = m.user_id WHERE m.practice_id = $1 ORDER BY u.email",
            &[&practice],
        )
        .await?;
    let members = rows
        .iter()
        .map(|r| serde_json::from_value(r.get(0)).map_err(|e| ApiFailure::Internal(e.to_string())))
        .collect::<Result<_, _>>()?;
    Ok(Json(Members { members }))
}

/// Adds the user to the practice, or changes their role there.
#[utoipa::path(
    put,
    path = "/api/v1/practices/{id}/members/{user_id}",
    operation_id = "members_put",
    tag = "members",
    params(
        ("id" = Uuid, Path, description = "The practice's id"),
        ("user_id" = Uuid, Path, description = "The user's id"),
    ),
    request_body = Membership,
    responses(
        (status = 204, description = "A member, with that role"),
        (status = 404, description = "No such practice or user", body = ErrorBody),
        (status = 422, description = "An unknown role, or the body is of the wrong shape", body = ErrorBody),
    ),
)]
async fn upsert(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path((id, user_id)): Path<(String, String)>,
    ApiJson(req): ApiJson<Membership>,
) -> Result<StatusCode, ApiFailure> {
    user.require("members:manage")?;
    let (practice, member) = ids(&id, Some(&user_id))?;
    if !MEMBER_ROLES.contains(&req.role.as_str()) {
        return Err(ApiFailure::Unprocessable(
            "invalid_role",
            format!("role must be one of {MEMBER_ROLES:?}"),
        ));
    }
    let conn = ctx.pool.get().await?;
    let result = conn
        .execute(
            "INSERT INTO user_practices (user_id, practice_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, practice_id) DO UPDATE SET role = EXCLUDED.role",
            &[&member, &practice, &req.role],
        )
        .await;
    match result {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        // An unknown practice or user is simply not here.
        Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => Err(ApiFailure::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// Removes the user from the practice.
#[utoipa::path(
    delete,
    path = "/api/v1/practices/{id}/members/{user_id}",
    operation_id = "members_delete",
    tag = "members",
    params(
        ("id" = Uuid, Path, description = "The practice's id"),
        ("user_id" = Uuid, Path, description = "The user's id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such practice, user or membership", body = ErrorBody),
    ),
)]
async fn remove(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiFailure> {
    user.require("members:manage")?;
    let (practice, member) = ids(&id, Some(&user_id))?;
    let conn = ctx.pool.get().await?;
    let n = conn
        .execute(
            "DELETE FROM user_practices WHERE practice_id = $1 AND user_id = $2",
            &[&practice, &member],
        )
        .await?;
    if n == 1 {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiFailure::NotFound)
    }
}
