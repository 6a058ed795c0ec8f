//! `/api/v1/roles`: the tenant's roles, each a set of permissions (see
//! `crate::permissions`). The built-in ones (admin, staff, viewer) are read-only; admins
//! define others. A role's permissions apply from its users' next request; every change
//! is in the tenant's audit log.

use axum::Json;
use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_postgres::error::SqlState;
use utoipa::ToSchema;
use utoipa::openapi::ObjectBuilder;
use utoipa::openapi::schema::Schema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::{ErrorBody, array_of, string_type, trimmed_text};
use super::{ApiFailure, ApiJson, AuthUser};
use crate::audit::{AuditEntry, audit_insert};
use crate::context::TenantContext;
use crate::permissions;

pub fn routes() -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
}

/// The longest role description, in characters.
const MAX_DESCRIPTION: usize = 200;

#[derive(Debug, Serialize, ToSchema)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateRole {
    #[schema(schema_with = role_name)]
    name: String,
    /// Up to 200 characters once trimmed, without control characters.
    #[serde(default)]
    #[schema(schema_with = description)]
    description: String,
    /// Duplicates count once.
    #[schema(schema_with = permission_list)]
    permissions: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateRole {
    #[schema(schema_with = nullable_description)]
    description: Option<String>,
    #[schema(schema_with = nullable_permission_list)]
    permissions: Option<Vec<String>>,
}

/// The roles, and every permission a role may grant.
#[derive(Serialize, ToSchema)]
struct Roles {
    #[schema(value_type = Vec<String>)]
    permissions: &'static [&'static str],
    roles: Vec<Role>,
}

/// A role name as [`valid_name`] takes it.
pub fn name_schema(nullable: bool) -> Schema {
    ObjectBuilder::new()
        .schema_type(string_type(nullable))
        .pattern(Some("^[a-z][a-z0-9_-]{0,39}$"))
        .build()
        .into()
}

fn role_name() -> Schema {
    name_schema(false)
}

fn description() -> Schema {
    trimmed_text(0, MAX_DESCRIPTION, false)
}

fn nullable_description() -> Schema {
    trimmed_text(0, MAX_DESCRIPTION, true)
}

fn permission_list() -> Schema {
    array_of(permissions::ALL, false)
}

fn nullable_permission_list() -> Schema {
    array_of(permissions::ALL, true)
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
    if description.chars().count() > MAX_DESCRIPTION || description.chars().any(char::is_control) {
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
#[utoipa::path(
    get,
    path = "/api/v1/roles",
    operation_id = "roles_list",
    tag = "roles",
    responses(
        (status = 200, description = "The roles, built-in first", body = Roles),
        (status = 409, description = "`schema_behind`: the tenant's database has only the built-in roles until its pending migrations run", body = ErrorBody),
    ),
)]
async fn list(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
) -> Result<Json<Roles>, ApiFailure> {
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
    Ok(Json(Roles {
        permissions: permissions::ALL,
        roles,
    }))
}

/// One role.
#[utoipa::path(
    get,
    path = "/api/v1/roles/{name}",
    operation_id = "roles_show",
    tag = "roles",
    params(("name" = String, Path, description = "The role's name")),
    responses(
        (status = 200, description = "The role", body = Role),
        (status = 409, description = "`schema_behind`", body = ErrorBody),
        (status = 422, description = "The name holds a NUL character", body = ErrorBody),
    ),
)]
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

/// Defines a role.
#[utoipa::path(
    post,
    path = "/api/v1/roles",
    operation_id = "roles_create",
    tag = "roles",
    request_body = CreateRole,
    responses(
        (status = 201, description = "Created", body = Role),
        (status = 409, description = "`role_exists`, or `schema_behind`", body = ErrorBody),
        (status = 422, description = "A bad name or description, an unknown permission, or the body is of the wrong shape", body = ErrorBody),
    ),
)]
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

/// Changes a role's description or permissions (not a built-in role's).
#[utoipa::path(
    patch,
    path = "/api/v1/roles/{name}",
    operation_id = "roles_update",
    tag = "roles",
    params(("name" = String, Path, description = "The role's name")),
    request_body = UpdateRole,
    responses(
        (status = 200, description = "Changed", body = Role),
        (status = 409, description = "`built_in_role`, or `schema_behind`", body = ErrorBody),
        (status = 422, description = "A bad description, an unknown permission, a NUL in the name, or the body is of the wrong shape", body = ErrorBody),
    ),
)]
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

/// Deletes a role no user has (not a built-in role).
#[utoipa::path(
    delete,
    path = "/api/v1/roles/{name}",
    operation_id = "roles_delete",
    tag = "roles",
    params(("name" = String, Path, description = "The role's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "`built_in_role`, `role_in_use`, or `schema_behind`", body = ErrorBody),
        (status = 422, description = "The name holds a NUL character", body = ErrorBody),
    ),
)]
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
