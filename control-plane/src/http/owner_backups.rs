//! `/api/owner/.../backups`, `restore`, `restores` and `export`: a tenant's backups,
//! bringing one back (into the tenant or into a new one), and its data handed over.
//!
//! Backups and restores run in the background and answer 202 with their record at once;
//! `?wait=true` waits (up to [`WAIT_LIMIT`]) and answers with the finished record, which
//! is what scripts want. A restore's backup is checked against its checksums before the
//! answer, so a tampered backup is refused (422) with nothing touched. An export is
//! streamed as it is read from disk, never held whole in memory.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use owner::backups::{BackupKind, Restore};
use owner::tenants::{Tenant, TenantStatus, tenant_find};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::extract::{ApiJson, ApiQuery, ClientIp};
use super::owner_auth::CurrentOperator;
use super::owner_tenants::WAIT_LIMIT;
use crate::backups::BackupRequest;
use crate::http::state::AppState;
use crate::views::{BackupInfo, TenantInfo};
use crate::{Error, Result};

const MAX_PAGE: i64 = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/backups", get(list_all))
        .route("/backups/restore-test", get(restore_test))
        .route("/tenants/{id}/backups", get(list).post(create))
        .route("/tenants/{id}/backups/{backup}", get(show))
        .route("/tenants/{id}/restore", post(restore))
        .route("/tenants/{id}/restores/{restore}", get(restore_show))
        .route("/tenants/{id}/export", get(export))
}

async fn find(state: &AppState, key: &str) -> Result<Tenant> {
    let conn = state.owner.conn().await?;
    Ok(tenant_find(&**conn, key).await?)
}

fn parse_id(text: &str) -> Result<Uuid> {
    // A malformed id names nothing, like an unknown one.
    Uuid::parse_str(text).map_err(|_| owner::Error::NotFound.into())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    #[serde(default)]
    wait: bool,
}

async fn list_all(
    State(state): State<AppState>,
    _operator: CurrentOperator,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<BackupInfo>>> {
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let backups = state.backups.list(None, limit).await?;
    Ok(Json(backups.iter().map(BackupInfo::from).collect()))
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreRequest {
    backup_id: String,
    /// Restore into a new tenant with this slug instead.
    into: Option<String>,
}

async fn restore(
    State(state): State<AppState>,
    operator: CurrentOperator,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    ApiQuery(query): ApiQuery<WaitQuery>,
    ApiJson(body): ApiJson<RestoreRequest>,
) -> Result<(StatusCode, Json<Value>)> {
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
    let answer = |tenant: &Tenant, restore: &Restore| json!({ "restore": restore, "tenant": TenantInfo::from(tenant) });
    if query.wait
        && let Ok(Ok(result)) = tokio::time::timeout(WAIT_LIMIT, handle).await
    {
        let (tenant, restore) = result?;
        return Ok((StatusCode::OK, Json(answer(&tenant, &restore))));
    }
    Ok((StatusCode::ACCEPTED, Json(answer(&target, &running))))
}

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

async fn restore_test(
    State(state): State<AppState>,
    _operator: CurrentOperator,
) -> Result<Json<Value>> {
    let latest = state.backups.latest_restore_test().await?;
    Ok(Json(json!({ "latest": latest })))
}

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
