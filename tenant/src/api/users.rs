//! `/api/v1/users`: user management, for admins only. The plan's user limit applies.

use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::{ApiFailure, ApiJson, ApiQuery, AuthUser};
use crate::auth::{MIN_PASSWORD_CHARS, hash_password_async};
use crate::context::TenantContext;
use crate::users::{self, User};

const MAX_PAGE: i64 = 200;

pub fn routes() -> Router {
    Router::new()
        .route("/api/v1/users", get(list).post(create))
        .route("/api/v1/users/{id}", get(show).patch(update).delete(remove))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    email: String,
    #[serde(default)]
    name: String,
    role: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    name: Option<String>,
    role: Option<String>,
    status: Option<String>,
}

fn parse_id(raw: &str) -> Result<Uuid, ApiFailure> {
    Uuid::parse_str(raw).map_err(|_| ApiFailure::NotFound)
}

/// The shape of a role name; whether the role exists, the database says (see
/// [`unknown_role`]).
fn check_role(role: &str) -> Result<(), ApiFailure> {
    if super::roles::valid_name(role) {
        Ok(())
    } else {
        Err(unknown_role(role))
    }
}

fn unknown_role(role: &str) -> ApiFailure {
    ApiFailure::Unprocessable(
        "invalid_role",
        format!("there is no role {role:?} (admin, staff, viewer, or one GET /api/v1/roles lists)"),
    )
}

async fn list(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiFailure> {
    user.require("users:manage")?;
    let limit = page.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let offset = page.offset.unwrap_or(0).max(0);
    let conn = ctx.pool.get().await?;
    let users = users::user_list(&***conn, limit, offset, ctx.has_roles()).await?;
    let total = users::user_total(&***conn).await?;
    Ok(Json(
        json!({ "items": users, "total": total, "limit": limit, "offset": offset }),
    ))
}

async fn create(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<User>), ApiFailure> {
    user.require("users:manage")?;
    let email = req.email.trim().to_lowercase();
    let valid_email = matches!(email.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.'))
        && !email.chars().any(char::is_whitespace);
    if !valid_email {
        return Err(ApiFailure::Unprocessable(
            "invalid_email",
            "not an email address".into(),
        ));
    }
    check_role(&req.role)?;
    if req.password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiFailure::Unprocessable(
            "weak_password",
            format!("the password must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    // Hashed before the user-limit lock is taken: the lock is held only for the count
    // and the insert.
    let password = req.password;
    let hash = hash_password_async(password)
        .await?
        .map_err(ApiFailure::Internal)?;
    let mut conn = ctx.pool.get().await?;
    let tx = conn.transaction().await?;
    // An unknown role is the client's mistake whatever the plan's limit says.
    if !users::role_exists(&*tx, &req.role, ctx.has_roles()).await? {
        return Err(unknown_role(&req.role));
    }
    if let Some(max) = ctx.limits.max_users {
        // The count and the insert are one step: without the lock, parallel requests
        // all count the same users and all insert.
        users::user_limit_lock(&*tx).await?;
        if users::user_count(&*tx).await? >= i64::from(max) {
            return Err(plan_limit(max));
        }
    }
    let created = match users::user_insert(
        &*tx,
        &email,
        req.name.trim(),
        &req.role,
        &hash,
        ctx.has_roles(),
    )
    .await
    {
        Ok(created) => created,
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Err(ApiFailure::Conflict(
                "email_taken",
                "a user with this email exists".into(),
            ));
        }
        // Before tenant migration V2 a CHECK allowed only the built-in roles.
        Err(e)
            if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
                || e.code() == Some(&SqlState::CHECK_VIOLATION) =>
        {
            return Err(unknown_role(&req.role));
        }
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    ctx.directory
        .user_changed(ctx.id, &created.email, created.status == "active")
        .await;
    Ok((StatusCode::CREATED, Json(created)))
}

fn plan_limit(max: i32) -> ApiFailure {
    ApiFailure::Conflict(
        "plan_limit",
        format!("the plan allows {max} active users; upgrade the plan or disable a user"),
    )
}

async fn show(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<User>, ApiFailure> {
    user.require("users:manage")?;
    let id = parse_id(&id)?;
    let conn = ctx.pool.get().await?;
    users::user_fetch(&***conn, id, ctx.has_roles())
        .await?
        .map(Json)
        .ok_or(ApiFailure::NotFound)
}

async fn update(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateUser>,
) -> Result<Json<User>, ApiFailure> {
    user.require("users:manage")?;
    let id = parse_id(&id)?;
    if let Some(role) = &req.role {
        check_role(role)?;
    }
    if let Some(status) = &req.status
        && !["active", "disabled"].contains(&status.as_str())
    {
        return Err(ApiFailure::Unprocessable(
            "invalid_status",
            "status must be active or disabled".into(),
        ));
    }
    if id == user.user.id
        && (req.role.as_deref().is_some_and(|r| r != user.user.role)
            || req.status.as_deref() == Some("disabled"))
    {
        return Err(ApiFailure::Conflict(
            "self_lockout",
            "you cannot demote or disable yourself".into(),
        ));
    }
    let mut conn = ctx.pool.get().await?;
    let tx = conn.transaction().await?;
    if let (Some(max), Some("active")) = (ctx.limits.max_users, req.status.as_deref()) {
        // Re-activating a disabled user adds one to what the plan limits, so it is
        // checked like a creation, under the same lock.
        users::user_limit_lock(&*tx).await?;
        let before = users::user_fetch(&*tx, id, ctx.has_roles())
            .await?
            .ok_or(ApiFailure::NotFound)?;
        if before.status != "active" && users::user_count(&*tx).await? >= i64::from(max) {
            return Err(plan_limit(max));
        }
    }
    let updated = users::user_update(
        &*tx,
        id,
        req.name.as_deref().map(str::trim),
        req.role.as_deref(),
        req.status.as_deref(),
        ctx.has_roles(),
    )
    .await
    .map_err(|e| match (e.code(), &req.role) {
        (Some(&SqlState::FOREIGN_KEY_VIOLATION | &SqlState::CHECK_VIOLATION), Some(role)) => {
            unknown_role(role)
        }
        _ => e.into(),
    })?
    .ok_or(ApiFailure::NotFound)?;
    if updated.status == "disabled" {
        users::session_revoke_all(&*tx, id).await?;
    }
    tx.commit().await?;
    if req.status.is_some() {
        ctx.directory
            .user_changed(ctx.id, &updated.email, updated.status == "active")
            .await;
    }
    Ok(Json(updated))
}

async fn remove(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiFailure> {
    user.require("users:manage")?;
    let id = parse_id(&id)?;
    if id == user.user.id {
        return Err(ApiFailure::Conflict(
            "self_lockout",
            "you cannot delete yourself".into(),
        ));
    }
    let conn = ctx.pool.get().await?;
    match users::user_delete(&***conn, id).await? {
        Some(email) => {
            ctx.directory.user_changed(ctx.id, &email, false).await;
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiFailure::NotFound),
    }
}
