//! What a process that stopped mid-way left behind: a backup still marked running (its
//! partial files are removed and it is marked failed) and a restore still marked running
//! (undone if it had not swapped the database in, finished if it had). A row is only
//! taken over when its tenant's backup lock is free, that is when no living process
//! works on it.

use owner::backups::RestorePhase;
use serde::Serialize;

use super::{Backups, archive, blocking};
use crate::Result;
use crate::audit::Actor;

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Recovered {
    /// Backups marked failed, their files removed.
    pub backups_failed: usize,
    /// Restores undone (they had not swapped anything in).
    pub restores_undone: usize,
    /// Restores finished (their database was swapped in).
    pub restores_finished: usize,
}

const LOST: &str = "interrupted: the process running it stopped";

impl Backups {
    /// One pass over the backups and restores marked running.
    pub async fn recover_left(&self) -> Result<Recovered> {
        let mut report = Recovered::default();
        let (backups, restores) = {
            let conn = self.owner.conn().await?;
            (
                owner::backups::backup_list_running(&**conn).await?,
                owner::backups::restore_list_running(&**conn).await?,
            )
        };
        for backup in backups {
            let Some(lock) = self.lock_tenant(backup.tenant_id).await? else {
                continue;
            };
            let conn = self.owner.conn().await?;
            // Read again under the lock: it may have finished in between.
            let now = owner::backups::backup_fetch(&**conn, backup.id).await?;
            if now.status != owner::backups::BackupStatus::Running {
                lock.release().await;
                continue;
            }
            let dir = std::path::PathBuf::from(&now.location);
            blocking(move || archive::remove_dir(&dir)).await?;
            owner::backups::backup_fail(&**conn, now.id, LOST).await?;
            tracing::warn!(backup = %now.id, tenant = %now.tenant_slug, "a backup left by a stopped process was marked failed and its files removed");
            report.backups_failed += 1;
            lock.release().await;
        }
        for restore in restores {
            let Some(lock) = self.lock_tenant(restore.tenant_id).await? else {
                continue;
            };
            let (now, tenant, backup) = {
                let conn = self.owner.conn().await?;
                (
                    owner::backups::restore_fetch(&**conn, restore.id).await?,
                    owner::tenants::tenant_fetch(&**conn, restore.tenant_id).await?,
                    owner::backups::backup_fetch(&**conn, restore.backup_id).await?,
                )
            };
            if now.status != owner::backups::RestoreStatus::Running {
                lock.release().await;
                continue;
            }
            let places = self.places(&tenant, now.id)?;
            let swapped = now.phase == RestorePhase::Swapped
                || self
                    .servers
                    .of(&tenant)
                    .await?
                    .database_exists(&places.aside_db)
                    .await?;
            if swapped {
                self.finish_swapped(
                    &tenant,
                    now.id,
                    backup.schema_version,
                    &Actor::system("system:reconciler"),
                    backup.id,
                )
                .await?;
                tracing::warn!(restore = %now.id, tenant = %tenant.slug, "a restore left after its swap by a stopped process was finished");
                report.restores_finished += 1;
            } else {
                self.undo(&tenant, now.id, LOST).await?;
                if now.into_new {
                    self.discard_clone(tenant.id, &Actor::system("system:reconciler"))
                        .await;
                }
                tracing::warn!(restore = %now.id, tenant = %tenant.slug, "a restore left before its swap by a stopped process was undone");
                report.restores_undone += 1;
            }
            lock.release().await;
        }
        Ok(report)
    }
}
