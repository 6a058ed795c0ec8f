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
use owner::maintenance::Holder;
use owner::tenants::{Tenant, TenantStatus};
use serde_json::json;
use uuid::Uuid;

use super::manifest::{self, DATABASE_DUMP, FILES_ARCHIVE, Manifest};
use super::{Backups, TenantLock, archive, blocking, count_rows};
use crate::audit::{self, Actor, Target};
use crate::pg::tools::Tool;
use crate::provisioning::{CreateTenant, FaultPoint, TenantNames, maintenance, names};
use crate::{Error, Result};

/// A backup found and checked against its checksums, ready to restore.
#[derive(Clone)]
pub struct Checked {
    pub backup: Backup,
    pub manifest: Manifest,
}

/// A restore recorded and holding its tenant's backup lock, to be carried out by
/// [`Backups::finish_restore`].
pub struct RestoreStarted {
    tenant: Tenant,
    checked: Checked,
    pub restore: Restore,
    actor: Actor,
    lock: TenantLock,
}

impl RestoreStarted {
    /// The tenant restored into (for a clone, the new one).
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }
}

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

    /// Restores a checked backup into the tenant it was taken from, and waits for it:
    /// [`Backups::start_restore`], then [`Backups::finish_restore`].
    pub async fn restore(
        &self,
        tenant: &Tenant,
        checked: &Checked,
        actor: &Actor,
    ) -> Result<Restore> {
        let started = self.start_restore(tenant, checked, actor).await?;
        Ok(self.finish_restore(started).await?.1)
    }

    /// Restores a checked backup into a new tenant `slug`, and waits for it.
    pub async fn restore_as_new(
        &self,
        checked: &Checked,
        slug: &str,
        actor: &Actor,
    ) -> Result<(Tenant, Restore)> {
        let started = self.start_restore_as_new(checked, slug, actor).await?;
        self.finish_restore(started).await
    }

    /// Starts a restore into the tenant the backup was taken from: its backup lock taken
    /// (refused while a backup or restore of it runs), the restore recorded, the tenant
    /// put in maintenance.
    pub async fn start_restore(
        &self,
        tenant: &Tenant,
        checked: &Checked,
        actor: &Actor,
    ) -> Result<RestoreStarted> {
        if !matches!(
            tenant.status,
            TenantStatus::Active | TenantStatus::Suspended
        ) {
            return Err(Error::WrongState {
                id: tenant.id,
                status: tenant.status.as_str(),
            });
        }
        self.begin(tenant.clone(), checked, actor, false).await
    }

    /// Starts a restore into a new tenant `slug` (the source's plan; its own id, roles,
    /// database, tree and default domain): the tenant recorded in maintenance, so it is
    /// never served before it holds the backup's data, then as [`Backups::start_restore`].
    pub async fn start_restore_as_new(
        &self,
        checked: &Checked,
        slug: &str,
        actor: &Actor,
    ) -> Result<RestoreStarted> {
        let source = {
            let conn = self.owner.conn().await?;
            owner::tenants::tenant_fetch(&**conn, checked.backup.tenant_id).await?
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
        let started = self.begin(created.clone(), checked, actor, true).await;
        if started.is_err() {
            self.discard_clone(created.id, actor).await;
        }
        started
    }

    async fn begin(
        &self,
        tenant: Tenant,
        checked: &Checked,
        actor: &Actor,
        into_new: bool,
    ) -> Result<RestoreStarted> {
        let lock = self.lock_tenant_or_busy(tenant.id).await?;
        let restore = {
            let mut conn = self.owner.conn().await?;
            let tx = crate::services::owner_db::begin(&mut conn).await?;
            let restore = owner::backups::restore_begin(
                &tx,
                &owner::backups::NewRestore {
                    id: Uuid::new_v4(),
                    backup_id: checked.backup.id,
                    tenant_id: tenant.id,
                    into_new,
                    requested_by: &actor.label,
                },
            )
            .await?;
            maintenance::take_for(&tx, &tenant, Holder::Restore, false).await?;
            crate::services::owner_db::commit(tx).await?;
            restore
        };
        self.events.changed(tenant.id).await;
        Ok(RestoreStarted {
            tenant,
            checked: checked.clone(),
            restore,
            actor: actor.clone(),
            lock,
        })
    }

    /// Carries out a started restore (for a new tenant, after provisioning it): loads the
    /// backup aside, swaps it in, and serves the tenant again. One that fails is undone
    /// (a new tenant is deleted again); one cut short by a crash is left to
    /// [`Backups::recover_left`].
    pub async fn finish_restore(&self, started: RestoreStarted) -> Result<(Tenant, Restore)> {
        let RestoreStarted {
            tenant,
            checked,
            restore,
            actor,
            lock,
        } = started;
        let tenant_id = tenant.id;
        let result = async {
            let tenant = if restore.into_new {
                match self.provisioner.drive(tenant.id).await {
                    Ok(tenant) => tenant,
                    Err(e @ Error::InjectedFault(_)) => return Err(e),
                    Err(e) => {
                        self.undo(&tenant, restore.id, &e.to_string()).await?;
                        return Err(e);
                    }
                }
            } else {
                tenant
            };
            self.carry_out(&tenant, &checked, restore.id, &actor)
                .await?;
            Ok::<_, Error>(tenant)
        }
        .await;
        let tenant = match result {
            Ok(tenant) => tenant,
            // A crash, as the fault switch plays it: the lock goes with its session.
            Err(e @ Error::InjectedFault(_)) => return Err(e),
            Err(e) => {
                // Undone (before the swap), a new tenant goes again; a restore that failed
                // after its swap stays running for the recovery pass to finish.
                let undone = {
                    let conn = self.owner.conn().await?;
                    owner::backups::restore_fetch(&**conn, restore.id)
                        .await?
                        .status
                        == owner::backups::RestoreStatus::Failed
                };
                if restore.into_new && undone {
                    self.discard_clone(tenant_id, &actor).await;
                }
                lock.release().await;
                return Err(e);
            }
        };
        lock.release().await;
        let conn = self.owner.conn().await?;
        let tenant = owner::tenants::tenant_fetch(&**conn, tenant.id).await?;
        let restore = owner::backups::restore_fetch(&**conn, restore.id).await?;
        Ok((tenant, restore))
    }

    /// Deletes a new tenant whose restore failed (the reconciler finishes it if this
    /// drive does not).
    pub(super) async fn discard_clone(&self, id: Uuid, actor: &Actor) {
        match self.provisioner.tenant_delete(id, actor).await {
            Err(e) => tracing::warn!(tenant = %id, error = %e, "could not delete the failed clone"),
            Ok(_) => {
                if let Err(e) = self.provisioner.drive(id).await {
                    tracing::warn!(tenant = %id, error = %e, "the failed clone's deletion is left to the reconciler");
                }
            }
        }
    }

    /// Load, swap, finish; or undo.
    async fn carry_out(
        &self,
        tenant: &Tenant,
        checked: &Checked,
        restore_id: Uuid,
        actor: &Actor,
    ) -> Result<()> {
        let Checked { backup, manifest } = checked;
        let places = self.places(tenant, restore_id)?;
        let cluster = self.servers.of(tenant).await?;
        let loaded = self.load(tenant, backup, manifest, &places).await;
        let swapped = match loaded {
            Ok(()) => {
                cluster
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
        match swapped {
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
            Err(e @ Error::InjectedFault(_)) => Err(e),
            // The swap's commit may have reached the server though its answer did not.
            Err(e)
                if cluster
                    .database_exists(&places.aside_db)
                    .await
                    .unwrap_or(false) =>
            {
                tracing::warn!(tenant = %tenant.slug, restore = %restore_id, error = %e, "the swap went through despite an error; finishing the restore");
                self.finish_swapped(
                    tenant,
                    restore_id,
                    manifest.schema_version,
                    actor,
                    backup.id,
                )
                .await
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant.slug, restore = %restore_id, error = %e, "restore failed; undoing it");
                self.undo(tenant, restore_id, &e.to_string()).await?;
                Err(e)
            }
        }
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
        let cluster = self.servers.of(tenant).await?;
        cluster
            .create_restore_database(tenant.id, &places.names, &places.loaded_db)
            .await?;
        Tool::new("pg_restore", cluster.admin_endpoint(), &places.loaded_db)
            .arg(format!("--dbname={}", places.loaded_db))
            .arg("--no-owner")
            .arg("--no-acl")
            .arg(format!("--role={}", places.names.owner_role))
            .arg("--exit-on-error")
            .arg("--single-transaction")
            .arg(dir.join(DATABASE_DUMP))
            .run()
            .await?;
        cluster
            .grant_restored(&places.names, &places.loaded_db)
            .await?;
        let counts = {
            let session = cluster.admin_session(&places.loaded_db).await?;
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
        let cluster = self.servers.of(tenant).await?;
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
        cluster
            .drop_tenant_database(tenant.id, &places.names, &places.aside_db)
            .await?;
        {
            let mut conn = self.owner.conn().await?;
            let tx = crate::services::owner_db::begin(&mut conn).await?;
            if let Some(version) = schema_version {
                owner::tenants::tenant_set_schema_version(&tx, tenant.id, version).await?;
            }
            maintenance::release_for(&tx, tenant.id, Holder::Restore).await?;
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
        let cluster = self.servers.of(tenant).await?;
        cluster
            .drop_tenant_database(tenant.id, &places.names, &places.loaded_db)
            .await?;
        // A swap that died after taking CONNECT away, before its transaction.
        cluster.reopen_database(&places.names).await?;
        let staging = places.staging.clone();
        blocking(move || archive::remove_dir(&staging)).await?;
        {
            let mut conn = self.owner.conn().await?;
            let tx = crate::services::owner_db::begin(&mut conn).await?;
            maintenance::release_for(&tx, tenant.id, Holder::Restore).await?;
            owner::backups::restore_finish(&tx, restore_id, Some(error)).await?;
            crate::services::owner_db::commit(tx).await?;
        }
        self.events.changed(tenant.id).await;
        Ok(())
    }
}
