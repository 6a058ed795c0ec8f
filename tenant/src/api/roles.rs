//! `/api/v1/roles`: the tenant's roles, each a set of permissions (see
//! `crate::permissions`). The built-in ones (admin, staff, viewer) are read-only; admins
//! define others. A role's permissions apply from its users' next request; every change
//! is in the tenant's audit log.

use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_postgres::error::SqlState;

use super::{ApiFailure, ApiJson, AuthUser};
use crate::audit::{AuditEntry, audit_insert};
use crate::context::TenantContext;
use crate::permissions;

pub fn routes() -> Router {
    Router::new()
        .route("/api/v1/roles", get(list).post(create))
        .route(
            "/api/v1/roles/{name}",
            get(show).patch(update).delete(remove),
        )
}

#[derive(Debug, Serialize)]
struct Role {
    name: String,
    description: String,
    permissions: Vec<String>,
    built_in: bool,
}

const COLUMNS: &str = "name, description, permissions, built_in";

fn role_of(row: &tokio_postgres::Row) -> Role {
    Role {
        name: row.get(0),
        description: row.get(1),
        permissions: row.get(2),
        built_in: row.get(3),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRole {
    name: String,
    #[serde(default)]
    description: String,
    permissions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRole {
    description: Option<String>,
    permissions: Option<Vec<String>>,
}

/// A role name: what `users.role` holds.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn checked(permissions: Vec<String>) -> Result<Vec<String>, ApiFailure> {
    if let Some(unknown) = permissions.iter().find(|p| !permissions::is_known(p)) {
        return Err(ApiFailure::Unprocessable(
            "unknown_permission",
            format!(
                "{unknown:?} is not a permission; GET /api/v1/roles lists them under \"permissions\""
            ),
        ));
    }
    let mut permissions = permissions;
    permissions.sort_unstable();
    permissions.dedup();
    Ok(permissions)
}

fn checked_description(description: &str) -> Result<String, ApiFailure> {
    let description = description.trim();
    if description.chars().count() > 200 || description.chars().any(char::is_control) {
        return Err(ApiFailure::Unprocessable(
            "invalid_value",
            "description: at most 200 characters, without control characters".into(),
        ));
    }
    Ok(description.to_string())
}

/// A database a fleet migration has not brought to the `roles` table yet (tenant
/// migration V2) has only the built-in roles.
fn migrated(ctx: &TenantContext) -> Result<(), ApiFailure> {
    if ctx.has_roles() {
        Ok(())
    } else {
        Err(ApiFailure::Conflict(
            "schema_behind",
            "this tenant's database has only the built-in roles until its operators run the pending migrations".into(),
        ))
    }
}

fn built_in(name: &str) -> ApiFailure {
    ApiFailure::Conflict(
        "built_in_role",
        format!("{name} is a built-in role and cannot be changed; define a role of your own"),
    )
}

/// The roles and every permission there is: what a user manager assigns.
async fn list(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    user.require("users:manage")?;
    migrated(&ctx)?;
    let conn = ctx.pool.get().await?;
    let roles: Vec<Role> = conn
        .query(
            &format!("SELECT {COLUMNS} FROM roles ORDER BY built_in DESC, name"),
            &[],
        )
        .await?
        .iter()
        .map(role_of)
        .collect();
    Ok(Json(
        json!({ "roles": roles, "permissions": permissions::ALL }),
    ))
}

async fn show(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Role>, ApiFailure> {
    user.require("users:manage")?;
    migrated(&ctx)?;
    let conn = ctx.pool.get().await?;
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM roles WHERE name = $1"),
        &[&name],
    )
    .await?
    .map(|r| Json(role_of(&r)))
    .ok_or(ApiFailure::NotFound)
}

async fn create(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    ApiJson(req): ApiJson<CreateRole>,
) -> Result<(StatusCode, Json<Role>), ApiFailure> {
    user.require("roles:manage")?;
    migrated(&ctx)?;
    if !valid_name(&req.name) {
        return Err(ApiFailure::Unprocessable(
            "invalid_role",
            "a role name is a lowercase letter, then up to 39 of a-z, 0-9, _ and -".into(),
        ));
    }
    let permissions = checked(req.permissions)?;
    let description = checked_description(&req.description)?;
    let mut conn = ctx.pool.get().await?;
    let tx = conn.transaction().await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO roles (name, description, permissions) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
            ),
            &[&req.name, &description, &permissions],
        )
        .await
        .map_err(|e| match e.code() {
            Some(&SqlState::UNIQUE_VIOLATION) => ApiFailure::Conflict(
                "role_exists",
                format!("a role named {:?} exists", req.name),
            ),
            _ => e.into(),
        })?;
    let role = role_of(&row);
    audited(
        &*tx,
        &user,
        &ctx,
        "role.create",
        &role.name,
        json!({ "role": role }),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(role)))
}

async fn update(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UpdateRole>,
) -> Result<Json<Role>, ApiFailure> {
    user.require("roles:manage")?;
    migrated(&ctx)?;
    let permissions = req.permissions.map(checked).transpose()?;
    let description = req
        .description
        .as_deref()
        .map(checked_description)
        .transpose()?;
    let mut conn = ctx.pool.get().await?;
    let tx = conn.transaction().await?;
    let before = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM roles WHERE name = $1 FOR UPDATE"),
            &[&name],
        )
        .await?
        .map(|r| role_of(&r))
        .ok_or(ApiFailure::NotFound)?;
    if before.built_in {
        return Err(built_in(&name));
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE roles SET description = coalesce($2, description), \
                 permissions = coalesce($3, permissions), updated_at = now() \
                 WHERE name = $1 RETURNING {COLUMNS}"
            ),
            &[&name, &description, &permissions],
        )
        .await?;
    let role = role_of(&row);
    audited(
        &*tx,
        &user,
        &ctx,
        "role.update",
        &name,
        json!({ "from": before, "to": role }),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(role))
}

async fn remove(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiFailure> {
    user.require("roles:manage")?;
    migrated(&ctx)?;
    if permissions::BUILT_IN.contains(&name.as_str()) {
        return Err(built_in(&name));
    }
    let mut conn = ctx.pool.get().await?;
    let tx = conn.transaction().await?;
    let removed = tx
        .execute(
            "DELETE FROM roles WHERE name = $1 AND NOT built_in",
            &[&name],
        )
        .await
        .map_err(|e| match e.code() {
            Some(&SqlState::FOREIGN_KEY_VIOLATION) => ApiFailure::Conflict(
                "role_in_use",
                format!("users still have the role {name:?}; give them another role first"),
            ),
            _ => e.into(),
        })?;
    if removed == 0 {
        return Err(ApiFailure::NotFound);
    }
    audited(&*tx, &user, &ctx, "role.delete", &name, json!({})).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn audited(
    client: &impl tokio_postgres::GenericClient,
    user: &AuthUser,
    ctx: &TenantContext,
    action: &str,
    role: &str,
    details: serde_json::Value,
) -> Result<(), ApiFailure> {
    let ip = ctx.client_ip.map(|ip| ip.to_string());
    audit_insert(
        client,
        &AuditEntry {
            actor_id: Some(user.user.id),
            action,
            target_type: "role",
            target_id: role,
            details,
            ip: ip.as_deref(),
        },
    )
    .await?;
    Ok(())
}
