//! Taking one backup of one tenant.

use std::path::{Path, PathBuf};

use chrono::Utc;
use owner::backups::{Backup, BackupDone, BackupKind, NewBackup};
use owner::tenants::{Tenant, TenantStatus};
use serde_json::json;
use uuid::Uuid;

use super::manifest::{self, DATABASE_DUMP, FILES_ARCHIVE, FORMAT_VERSION, MANIFEST, Manifest};
use super::{Backups, TenantLock, archive, begin_snapshot, blocking, count_rows};
use crate::audit::{self, Actor, Target};
use crate::pg::tools;
use crate::provisioning::FaultPoint;
use crate::{Error, Result};

/// A backup recorded as running, holding its tenant's backup lock until finished.
pub struct Started {
    tenant: Tenant,
    pub backup: Backup,
    dir: PathBuf,
    actor: Actor,
    lock: TenantLock,
}

/// Why and for whom a backup is taken.
pub struct Request<'a> {
    pub kind: BackupKind,
    pub actor: &'a Actor,
    /// The fleet run a pre-migration backup is for.
    pub migration_run_id: Option<Uuid>,
}

impl Backups {
    /// Takes a backup of `tenant` and waits for it: [`Backups::start`], then
    /// [`Backups::finish`].
    pub async fn take(&self, tenant: &Tenant, req: &Request<'_>) -> Result<Backup> {
        let started = self.start(tenant, req).await?;
        self.finish(started).await
    }

    /// Records a backup of `tenant` as running, under the tenant's backup lock. Refused
    /// while another backup or restore of the tenant runs.
    pub async fn start(&self, tenant: &Tenant, req: &Request<'_>) -> Result<Started> {
        if !matches!(
            tenant.status,
            TenantStatus::Active | TenantStatus::Suspended
        ) {
            return Err(Error::WrongState {
                id: tenant.id,
                status: tenant.status.as_str(),
            });
        }
        // The lock first, the row second: a row marked running whose lock is free is
        // then always one whose process is gone.
        let lock = self.lock_tenant_or_busy(tenant.id).await?;
        let id = Uuid::new_v4();
        let dir = self.location(tenant, id)?;
        let conn = self.owner.conn().await?;
        let backup = owner::backups::backup_begin(
            &**conn,
            &NewBackup {
                id,
                tenant_id: tenant.id,
                kind: req.kind,
                location: &dir.display().to_string(),
                requested_by: &req.actor.label,
                migration_run_id: req.migration_run_id,
            },
        )
        .await?;
        Ok(Started {
            tenant: tenant.clone(),
            backup,
            dir,
            actor: req.actor.clone(),
            lock,
        })
    }

    /// Takes the backup [`Backups::start`] recorded. A failed backup is recorded as
    /// failed and its files removed; one cut short by a crash is left to
    /// [`Backups::recover_left`].
    pub async fn finish(&self, started: Started) -> Result<Backup> {
        let (result, lock) = self.finish_holding(started).await;
        if let Some(lock) = lock {
            lock.release().await;
        }
        result
    }

    /// [`Backups::finish`], handing back the tenant's lock (none after a crash, as the
    /// fault switch plays it), so the caller can go on under it.
    pub(super) async fn finish_holding(
        &self,
        started: Started,
    ) -> (Result<Backup>, Option<TenantLock>) {
        let Started {
            tenant,
            backup,
            dir,
            actor,
            lock,
        } = started;
        let timer = std::time::Instant::now();
        let outcome = self.write_backup(&tenant, &backup, &dir).await;
        let result = match outcome {
            Ok(done) => self.record_success(&tenant, &backup, done, &actor).await,
            // A crash, as the fault switch plays it: nothing is cleaned up here.
            Err(e @ Error::InjectedFault(_)) => return (Err(e), None),
            Err(e) => Err(e),
        };
        let kind = backup.kind.as_str();
        match &result {
            Ok(_) => {
                metrics::counter!("backups_taken_total", "kind" => kind).increment(1);
                tracing::info!(tenant = %tenant.slug, backup = %backup.id, ms = timer.elapsed().as_millis() as u64, "backup taken");
            }
            Err(e) => {
                metrics::counter!("backups_failed_total", "kind" => kind).increment(1);
                tracing::warn!(tenant = %tenant.slug, backup = %backup.id, error = %e, "backup failed");
                // Only a backup this call marked failed loses its files: one whose success
                // was committed before an error keeps them. If the owner database cannot
                // be told, the recovery pass marks it once the lock is free.
                let marked = match self.owner.conn().await {
                    Ok(conn) => owner::backups::backup_fail(&**conn, backup.id, &e.to_string())
                        .await
                        .unwrap_or(false),
                    Err(_) => false,
                };
                if marked {
                    let dir = dir.clone();
                    let _ = blocking(move || archive::remove_dir(&dir)).await;
                }
            }
        }
        (result, Some(lock))
    }

    /// Dump, archive and manifest, in the backup's folder; returns the manifest and its
    /// checksum.
    async fn write_backup(
        &self,
        tenant: &Tenant,
        backup: &Backup,
        dir: &Path,
    ) -> Result<(Manifest, String)> {
        {
            let dir = dir.to_path_buf();
            blocking(move || {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))
            })
            .await?;
        }
        let started_at = Utc::now();
        let pg_dump_version = tools::pg_dump_version().await?;
        let cluster = self.servers.of(tenant).await?;
        let admin = cluster.admin_endpoint();
        // One snapshot for the row counts and the dump, so the manifest says exactly
        // what the dump holds.
        let mut session = cluster.admin_session(&tenant.db_name).await?;
        let (tx, snapshot, server_version) = begin_snapshot(&mut session).await?;
        let has_history: bool = tx
            .query_one(
                "SELECT to_regclass('public.refinery_schema_history') IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
        let schema_version: Option<i32> = if has_history {
            tx.query_one(
                "SELECT max(version) FROM public.refinery_schema_history",
                &[],
            )
            .await?
            .get(0)
        } else {
            None
        };
        let tables = count_rows(&tx).await?;
        let dump = dir.join(DATABASE_DUMP);
        self.dump(&cluster, &tenant.db_name, &snapshot, &dump)
            .await?;
        tx.commit().await?;
        self.faults.check(FaultPoint::BackupDumped)?;

        let tree = self.storage.tenant(&tenant.slug)?.dir().to_path_buf();
        let files = dir.join(FILES_ARCHIVE);
        let entries = {
            let (tree, files, dump) = (tree, files.clone(), dump.clone());
            blocking(move || {
                archive::write_archive(&tree, &files)?;
                Ok(vec![
                    manifest::hash_file(&dump)?,
                    manifest::hash_file(&files)?,
                ])
            })
            .await?
        };
        let (host, port) = crate::pg::server_address(admin.config());
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            backup_id: backup.id,
            tenant_id: tenant.id,
            tenant_slug: tenant.slug.clone(),
            database: tenant.db_name.clone(),
            schema_version,
            server: format!("{host}:{port}"),
            server_version,
            pg_dump_version,
            started_at,
            finished_at: Utc::now(),
            files: entries,
            tables,
        };
        let bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Internal(format!("cannot write the manifest: {e}")))?;
        let sha = manifest::sha256_hex(&bytes);
        let path: PathBuf = dir.join(MANIFEST);
        blocking(move || {
            let file = std::fs::File::create(&path);
            let write = file.and_then(|mut f| {
                std::io::Write::write_all(&mut f, &bytes)?;
                f.sync_all()
            });
            write.map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))
        })
        .await?;
        Ok((manifest, sha))
    }

    async fn record_success(
        &self,
        tenant: &Tenant,
        backup: &Backup,
        (manifest, sha): (Manifest, String),
        actor: &Actor,
    ) -> Result<Backup> {
        let size = |name: &str| {
            manifest
                .file(name)
                .map_or(0, |f| i64::try_from(f.bytes).unwrap_or(i64::MAX))
        };
        let mut conn = self.owner.conn().await?;
        let tx = crate::services::owner_db::begin(&mut conn).await?;
        let recorded = owner::backups::backup_succeed(
            &tx,
            backup.id,
            &BackupDone {
                schema_version: manifest.schema_version,
                database_bytes: size(DATABASE_DUMP),
                files_bytes: size(FILES_ARCHIVE),
                manifest_sha256: &sha,
            },
        )
        .await?;
        if !recorded {
            return Err(Error::Internal(
                "the backup was given up as lost while it ran".into(),
            ));
        }
        audit::record(
            &tx,
            actor,
            "tenant.backup",
            Target("tenant", &tenant.id.to_string()),
            json!({
                "backup_id": backup.id,
                "kind": backup.kind,
                "database_bytes": size(DATABASE_DUMP),
                "files_bytes": size(FILES_ARCHIVE),
            }),
        )
        .await?;
        let recorded = owner::backups::backup_fetch(&tx, backup.id).await?;
        crate::services::owner_db::commit(tx).await?;
        Ok(recorded)
    }
}
