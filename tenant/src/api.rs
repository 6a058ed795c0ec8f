//! The tenant-facing API, served on tenant domains under `/api/v1` from the tenant's own
//! database. Every handler gets the [`TenantContext`] the gateway resolved.

use axum::extract::Extension;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::context::TenantContext;
use crate::pool::{ConnectError, PoolError};

pub fn router() -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .fallback(not_found)
}

/// The tenant's own view of itself, read from its database through the runtime role.
async fn status(
    Extension(ctx): Extension<TenantContext>,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    let conn = ctx.pool.get().await.map_err(ApiFailure::Pool)?;
    let row = conn
        .query_one(
            "SELECT current_database(), current_user, \
             (SELECT count(*) FROM practices), (SELECT count(*) FROM users)",
            &[],
        )
        .await
        .map_err(ApiFailure::Db)?;
    let database: String = row.get(0);
    let role: String = row.get(1);
    let practices: i64 = row.get(2);
    let users: i64 = row.get(3);
    Ok(Json(json!({
        "tenant": { "id": ctx.id, "slug": ctx.slug },
        "database": database,
        "role": role,
        "practices": practices,
        "users": users,
    })))
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Failures of the tenant's own database: the tenant is unavailable, not the service.
pub enum ApiFailure {
    Pool(PoolError),
    Db(tokio_postgres::Error),
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        match self {
            ApiFailure::Pool(PoolError::Timeout(kind)) => {
                tracing::warn!(?kind, "timed out waiting for a tenant connection");
                retry(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "waited too long for a connection of this tenant; retry shortly",
                ))
            }
            ApiFailure::Pool(PoolError::Backend(ConnectError::Budget)) => retry(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the service's tenant connection budget is spent; retry shortly",
            )),
            ApiFailure::Pool(e) => {
                tracing::warn!(error = %e, "tenant database unavailable");
                retry(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "tenant_unavailable",
                    "this tenant's database is unavailable; retry shortly",
                ))
            }
            ApiFailure::Db(e) => {
                tracing::warn!(error = %crate::chain(&e), "tenant database error");
                retry(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "tenant_unavailable",
                    "this tenant's database is unavailable; retry shortly",
                ))
            }
        }
    }
}

pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

fn retry(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("5"),
    );
    response
}
