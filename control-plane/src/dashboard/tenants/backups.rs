//! The buttons of a tenant's Backups panel: back up now, and restore a backup (the
//! operator types the slug). Both run in the background like the owner API's; the page
//! refreshes while a restore runs.

use axum::extract::{Path, State};
use axum::response::Response;
use owner::backups::BackupKind;
use uuid::Uuid;

use super::actions::{ActionForm, finish, request};
use crate::Error;
use crate::backups::BackupRequest;
use crate::dashboard::page::{DashForm, DashResult};
use crate::http::extract::ClientIp;
use crate::http::state::AppState;

/// Starts a manual backup in the background.
pub async fn backup_now(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    form: DashForm<ActionForm>,
) -> DashResult<Response> {
    let req = request(state, ip, &key, form).await?;
    let request = BackupRequest {
        kind: BackupKind::Manual,
        actor: &req.actor,
        migration_run_id: None,
    };
    let result = match req.state.backups.start(&req.tenant, &request).await {
        Ok(started) => {
            let backups = std::sync::Arc::clone(&req.state.backups);
            req.state
                .tasks
                .spawn(async move { backups.finish(started).await });
            Ok("backup_started")
        }
        Err(e) => Err(e),
    };
    finish(req, result).await
}

/// Checks the backup (a tampered one is refused here, with nothing touched), then
/// restores it in the background. The operator types the slug to confirm.
pub async fn restore(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    form: DashForm<ActionForm>,
) -> DashResult<Response> {
    let req = request(state, ip, &key, form).await?;
    let result = async {
        if req.form.confirm_text().trim() != req.tenant.slug {
            return Err(Error::BadRequest(format!(
                "type the tenant's slug ({}) to confirm the restore",
                req.tenant.slug
            )));
        }
        let id = Uuid::parse_str(req.form.backup_id().trim())
            .map_err(|_| Error::Owner(owner::Error::NotFound))?;
        let checked = req.state.backups.check(&req.tenant, id).await?;
        // Started here, so a busy tenant is refused on the page; carried out in the
        // background.
        let started = req
            .state
            .backups
            .start_restore(&req.tenant, &checked, &req.actor)
            .await?;
        let backups = std::sync::Arc::clone(&req.state.backups);
        req.state
            .tasks
            .spawn(async move { backups.finish_restore(started).await });
        Ok("restore_started")
    }
    .await;
    finish(req, result).await
}
