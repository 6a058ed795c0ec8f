//! `/api/v1/users`: user management, for admins only. The plan's user limit applies.

use axum::Json;
use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use serde::Deserialize;
use tokio_postgres::error::SqlState;
use utoipa::openapi::ObjectBuilder;
use utoipa::openapi::schema::Schema;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::openapi::{ErrorBody, one_of, string_type};
use super::{ApiFailure, ApiJson, ApiQuery, AuthUser, Page};
use crate::auth::{MIN_PASSWORD_CHARS, hash_password_async};
use crate::context::TenantContext;
use crate::users::{self, User};

const MAX_PAGE: i64 = 200;

pub fn routes() -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// At most this many (1 to 200; default 50).
    limit: Option<i64>,
    /// Skip this many (default 0).
    offset: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    /// Stored lowercased, without surrounding spaces.
    #[schema(schema_with = email)]
    email: String,
    #[serde(default)]
    name: String,
    /// `admin`, `staff`, `viewer`, or a role `GET /api/v1/roles` lists.
    #[schema(schema_with = role_name)]
    role: String,
    #[schema(schema_with = super::auth::new_password)]
    password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    name: Option<String>,
    #[schema(schema_with = nullable_role_name)]
    role: Option<String>,
    #[schema(schema_with = user_status)]
    status: Option<String>,
}

/// What [`create`] takes as an email: `local@domain.tld` without whitespace, once trimmed.
fn email() -> Schema {
    const WS: &str = super::openapi::WHITESPACE;
    ObjectBuilder::new()
        .schema_type(string_type(false))
        .pattern(Some(format!(
            "^[{WS}]*[^@{WS}]+@[^.{WS}][^{WS}]*\\.[^{WS}]*[^.{WS}][{WS}]*$"
        )))
        .build()
        .into()
}

fn role_name() -> Schema {
    super::roles::name_schema(false)
}

fn nullable_role_name() -> Schema {
    super::roles::name_schema(true)
}

fn user_status() -> Schema {
    one_of(&["active", "disabled"], true)
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

/// The tenant's users, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    operation_id = "users_list",
    tag = "users",
    params(PageQuery),
    responses((status = 200, description = "A page of users", body = Page<User>)),
)]
async fn list(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<User>>, ApiFailure> {
    user.require("users:manage")?;
    let limit = page.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let offset = page.offset.unwrap_or(0).max(0);
    let conn = ctx.pool.get().await?;
    let users = users::user_list(&***conn, limit, offset, ctx.has_roles()).await?;
    let total = users::user_total(&***conn).await?;
    Ok(Json(Page {
        items: users,
        limit,
        offset,
        total,
    }))
}

/// Adds a user, within the plan's user limit.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    operation_id = "users_create",
    tag = "users",
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = User),
        (status = 409, description = "`email_taken`, or `plan_limit`: the plan's user limit is reached", body = ErrorBody),
        (status = 422, description = "Not an email, an unknown role, a short password, or the body is of the wrong shape", body = ErrorBody),
    ),
)]
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

/// One user.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    operation_id = "users_show",
    tag = "users",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "The user", body = User)),
)]
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

/// Changes a user's name, role or status; disabling ends their sessions.
#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}",
    operation_id = "users_update",
    tag = "users",
    params(("id" = Uuid, Path, description = "The user's id")),
    request_body = UpdateUser,
    responses(
        (status = 200, description = "Changed", body = User),
        (status = 409, description = "`self_lockout`: one's own role or status, or `plan_limit` when re-activating", body = ErrorBody),
        (status = 422, description = "An unknown role or status, or the body is of the wrong shape", body = ErrorBody),
    ),
)]
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

/// Deletes a user.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}",
    operation_id = "users_delete",
    tag = "users",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "`self_lockout`: one cannot delete oneself", body = ErrorBody),
    ),
)]
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
