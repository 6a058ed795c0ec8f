//! `/api/owner/.../backups`, `restore`, `restores` and `export`: a tenant's backups,
//! bringing one back (into the tenant or into a new one), and its data handed over.
//!
//! Backups and restores run in the background and answer 202 with their record at once;
//! `?wait=true` waits (up to [`WAIT_LIMIT`]) and answers with the finished record, which
//! is what scripts want. A restore's backup is checked against its checksums before the
//! answer, so a tampered backup is refused (422) with nothing touched. An export is
//! streamed as it is read from disk, never held whole in memory.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use owner::backups::{BackupKind, Restore, RestoreTest};
use owner::tenants::{Tenant, TenantStatus, tenant_find};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiJson, ApiQuery, ClientIp};
use super::owner_auth::CurrentOperator;
use super::owner_tenants::{WAIT_LIMIT, WaitQuery};
use crate::backups::BackupRequest;
use crate::http::state::AppState;
use crate::views::{BackupInfo, TenantInfo};
use crate::{Error, Result};

const MAX_PAGE: i64 = 500;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_all))
        .routes(routes!(restore_test))
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(restore))
        .routes(routes!(restore_show))
        .routes(routes!(export))
}

async fn find(state: &AppState, key: &str) -> Result<Tenant> {
    let conn = state.owner.conn().await?;
    Ok(tenant_find(&**conn, key).await?)
}

fn parse_id(text: &str) -> Result<Uuid> {
    // A malformed id names nothing, like an unknown one.
    Uuid::parse_str(text).map_err(|_| owner::Error::NotFound.into())
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// At most this many, newest first (1 to 500, default 100).
    limit: Option<i64>,
}

/// The fleet's backups, newest first.
#[utoipa::path(get, path = "/backups", tag = "backups", params(ListQuery), responses((status = 200, body = Vec<BackupInfo>)))]
async fn list_all(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<BackupInfo>>> {
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let backups = state.backups.list(None, limit).await?;
    Ok(Json(backups.iter().map(BackupInfo::from).collect()))
}

/// A tenant's backups, newest first.
#[utoipa::path(get, path = "/tenants/{id}/backups", tag = "backups", params(("id" = String, Path, description = "The tenant's id or slug"), ListQuery), responses((status = 200, body = Vec<BackupInfo>)))]
async fn list(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path(key): Path<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<BackupInfo>>> {
    let tenant = find(&state, &key).await?;
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let backups = state.backups.list(Some(tenant.id), limit).await?;
    Ok(Json(backups.iter().map(BackupInfo::from).collect()))
}

/// One backup of a tenant.
#[utoipa::path(get, path = "/tenants/{id}/backups/{backup}", tag = "backups", params(("id" = String, Path, description = "The tenant's id or slug"), ("backup" = String, Path, description = "The backup's id")), responses((status = 200, body = BackupInfo)))]
async fn show(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path((key, backup)): Path<(String, String)>,
) -> Result<Json<BackupInfo>> {
    let tenant = find(&state, &key).await?;
    let backup = state
        .backups
        .fetch_of(tenant.id, parse_id(&backup)?)
        .await?;
    Ok(Json(BackupInfo::from(&backup)))
}

/// Back the tenant up now: its database dump and its files, with a checksummed manifest.
///
/// 202 with the running backup; with `?wait=true`, 201 with the finished one.
#[utoipa::path(post, path = "/tenants/{id}/backups", tag = "backups", params(("id" = String, Path, description = "The tenant's id or slug"), WaitQuery), responses(
    (status = 201, description = "Finished (with `?wait=true`)", body = BackupInfo),
    (status = 202, description = "Started", body = BackupInfo),
))]
async fn create(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    ApiQuery(query): ApiQuery<WaitQuery>,
) -> Result<(StatusCode, Json<BackupInfo>)> {
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    let actor = operator.actor(ip);
    let started = state
        .backups
        .start(
            &tenant,
            &BackupRequest {
                kind: BackupKind::Manual,
                actor: &actor,
                migration_run_id: None,
            },
        )
        .await?;
    let running = started.backup.clone();
    let backups = std::sync::Arc::clone(&state.backups);
    let handle = state
        .tasks
        .spawn(async move { backups.finish(started).await });
    if query.wait
        && let Ok(Ok(result)) = tokio::time::timeout(WAIT_LIMIT, handle).await
    {
        return Ok((StatusCode::CREATED, Json(BackupInfo::from(&result?))));
    }
    Ok((StatusCode::ACCEPTED, Json(BackupInfo::from(&running))))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RestoreRequest {
    #[schema(format = Uuid)]
    backup_id: String,
    /// Restore into a new tenant with this slug instead.
    #[schema(pattern = "^[a-z][a-z0-9-]{1,39}$")]
    into: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct RestoreAnswer {
    restore: Restore,
    /// The tenant restored into (a new one with `into`).
    tenant: TenantInfo,
}

/// Restore a backup into the tenant, or into a new tenant (`into`).
///
/// The backup is checked against its checksums first: a tampered one is refused (422
/// `backup_corrupt`) with nothing touched. 202 with the running restore; with
/// `?wait=true`, 200 with the finished one.
#[utoipa::path(post, path = "/tenants/{id}/restore", tag = "backups", params(("id" = String, Path, description = "The tenant's id or slug"), WaitQuery), request_body = RestoreRequest, responses(
    (status = 200, description = "Finished (with `?wait=true`)", body = RestoreAnswer),
    (status = 202, description = "Started", body = RestoreAnswer),
))]
async fn restore(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    ApiQuery(query): ApiQuery<WaitQuery>,
    ApiJson(body): ApiJson<RestoreRequest>,
) -> Result<(StatusCode, Json<RestoreAnswer>)> {
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    if let Some(slug) = &body.into {
        owner::TenantSlug::parse(slug)?;
    }
    let backup_id = parse_id(&body.backup_id)?;
    let checked = state.backups.check(&tenant, backup_id).await?;
    let actor = operator.actor(ip);
    // Started here (a busy tenant or a taken slug is refused in this answer), carried
    // out in the background.
    let started = match &body.into {
        None => {
            state
                .backups
                .start_restore(&tenant, &checked, &actor)
                .await?
        }
        Some(slug) => {
            state
                .backups
                .start_restore_as_new(&checked, slug, &actor)
                .await?
        }
    };
    let target = started.tenant().clone();
    let running = started.restore.clone();
    let backups = std::sync::Arc::clone(&state.backups);
    let handle = state
        .tasks
        .spawn(async move { backups.finish_restore(started).await });
    let answer = |tenant: &Tenant, restore: Restore| RestoreAnswer {
        restore,
        tenant: TenantInfo::from(tenant),
    };
    if query.wait
        && let Ok(Ok(result)) = tokio::time::timeout(WAIT_LIMIT, handle).await
    {
        let (tenant, restore) = result?;
        return Ok((StatusCode::OK, Json(answer(&tenant, restore))));
    }
    Ok((StatusCode::ACCEPTED, Json(answer(&target, running))))
}

/// One restore of a tenant.
#[utoipa::path(get, path = "/tenants/{id}/restores/{restore}", tag = "backups", params(("id" = String, Path, description = "The tenant's id or slug"), ("restore" = String, Path, description = "The restore's id")), responses((status = 200, body = Restore)))]
async fn restore_show(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    Path((key, restore)): Path<(String, String)>,
) -> Result<Json<Restore>> {
    let tenant = find(&state, &key).await?;
    let conn = state.owner.conn().await?;
    let restore = owner::backups::restore_fetch(&**conn, parse_id(&restore)?).await?;
    if restore.tenant_id != tenant.id {
        return Err(owner::Error::NotFound.into());
    }
    Ok(Json(restore))
}

#[derive(Serialize, ToSchema)]
struct RestoreTestAnswer {
    /// Null before the first test.
    latest: Option<RestoreTest>,
}

/// The latest scheduled restore test: a recent backup restored into a scratch database
/// and checked.
#[utoipa::path(get, path = "/backups/restore-test", tag = "backups", responses((status = 200, body = RestoreTestAnswer)))]
async fn restore_test(
    State(state): State<AppState>,
    _operator: CurrentOperator,
) -> Result<Json<RestoreTestAnswer>> {
    let latest = state.backups.latest_restore_test().await?;
    Ok(Json(RestoreTestAnswer { latest }))
}

/// The tenant's data as a tar archive (database dump and files), streamed.
///
/// Owners and admins only: it is a full copy of a customer's data.
#[utoipa::path(get, path = "/tenants/{id}/export", tag = "backups", params(("id" = String, Path, description = "The tenant's id or slug")), responses(
    (status = 200, description = "The archive", content_type = "application/x-tar"),
    (status = 409, description = "The tenant is not active or suspended", body = tenant::api::openapi::ErrorBody),
))]
async fn export(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
) -> Result<Response> {
    // A full copy of a customer's data: not for read-only operators.
    operator.require_write()?;
    let tenant = find(&state, &key).await?;
    if !matches!(
        tenant.status,
        TenantStatus::Active | TenantStatus::Suspended
    ) {
        return Err(Error::WrongState {
            id: tenant.id,
            status: tenant.status.as_str(),
        });
    }
    let disposition = format!(
        "attachment; filename=\"{}\"",
        crate::backups::Export::file_name_for(&tenant.slug)
    );
    // The answer starts at once and the export is made behind it, so a large tenant is
    // not cut off by the request timeout. A failure after the start aborts the transfer,
    // which the client sees as an error, never as a complete file.
    let (mut sender, receiver) = futures::channel::mpsc::channel(4);
    let backups = std::sync::Arc::clone(&state.backups);
    let actor = operator.actor(ip);
    tokio::spawn(async move {
        use futures::{SinkExt, StreamExt};
        let export = match backups.export(&tenant, &actor).await {
            Ok(export) => export,
            Err(e) => {
                tracing::warn!(tenant = %tenant.slug, error = %e, "export failed");
                let _ = sender.send(Err(std::io::Error::other(e.to_string()))).await;
                return;
            }
        };
        match tokio::fs::File::open(&export.path).await {
            Ok(file) => {
                let mut chunks = tokio_util::io::ReaderStream::new(file);
                while let Some(chunk) = chunks.next().await {
                    if sender.send(chunk).await.is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                let _ = sender.send(Err(e)).await;
            }
        }
        // The export file goes with `export`, sent or not.
        drop(export);
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(receiver),
    )
        .into_response())
}
