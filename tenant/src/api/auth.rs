//! `/api/v1/auth/*` and `/api/v1/me`: log in, refresh, log out, change password.

use axum::Json;
use axum::extract::{Extension, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ErrorBody;
use super::{ApiFailure, ApiJson};
use crate::audit::{AuditEntry, audit_insert};
use crate::auth::{
    MIN_PASSWORD_CHARS, REFRESH_TTL, hash_password_async, random_token, token_hash,
    verify_dummy_async, verify_password_async,
};
use crate::context::TenantContext;
use crate::sign_in;
use crate::users::{self, User};

pub fn routes() -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(change_password))
        .routes(routes!(me))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    /// Compared without case and surrounding spaces.
    email: String,
    password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordRequest {
    current_password: String,
    #[schema(schema_with = new_password)]
    new_password: String,
}

/// A password the server takes: at least [`MIN_PASSWORD_CHARS`] characters.
pub(super) fn new_password() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(MIN_PASSWORD_CHARS))
        .build()
}

/// A signed-in session: a short-lived access token and the refresh token that renews it.
#[derive(Serialize, ToSchema)]
struct Tokens {
    /// Send as `Authorization: Bearer <access_token>`.
    access_token: String,
    /// When the access token expires (RFC 3339).
    #[schema(required = true, format = DateTime)]
    expires_at: Option<String>,
    /// Seconds until the access token expires.
    expires_in: i64,
    /// Only `POST /api/v1/auth/password` is allowed until the password is changed.
    must_change_password: bool,
    /// For `POST /api/v1/auth/refresh` (once) and `POST /api/v1/auth/logout`.
    refresh_token: String,
    #[schema(value_type = String, pattern = "^Bearer$")]
    token_type: &'static str,
}

#[derive(Serialize, ToSchema)]
struct LoggedOut {
    logged_out: bool,
}

/// Access and refresh tokens for a user, the refresh token stored hashed.
async fn tokens_for(ctx: &TenantContext, user: &User) -> Result<Tokens, ApiFailure> {
    let (access, expires_at) = ctx
        .keys
        .issue(user.id, &user.role, user.must_change_password)
        .map_err(ApiFailure::Internal)?;
    let refresh = random_token();
    let conn = ctx.pool.get().await?;
    users::session_create(&***conn, user.id, &token_hash(&refresh), REFRESH_TTL).await?;
    Ok(Tokens {
        access_token: access,
        // RFC 3339, like every other time the API gives; `expires_in` in seconds.
        expires_at: chrono::DateTime::from_timestamp(expires_at as i64, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        expires_in: (expires_at as i64 - chrono::Utc::now().timestamp()).max(0),
        must_change_password: user.must_change_password,
        refresh_token: refresh,
        token_type: "Bearer",
    })
}

/// Email + password -> tokens.
///
/// Failed sign-ins are throttled per account and per client address (429 with
/// `Retry-After`; see [`crate::sign_in`]), and every attempt is in the tenant's audit log.
/// The answer does not say whether the email exists.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    operation_id = "login",
    tag = "auth",
    security(()),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = Tokens),
        (status = 401, description = "Wrong email or password, or the user is disabled", body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins for the account or from the address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
async fn login(
    Extension(ctx): Extension<TenantContext>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<Tokens>, ApiFailure> {
    let email = req.email.trim().to_lowercase();
    let ip = ctx.client_ip.map(|ip| ip.to_string());
    let (user, attempt) = sign_in::begin(&ctx.pool, &email, ip, ctx.has_roles()).await?;
    let password = req.password;
    let verified = match &user {
        Some(u) => verify_password_async(password, u.password_hash.clone()).await,
        None => verify_dummy_async(password).await.map(|()| false),
    };
    let verified = match verified {
        Ok(verified) => verified,
        Err(busy) => {
            attempt.abandoned(&ctx.pool).await?;
            return Err(busy.into());
        }
    };
    let user = match user {
        Some(u) if verified && u.status == "active" => u,
        _ => {
            attempt.failed(&ctx.pool).await?;
            return Err(ApiFailure::Unauthenticated);
        }
    };
    attempt.succeeded(&ctx.pool, &user).await?;
    Ok(Json(tokens_for(&ctx, &user).await?))
}

/// Trades a refresh token for a new pair; the old one stops working.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    operation_id = "refresh",
    tag = "auth",
    security(()),
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair", body = Tokens),
        (status = 401, description = "Unknown, used or revoked refresh token, or the user is disabled", body = ErrorBody),
    ),
)]
async fn refresh(
    Extension(ctx): Extension<TenantContext>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<Tokens>, ApiFailure> {
    let user = {
        let conn = ctx.pool.get().await?;
        let Some(user_id) =
            users::session_consume(&***conn, &token_hash(&req.refresh_token)).await?
        else {
            return Err(ApiFailure::Unauthenticated);
        };
        match users::user_fetch(&***conn, user_id, ctx.has_roles()).await? {
            Some(u) if u.status == "active" => u,
            _ => return Err(ApiFailure::Unauthenticated),
        }
    };
    Ok(Json(tokens_for(&ctx, &user).await?))
}

/// Revokes a refresh token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    operation_id = "logout",
    tag = "auth",
    security(()),
    request_body = RefreshRequest,
    responses((status = 200, description = "Logged out (also for unknown or revoked tokens)", body = LoggedOut)),
)]
async fn logout(
    Extension(ctx): Extension<TenantContext>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<LoggedOut>, ApiFailure> {
    let conn = ctx.pool.get().await?;
    // Unknown or already revoked tokens log out just the same.
    users::session_consume(&***conn, &token_hash(&req.refresh_token)).await?;
    Ok(Json(LoggedOut { logged_out: true }))
}

/// Changes the caller's password and ends every other session.
///
/// The only thing a one-time password allows. Ends every session of the user, in one
/// transaction: all refresh tokens issued so far are
/// revoked, and access tokens issued before the change are refused from now on (their
/// issue time is before the user's last change). The caller's session
/// is the one kept: it goes on with the new pair in the response. (An access token names
/// no session, so the caller's old refresh token cannot be told from the others; it is
/// revoked with them and replaced by the new one.)
#[utoipa::path(
    post,
    path = "/api/v1/auth/password",
    operation_id = "change_password",
    tag = "auth",
    request_body = PasswordRequest,
    responses(
        (status = 200, description = "Changed; the new pair of the caller's session", body = Tokens),
        (status = 403, description = "The current password is wrong, or the tenant is suspended", body = ErrorBody),
        (status = 422, description = "The new password is too short, or the body is of the wrong shape", body = ErrorBody),
    ),
)]
async fn change_password(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> Result<Json<Tokens>, ApiFailure> {
    if req.new_password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiFailure::Unprocessable(
            "weak_password",
            format!("the new password must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    let current = user.user.password_hash.clone();
    let old = req.current_password;
    if !verify_password_async(old, current).await? {
        return Err(ApiFailure::Forbidden("the current password is wrong"));
    }
    let new = req.new_password;
    let hash = hash_password_async(new)
        .await?
        .map_err(ApiFailure::Internal)?;
    {
        let mut conn = ctx.pool.get().await?;
        let tx = conn.transaction().await?;
        users::user_set_password(&*tx, user.user.id, &hash).await?;
        users::session_revoke_all(&*tx, user.user.id).await?;
        let id = user.user.id.to_string();
        let ip = ctx.client_ip.map(|ip| ip.to_string());
        audit_insert(
            &*tx,
            &AuditEntry {
                actor_id: Some(user.user.id),
                action: "user.password_change",
                target_type: "user",
                target_id: &id,
                details: json!({}),
                ip: ip.as_deref(),
            },
        )
        .await?;
        tx.commit().await?;
    }
    let mut updated = user.user;
    updated.must_change_password = false;
    // New tokens are issued after the change, so they outlive it.
    Ok(Json(tokens_for(&ctx, &updated).await?))
}

/// The user behind the token, with what their role allows.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    operation_id = "me",
    tag = "auth",
    responses((status = 200, description = "The signed-in user", body = User)),
)]
async fn me(user: AuthUser) -> Result<Json<User>, ApiFailure> {
    user.require_password_changed()?;
    Ok(Json(user.user))
}

/// The user behind a valid access token of *this* tenant, still active.
pub struct AuthUser {
    pub user: User,
}

impl AuthUser {
    /// Refuses users whose role does not grant `permission` (and anyone still on a
    /// one-time password).
    pub fn require(&self, permission: &'static str) -> Result<(), ApiFailure> {
        debug_assert!(crate::permissions::is_known(permission), "{permission}");
        self.require_password_changed()?;
        if self.user.permissions.iter().any(|p| p == permission) {
            Ok(())
        } else {
            Err(ApiFailure::MissingPermission(permission))
        }
    }

    /// Everything but changing the password is refused while a one-time password is in use.
    pub fn require_password_changed(&self) -> Result<(), ApiFailure> {
        if self.user.must_change_password {
            return Err(ApiFailure::Forbidden(
                "change your one-time password first (POST /api/v1/auth/password)",
            ));
        }
        Ok(())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiFailure> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiFailure::Unauthenticated)?;
        let ctx = parts
            .extensions
            .get::<TenantContext>()
            .ok_or_else(|| ApiFailure::Internal("no tenant context".into()))?;
        let claims = ctx.keys.verify(token).ok_or(ApiFailure::Unauthenticated)?;
        // One statement, no transaction: it may share a busy connection.
        let conn = ctx.pool.shared().await?;
        match users::user_fetch_pooled(&conn, claims.sub, ctx.has_roles()).await? {
            // Tokens issued before the user last changed (password, role, status) are void.
            Some(user)
                if user.status == "active"
                    && claims.iat >= user.updated_at.timestamp().max(0) as u64 =>
            {
                Ok(Self { user })
            }
            _ => Err(ApiFailure::Unauthenticated),
        }
    }
}
