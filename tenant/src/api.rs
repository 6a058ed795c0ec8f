//! The tenant-facing API, served on tenant domains under `/api/v1` from the tenant's own
//! database. Every handler gets the [`TenantContext`] the gateway resolved.

use axum::extract::Extension;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::context::TenantContext;
use crate::pool::{ConnectError, PoolError};
use envelope::error_response as envelope;

mod auth;
pub mod envelope;
pub mod extract;
mod files;
mod integrations;
mod members;
pub mod openapi;
mod records;
mod roles;
mod settings;
mod users;

pub use auth::AuthUser;
pub use extract::{ApiJson, ApiQuery};

/// The tenant API's routes.
pub fn router() -> Router {
    let (router, _) = api().split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The OpenAPI 3.1 document of [`router`]'s routes (served at [`openapi::DOCUMENT_PATH`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut document = api().into_openapi();
    openapi::standard_errors(&mut document);
    document
}

/// The routes and their document, from one construction.
fn api() -> OpenApiRouter {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(status))
        .routes(routes!(openapi::document))
        .merge(auth::routes())
        .merge(users::routes())
        .merge(records::routes())
        .merge(settings::routes())
        .merge(
            files::routes().route_layer(axum::middleware::from_fn_with_state(
                "files",
                settings::requires,
            )),
        )
        .merge(members::routes())
        .merge(roles::routes())
        .merge(
            integrations::routes().route_layer(axum::middleware::from_fn_with_state(
                "integrations",
                settings::requires,
            )),
        )
}

const STATUS_QUERY: &str = "SELECT current_database(), current_user, \
     (SELECT count(*) FROM practices), (SELECT count(*) FROM users)";

/// Whether the tenant is up; with `status:details`, how it is served.
#[derive(Serialize, ToSchema)]
struct StatusBody {
    /// The tenant's database (with `status:details`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    database: Option<String>,
    /// How many practices (with `status:details`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    practices: Option<i64>,
    /// The database role serving it (with `status:details`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    role: Option<String>,
    status: Up,
    tenant: StatusTenant,
    /// How many users (with `status:details`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    users: Option<i64>,
}

/// What the status says when it answers at all.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Up {
    Ok,
}

#[derive(Serialize, ToSchema)]
struct StatusTenant {
    /// With `status:details`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    id: Option<Uuid>,
    slug: String,
}

/// The tenant as its own database sees it.
///
/// Anyone may ask whether the tenant is up (the same query runs either way, so the answer
/// proves the database answers); only its admins see which database and role serve it and
/// the counts, which say too much to strangers.
#[utoipa::path(
    get,
    path = "/api/v1/status",
    operation_id = "status",
    tag = "meta",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Up; the details only with a token granting `status:details`", body = StatusBody),
        (status = 401, description = "A token was sent and is not valid", body = openapi::ErrorBody),
        (status = 403, description = "The token's role does not grant `status:details`, or the tenant is suspended", body = openapi::ErrorBody),
    ),
)]
async fn status(
    Extension(ctx): Extension<TenantContext>,
    headers: axum::http::HeaderMap,
    auth: Result<AuthUser, ApiFailure>,
) -> Result<Json<StatusBody>, ApiFailure> {
    let detailed = match auth {
        Ok(user) => {
            user.require("status:details")?;
            true
        }
        Err(ApiFailure::Unauthenticated)
            if !headers.contains_key(axum::http::header::AUTHORIZATION) =>
        {
            false
        }
        Err(e) => return Err(e),
    };
    // One statement, no transaction: it may share a busy connection (see `shared`).
    let conn = ctx.pool.shared().await.map_err(ApiFailure::Pool)?;
    let row = crate::prepared::with_prepared(&conn, STATUS_QUERY, |statement| {
        let conn = &conn;
        async move { conn.query_one(&statement, &[]).await }
    })
    .await
    .map_err(ApiFailure::Db)?;
    if !detailed {
        return Ok(Json(StatusBody {
            database: None,
            practices: None,
            role: None,
            status: Up::Ok,
            tenant: StatusTenant {
                id: None,
                slug: ctx.slug,
            },
            users: None,
        }));
    }
    Ok(Json(StatusBody {
        database: Some(row.get(0)),
        practices: Some(row.get(2)),
        role: Some(row.get(1)),
        status: Up::Ok,
        tenant: StatusTenant {
            id: Some(ctx.id),
            slug: ctx.slug,
        },
        users: Some(row.get(3)),
    }))
}

/// Lists answer a page of items, with how many there are in all.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub limit: i64,
    pub offset: i64,
    pub total: i64,
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// A route that exists, asked with a method it does not take (axum adds `Allow`).
async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Put on an answer given because the tenant's connection was lost before or while the
/// request ran (a server restart, `pg_terminate_backend`): the gateway repeats a request
/// that is safe to repeat (GET, HEAD) once, on a fresh connection, instead of failing it.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLost;

/// Whether `e` says the connection itself failed (closed, reset, or ended by the server),
/// not the statement.
pub fn connection_lost(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(code) => [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code),
        None => e.as_db_error().is_none(),
    }
}

/// Why a tenant request failed. Failures of the tenant's own database make the tenant
/// unavailable (503), not the service.
pub enum ApiFailure {
    Pool(PoolError),
    Db(tokio_postgres::Error),
    Unauthenticated,
    Forbidden(&'static str),
    /// The user's role does not grant this permission.
    MissingPermission(&'static str),
    BadRequest(&'static str, String),
    Unprocessable(&'static str, String),
    Conflict(&'static str, String),
    NotFound,
    /// Too many password checks at once.
    Busy,
    /// Too many failed sign-ins for the account or from the address; retry after this
    /// many seconds.
    TooManyAttempts(u64),
    /// An upload over the per-file limit.
    TooLarge(String),
    /// A JSON body over the service's body limit.
    BodyTooLarge,
    /// An upload over the plan's storage quota.
    QuotaExceeded,
    Internal(String),
}

impl From<tokio_postgres::Error> for ApiFailure {
    fn from(e: tokio_postgres::Error) -> Self {
        ApiFailure::Db(e)
    }
}

impl From<crate::auth::Busy> for ApiFailure {
    fn from(_: crate::auth::Busy) -> Self {
        ApiFailure::Busy
    }
}

impl From<crate::ledger::QuotaError> for ApiFailure {
    fn from(e: crate::ledger::QuotaError) -> Self {
        use crate::ledger::QuotaError;
        match e {
            QuotaError::Exceeded => ApiFailure::QuotaExceeded,
            QuotaError::Pool(e) => ApiFailure::Pool(e),
            QuotaError::Db(e) => ApiFailure::Db(e),
        }
    }
}

impl From<crate::sign_in::Error> for ApiFailure {
    fn from(e: crate::sign_in::Error) -> Self {
        use crate::sign_in::Error;
        match e {
            Error::Throttled(secs) => ApiFailure::TooManyAttempts(secs),
            Error::Pool(e) => ApiFailure::Pool(e),
            Error::Db(e) => ApiFailure::Db(e),
        }
    }
}

impl From<PoolError> for ApiFailure {
    fn from(e: PoolError) -> Self {
        ApiFailure::Pool(e)
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        match self {
            ApiFailure::Pool(PoolError::Timeout(kind)) => {
                tracing::warn!(?kind, "timed out waiting for a tenant connection");
                metrics::counter!("tenant_pool_timeouts_total").increment(1);
                envelope(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "waited too long for a connection of this tenant; retry shortly",
                    None,
                )
            }
            ApiFailure::Pool(PoolError::Backend(ConnectError::Budget)) => {
                metrics::counter!("tenant_connection_budget_exhausted_total").increment(1);
                envelope(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the service's tenant connection budget is spent; retry shortly",
                    None,
                )
            }
            ApiFailure::Pool(e) => {
                tracing::warn!(error = %e, "tenant database unavailable");
                envelope(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "tenant_unavailable",
                    "this tenant's database is unavailable; retry shortly",
                    None,
                )
            }
            // Text PostgreSQL cannot store (a NUL character) that came in some way the
            // extractors do not see: the client's mistake, not ours.
            ApiFailure::Db(e) if crate::text::is_refused_text(&e) => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_text",
                crate::text::NUL_MESSAGE,
            ),
            ApiFailure::Db(e) if connection_lost(&e) => {
                tracing::warn!(error = %crate::chain(&e), "tenant connection lost");
                let mut response = envelope(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "tenant_unavailable",
                    "this tenant's database is unavailable; retry shortly",
                    None,
                );
                response.extensions_mut().insert(ConnectionLost);
                response
            }
            ApiFailure::Db(e) => {
                tracing::error!(error = %crate::chain(&e), "tenant query failed");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
            ApiFailure::Unauthenticated => envelope(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "a valid bearer token for this tenant is required",
                None,
            ),
            ApiFailure::Forbidden(why) => error(StatusCode::FORBIDDEN, "forbidden", why),
            ApiFailure::MissingPermission(permission) => error(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!("your role does not grant {permission}"),
            ),
            ApiFailure::BadRequest(code, why) if code == "unsupported_media_type" => {
                error(StatusCode::UNSUPPORTED_MEDIA_TYPE, code, &why)
            }
            ApiFailure::BadRequest(code, why) => error(StatusCode::BAD_REQUEST, code, &why),
            ApiFailure::Unprocessable(code, why) => {
                error(StatusCode::UNPROCESSABLE_ENTITY, code, &why)
            }
            ApiFailure::Conflict(code, why) => error(StatusCode::CONFLICT, code, &why),
            ApiFailure::NotFound => error(StatusCode::NOT_FOUND, "not_found", "no such resource"),
            ApiFailure::TooLarge(why) => {
                error(StatusCode::PAYLOAD_TOO_LARGE, "file_too_large", &why)
            }
            ApiFailure::BodyTooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            ),
            ApiFailure::QuotaExceeded => error(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_quota",
                "this upload would pass the plan's storage quota; delete files or upgrade the plan",
            ),
            ApiFailure::TooManyAttempts(secs) => envelope(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                &format!("too many failed sign-ins; retry in {secs} s"),
                Some(secs),
            ),
            ApiFailure::Busy => envelope(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many sign-ins at once; retry shortly",
                None,
            ),
            ApiFailure::Internal(why) => {
                tracing::error!(error = %why, "tenant request failed");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}

/// An error answer that needs no `Retry-After` of its own (a 503 gets the default).
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    envelope(status, code, message, None)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn auth_routes_exist() {
        let response = super::router()
            .oneshot(
                Request::post("/api/v1/auth/login")
                    .header("content-type", "application/json")
                    .body(Body::from("{}"))
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_ne!(response.status(), StatusCode::NOT_FOUND);
    }
}
