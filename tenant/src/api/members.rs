//! `/api/v1/practices/{id}/members`: which users work at which practice
//! (`user_practices`).

use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::{ApiFailure, ApiJson, AuthUser};
use crate::context::TenantContext;

const MEMBER_ROLES: [&str; 3] = ["member", "manager", "vet"];

pub fn routes() -> Router {
    Router::new()
        .route("/api/v1/practices/{id}/members", get(list))
        .route(
            "/api/v1/practices/{id}/members/{user_id}",
            put(upsert).delete(remove),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Membership {
    #[serde(default = "default_role")]
    role: String,
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

async fn list(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiFailure> {
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
    let members: Vec<Value> = rows.iter().map(|r| r.get(0)).collect();
    Ok(Json(json!({ "members": members })))
}

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
