//! Bringing a backup back: into the tenant it was taken from, or into a new tenant (a
//! clone with its own id, roles and domain).
//!
//! The backup is checked against its checksums before anything is touched. The tenant
//! is put in maintenance (its requests are answered 503), the dump is loaded into a
//! database of its own and its row counts compared with the manifest, the files are
//! unpacked beside the tree; only then are the database (one transaction) and the tree's
//! folders swapped in. A restore that fails before the swap is undone and the tenant is
//! as it was; one whose process dies is undone or finished by [`Backups::recover_left`],
//! depending on which side of the swap it stopped.

use std::path::{Path, PathBuf};

use owner::backups::{Backup, BackupStatus, Restore, RestorePhase};
use owner::tenants::{Tenant, TenantStatus};
use serde_json::json;
use uuid::Uuid;

use super::manifest::{self, DATABASE_DUMP, FILES_ARCHIVE, Manifest};
use super::{Backups, archive, blocking, count_rows};
use crate::audit::{self, Actor, Target};
use crate::pg::tools::Tool;
use crate::provisioning::{CreateTenant, FaultPoint, TenantNames, names};
use crate::{Error, Result};

/// A backup found and checked against its checksums, ready to restore.
pub struct Checked {
    pub backup: Backup,
    pub manifest: Manifest,
}

/// What the gateway is told while a restore runs.
const MAINTENANCE: &str = "restore";

/// Where one restore puts things: the database it loads and the name the tenant's
/// current one is moved to; the folder it unpacks into and the one the tree's current
/// folders are moved to.
pub(super) struct Places {
    pub names: TenantNames,
    pub loaded_db: String,
    pub aside_db: String,
    pub tree: PathBuf,
    pub staging: PathBuf,
    pub aside_dir: PathBuf,
}

impl Backups {
    pub(super) fn places(&self, tenant: &Tenant, restore_id: Uuid) -> Result<Places> {
        let names = TenantNames {
            database: tenant.db_name.clone(),
            owner_role: tenant.owner_role.clone(),
            runtime_role: tenant.runtime_role.clone(),
        };
        let (loaded_db, aside_db) = names::restore_databases(&names, restore_id);
        let tree = self.storage.tenant(&tenant.slug)?.dir().to_path_buf();
        let (staging, aside_dir) = archive::restore_dirs(&tree, restore_id);
        Ok(Places {
            names,
            loaded_db,
            aside_db,
            tree,
            staging,
            aside_dir,
        })
    }

    /// Checks a succeeded backup's manifest and files against their checksums.
    pub async fn verify(&self, backup: &Backup) -> Result<Manifest> {
        if backup.status != BackupStatus::Succeeded {
            return Err(Error::Conflict(
                "backup_unusable",
                format!(
                    "backup {} is {}; only a succeeded backup can be restored",
                    backup.id, backup.status
                ),
            ));
        }
        let expected = backup
            .manifest_sha256
            .clone()
            .ok_or_else(|| Error::BackupCorrupt("no manifest checksum was recorded".into()))?;
        let dir = PathBuf::from(&backup.location);
        blocking(move || manifest::verify(&dir, &expected)).await
    }

    /// Backup `backup_id` of `tenant`, checked against its checksums: what a restore
    /// starts from. Another tenant's backup is not found.
    pub async fn check(&self, tenant: &Tenant, backup_id: Uuid) -> Result<Checked> {
        let backup = self.fetch_of(tenant.id, backup_id).await?;
        let manifest = self.verify(&backup).await?;
        Ok(Checked { backup, manifest })
    }

    /// Restores a checked backup into the tenant it was taken from, and waits for it.
    pub async fn restore(
        &self,
        tenant: &Tenant,
        checked: &Checked,
        restore_id: Uuid,
        actor: &Actor,
    ) -> Result<Restore> {
        self.restore_into(
            tenant,
            &checked.backup,
            &checked.manifest,
            restore_id,
            actor,
        )
        .await
    }

    /// Restores a checked backup into a new tenant `slug` (the source's plan, its own
    /// id, roles, database, tree and default domain), and waits for it. If the restore
    /// fails, the new tenant is deleted again.
    pub async fn restore_as_new(
        &self,
        checked: &Checked,
        slug: &str,
        restore_id: Uuid,
        actor: &Actor,
    ) -> Result<(Tenant, Restore)> {
        let Checked { backup, manifest } = checked;
        let source = {
            let conn = self.owner.conn().await?;
            owner::tenants::tenant_fetch(&**conn, backup.tenant_id).await?
        };
        let created = self
            .provisioner
            .tenant_create(
                &CreateTenant {
                    slug: slug.to_string(),
                    name: source.name.clone(),
                    plan: Some(source.plan_code.clone()),
                    ..CreateTenant::default()
                },
                actor,
            )
            .await?;
        let outcome = async {
            let tenant = self.provisioner.drive(created.id).await?;
            self.restore_into(&tenant, backup, manifest, restore_id, actor)
                .await
        }
        .await;
        match outcome {
            Ok(restore) => {
                let conn = self.owner.conn().await?;
                let tenant = owner::tenants::tenant_fetch(&**conn, created.id).await?;
                Ok((tenant, restore))
            }
            Err(e @ Error::InjectedFault(_)) => Err(e),
            Err(e) => {
                tracing::warn!(slug, error = %e, "clone failed; deleting the new tenant");
                if let Err(del) = self.provisioner.tenant_delete(created.id, actor).await {
                    tracing::warn!(slug, error = %del, "could not delete the failed clone");
                } else if let Err(del) = self.provisioner.drive(created.id).await {
                    tracing::warn!(slug, error = %del, "the failed clone's deletion is left to the reconciler");
                }
                Err(e)
            }
        }
    }

    async fn restore_into(
        &self,
        tenant: &Tenant,
        backup: &Backup,
        manifest: &Manifest,
        restore_id: Uuid,
        actor: &Actor,
    ) -> Result<Restore> {
        if !matches!(
            tenant.status,
            TenantStatus::Active | TenantStatus::Suspended
        ) {
            return Err(Error::WrongState {
                id: tenant.id,
                status: tenant.status.as_str(),
            });
        }
        let lock = self.lock_tenant_or_busy(tenant.id).await?;
        {
            let mut conn = self.owner.conn().await?;
            let tx = crate::services::owner_db::begin(&mut conn).await?;
            owner::backups::restore_begin(&tx, restore_id, backup.id, tenant.id, &actor.label)
                .await?;
            owner::tenants::tenant_set_maintenance(&tx, tenant.id, Some(MAINTENANCE)).await?;
            crate::services::owner_db::commit(tx).await?;
        }
        self.events.changed(tenant.id).await;
        let places = self.places(tenant, restore_id)?;
        let loaded = self.load(tenant, backup, manifest, &places).await;
        let swapped = match loaded {
            Ok(()) => {
                self.cluster
                    .swap_in_restored(
                        tenant.id,
                        &places.names,
                        &places.loaded_db,
                        &places.aside_db,
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        let result = match swapped {
            Ok(()) => {
                self.faults.check(FaultPoint::RestoreDatabaseSwapped)?;
                self.finish_swapped(
                    tenant,
                    restore_id,
                    manifest.schema_version,
                    actor,
                    backup.id,
                )
                .await
            }
            Err(e @ Error::InjectedFault(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(tenant = %tenant.slug, restore = %restore_id, error = %e, "restore failed; undoing it");
                self.undo(tenant, restore_id, &e.to_string()).await?;
                Err(e)
            }
        };
        drop(lock);
        result?;
        let conn = self.owner.conn().await?;
        Ok(owner::backups::restore_fetch(&**conn, restore_id).await?)
    }

    /// Loads the dump into its own database and checks its rows; unpacks the files.
    async fn load(
        &self,
        tenant: &Tenant,
        backup: &Backup,
        manifest: &Manifest,
        places: &Places,
    ) -> Result<()> {
        let dir = Path::new(&backup.location);
        self.cluster
            .create_restore_database(tenant.id, &places.names, &places.loaded_db)
            .await?;
        Tool::new(
            "pg_restore",
            self.cluster.admin_endpoint(),
            &places.loaded_db,
        )
        .arg(format!("--dbname={}", places.loaded_db))
        .arg("--no-owner")
        .arg("--no-acl")
        .arg(format!("--role={}", places.names.owner_role))
        .arg("--exit-on-error")
        .arg("--single-transaction")
        .arg(dir.join(DATABASE_DUMP))
        .run()
        .await?;
        self.cluster
            .grant_restored(&places.names, &places.loaded_db)
            .await?;
        let counts = {
            let session = self.cluster.admin_session(&places.loaded_db).await?;
            count_rows(&session).await?
        };
        if counts != manifest.tables {
            let differs = manifest
                .tables
                .iter()
                .find(|(t, n)| counts.get(*t) != Some(n))
                .map(|(t, n)| format!("{t}: {n} in the manifest, {:?} restored", counts.get(t)))
                .unwrap_or_else(|| "the restored database has tables the backup had not".into());
            return Err(Error::BackupCorrupt(format!(
                "the restored rows do not match the manifest ({differs})"
            )));
        }
        let (archive_path, staging) = (dir.join(FILES_ARCHIVE), places.staging.clone());
        blocking(move || archive::unpack(&archive_path, &staging)).await?;
        self.faults.check(FaultPoint::RestoreLoaded)?;
        Ok(())
    }

    /// The second half of a restore whose database is swapped in: the files swapped in,
    /// what was set aside removed, the tenant served again. Safe to repeat.
    pub(super) async fn finish_swapped(
        &self,
        tenant: &Tenant,
        restore_id: Uuid,
        schema_version: Option<i32>,
        actor: &Actor,
        backup_id: Uuid,
    ) -> Result<()> {
        {
            let conn = self.owner.conn().await?;
            owner::backups::restore_set_phase(&**conn, restore_id, RestorePhase::Swapped).await?;
        }
        let places = self.places(tenant, restore_id)?;
        {
            let (tree, staging, aside) = (
                places.tree.clone(),
                places.staging.clone(),
                places.aside_dir.clone(),
            );
            blocking(move || {
                if staging.exists() {
                    archive::swap_in(&tree, &staging, &aside)?;
                }
                archive::remove_dir(&staging)?;
                archive::remove_dir(&aside)
            })
            .await?;
        }
        self.cluster
            .drop_tenant_database(tenant.id, &places.names, &places.aside_db)
            .await?;
        {
            let mut conn = self.owner.conn().await?;
            let tx = crate::services::owner_db::begin(&mut conn).await?;
            if let Some(version) = schema_version {
                owner::tenants::tenant_set_schema_version(&tx, tenant.id, version).await?;
            }
            owner::tenants::tenant_set_maintenance(&tx, tenant.id, None).await?;
            owner::backups::restore_finish(&tx, restore_id, None).await?;
            audit::record(
                &tx,
                actor,
                "tenant.restore",
                Target("tenant", &tenant.id.to_string()),
                json!({ "restore_id": restore_id, "backup_id": backup_id }),
            )
            .await?;
            crate::services::owner_db::commit(tx).await?;
        }
        self.events.changed(tenant.id).await;
        tracing::info!(tenant = %tenant.slug, restore = %restore_id, backup = %backup_id, "restore finished");
        Ok(())
    }

    /// Undoes a restore that had not swapped anything in: the loaded database and the
    /// unpacked files removed, the tenant served again as it was. Safe to repeat.
    pub(super) async fn undo(&self, tenant: &Tenant, restore_id: Uuid, error: &str) -> Result<()> {
        let places = self.places(tenant, restore_id)?;
        self.cluster
            .drop_tenant_database(tenant.id, &places.names, &places.loaded_db)
            .await?;
        let staging = places.staging.clone();
        blocking(move || archive::remove_dir(&staging)).await?;
        {
            let mut conn = self.owner.conn().await?;
            let tx = crate::services::owner_db::begin(&mut conn).await?;
            owner::tenants::tenant_set_maintenance(&tx, tenant.id, None).await?;
            owner::backups::restore_finish(&tx, restore_id, Some(error)).await?;
            crate::services::owner_db::commit(tx).await?;
        }
        self.events.changed(tenant.id).await;
        Ok(())
    }
}
