//! Per-tenant backups, restores, clones, exports and moves to another server, made with
//! PostgreSQL's own tools.
//!
//! A backup is a folder `<root>/<tenant id>/<backup id>/` (by default the root is the
//! tenant's own `backups` folder) holding `database.dump` (`pg_dump -Fc`, taken from an
//! exported snapshot in which every table's rows were counted), `files.tar` (the tenant's
//! tree but its `backups` folder) and `manifest.json` (ids, versions, sizes, checksums,
//! row counts). The owner database records each backup (`tenant_backups`) with the
//! manifest's own checksum.
//!
//! - `take.rs`: one backup, under a per-tenant advisory lock (two never overlap).
//! - `restore.rs`: a backup brought back into its tenant or into a new one (a clone):
//!   checked first, loaded into a database of its own, then swapped in.
//! - `recover.rs`: what a crashed process left (a backup marked failed and its files
//!   removed; a restore undone before its swap, finished after it).
//! - `schedule.rs`: the background job (per-plan schedules, retention) and the restore
//!   test. `export.rs`: one archive of everything a tenant owns, for handing over.
//! - `moves.rs`: a tenant's database copied to another server while its writes pause,
//!   verified, and switched to, as a persisted state machine.

mod archive;
mod export;
mod manifest;
mod moves;
mod recover;
mod restore;
mod schedule;
mod take;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use owner::backups::Backup;
use owner::tenants::Tenant;
use tokio_postgres::Client;
use uuid::Uuid;

pub use self::export::Export;
pub use self::manifest::Manifest;
pub use self::moves::{DRAIN_CONCURRENCY, Drained, MoveStarted, start_drain};
pub use self::recover::Recovered;
pub use self::restore::{Checked, RestoreStarted};
pub use self::schedule::{Pruned, ScheduleReport, retention_keeps};
pub use self::take::{Request as BackupRequest, Started};
use crate::provisioning::{Cluster, Faults, Provisioner, Servers};
use crate::services::{OwnerDb, TenantEvents, Traffic};
use crate::{Error, Result};

/// Backups, restores and exports of tenants. Cheap to share (`Arc`).
pub struct Backups {
    owner: OwnerDb,
    servers: Arc<Servers>,
    storage: storage::Storage,
    events: TenantEvents,
    provisioner: Arc<Provisioner>,
    faults: Arc<Faults>,
    /// `CP_BACKUP_ROOT`; `None`: each tenant's own `backups` folder.
    root: Option<PathBuf>,
    /// Backups the background job takes at once while the gateway is quiet.
    concurrency: usize,
    /// The gateway's request rate: the job yields to it.
    traffic: Traffic,
    idle_sessions: IdleSessions,
    /// `CP_MOVE_GRACE_SECS`: how long a moved tenant's old database is kept.
    move_grace: std::time::Duration,
}

/// The session-level advisory lock (in the owner database) a backup or restore of one
/// tenant holds while it runs: two never overlap, and a lock nobody holds tells the
/// recovery pass that a row still marked running lost its process.
const TENANT_BACKUP_LOCK: &str =
    "SELECT pg_try_advisory_lock(hashtextextended('cp-backup:' || $1::text, 0))";
const TENANT_BACKUP_UNLOCK: &str =
    "SELECT pg_advisory_unlock(hashtextextended('cp-backup:' || $1::text, 0))";

/// A tenant's backup lock, held on a session of its own. [`TenantLock::release`] lets it
/// go at once; a lock that is only dropped (a crash, a cancelled task) goes with its
/// session, which the server notices a moment later.
pub struct TenantLock {
    session: Client,
    tenant_id: Uuid,
    /// Where the session goes back once unlocked, for the next lock.
    idle: IdleSessions,
}

impl TenantLock {
    pub async fn release(self) {
        let key = self.tenant_id.to_string();
        match self.session.execute(TENANT_BACKUP_UNLOCK, &[&key]).await {
            Ok(_) => self.idle.put(self.session),
            Err(e) => tracing::debug!(error = %e, "backup lock released with its session"),
        }
    }
}

/// Lock sessions holding no lock, kept for the next backup: opening one costs a login.
#[derive(Clone, Default)]
struct IdleSessions(Arc<std::sync::Mutex<Vec<Client>>>);

/// Idle lock sessions kept at most.
const IDLE_SESSIONS: usize = 8;

impl IdleSessions {
    fn take(&self) -> Option<Client> {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(session) = idle.pop() {
            if !session.is_closed() {
                return Some(session);
            }
        }
        None
    }

    fn put(&self, session: Client) {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_SESSIONS && !session.is_closed() {
            idle.push(session);
        }
    }
}

impl Backups {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        owner: OwnerDb,
        servers: Arc<Servers>,
        storage: storage::Storage,
        events: TenantEvents,
        provisioner: Arc<Provisioner>,
        faults: Arc<Faults>,
        root: Option<PathBuf>,
        concurrency: usize,
        traffic: Traffic,
        move_grace: std::time::Duration,
    ) -> Self {
        Self {
            owner,
            servers,
            storage,
            events,
            provisioner,
            faults,
            root,
            concurrency: concurrency.max(1),
            traffic,
            idle_sessions: IdleSessions::default(),
            move_grace,
        }
    }

    /// Connections the background job may hold at once on the tenants' server (a
    /// snapshot session and `pg_dump`'s own per backup), for the connection budget.
    pub fn connections_needed(concurrency: usize) -> usize {
        concurrency.max(1) * 2
    }

    /// Refuses to start with a backup root that cannot be written, so a misconfigured
    /// root is found at start-up and not by the first scheduled backup at 3 a.m.
    pub fn check_root(root: Option<&Path>) -> Result<()> {
        let Some(root) = root else {
            return Ok(());
        };
        let unwritable = |e: std::io::Error| {
            Error::Config(format!(
                "invalid setting CP_BACKUP_ROOT: {} is not writable: {e}",
                root.display()
            ))
        };
        std::fs::create_dir_all(root).map_err(unwritable)?;
        let probe = root.join(format!(".write-test-{}", Uuid::new_v4().simple()));
        std::fs::write(&probe, b"ok").map_err(unwritable)?;
        std::fs::remove_file(&probe).map_err(unwritable)?;
        Ok(())
    }

    /// The folder of backup `id` of `tenant`.
    fn location(&self, tenant: &Tenant, id: Uuid) -> Result<PathBuf> {
        Ok(match &self.root {
            Some(root) => root.join(tenant.id.to_string()).join(id.to_string()),
            None => self
                .storage
                .tenant(&tenant.slug)?
                .dir()
                .join("backups")
                .join(id.to_string()),
        })
    }

    /// A tenant's backups (or everyone's), newest first.
    pub async fn list(&self, tenant_id: Option<Uuid>, limit: i64) -> Result<Vec<Backup>> {
        let conn = self.owner.conn().await?;
        Ok(owner::backups::backup_list(&**conn, tenant_id, limit).await?)
    }

    /// Backup `id` of tenant `tenant_id`: another tenant's is not found, like a
    /// missing one.
    pub async fn fetch_of(&self, tenant_id: Uuid, id: Uuid) -> Result<Backup> {
        let conn = self.owner.conn().await?;
        let backup = owner::backups::backup_fetch(&**conn, id).await?;
        if backup.tenant_id != tenant_id {
            return Err(owner::Error::NotFound.into());
        }
        Ok(backup)
    }

    /// The latest restore test, for the dashboard and /metrics.
    pub async fn latest_restore_test(&self) -> Result<Option<owner::backups::RestoreTest>> {
        let conn = self.owner.conn().await?;
        Ok(owner::backups::restore_test_latest(&**conn).await?)
    }

    /// Takes the tenant's backup lock on a session of its own; `None` when another
    /// backup or restore of the tenant holds it.
    async fn lock_tenant(&self, tenant_id: Uuid) -> Result<Option<TenantLock>> {
        let session = match self.idle_sessions.take() {
            Some(session) => session,
            None => self.owner.lock_session().await?,
        };
        let locked: bool = session
            .query_one(TENANT_BACKUP_LOCK, &[&tenant_id.to_string()])
            .await?
            .get(0);
        if !locked {
            self.idle_sessions.put(session);
            return Ok(None);
        }
        Ok(Some(TenantLock {
            session,
            tenant_id,
            idle: self.idle_sessions.clone(),
        }))
    }

    async fn lock_tenant_or_busy(&self, tenant_id: Uuid) -> Result<TenantLock> {
        self.lock_tenant(tenant_id)
            .await?
            .ok_or_else(|| owner::Error::AlreadyRunning("backup or restore").into())
    }
}

/// Starts a repeatable-read, read-only transaction on `session` and exports its
/// snapshot: what the row counts are read in and `pg_dump` is pointed at, so both see
/// the same data. Returns the transaction, the snapshot's name and the server's version.
async fn begin_snapshot(
    session: &mut Client,
) -> Result<(tokio_postgres::Transaction<'_>, String, String)> {
    let tx = session
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let snapshot: String = tx
        .query_one("SELECT pg_export_snapshot()", &[])
        .await?
        .get(0);
    let server_version: String = tx.query_one("SHOW server_version", &[]).await?.get(0);
    Ok((tx, snapshot, server_version))
}

impl Backups {
    /// `pg_dump -Fc` of database `db` on `cluster` in `snapshot` (kept open by its
    /// transaction) to `out`.
    async fn dump(&self, cluster: &Cluster, db: &str, snapshot: &str, out: &Path) -> Result<()> {
        crate::pg::tools::Tool::new("pg_dump", cluster.admin_endpoint(), db)
            .arg("--format=custom")
            .arg(format!("--snapshot={snapshot}"))
            .arg("--file")
            .arg(out)
            .run()
            .await?;
        Ok(())
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("backup file task failed: {e}")))?
}

/// Rows per table (`schema.table`) of every table outside the system schemas (and other
/// sessions' temporary ones), counted in one statement.
async fn count_rows(
    client: &impl tokio_postgres::GenericClient,
) -> Result<std::collections::BTreeMap<String, i64>> {
    let tables: Vec<(String, String)> = client
        .query(
            "SELECT schemaname, tablename FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') \
             AND schemaname NOT LIKE 'pg\\_temp\\_%' AND schemaname NOT LIKE 'pg\\_toast\\_temp\\_%' \
             ORDER BY 1, 2",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if tables.is_empty() {
        return Ok(Default::default());
    }
    let counts = tables
        .iter()
        .enumerate()
        .map(|(i, (schema, table))| {
            format!(
                "SELECT {i}, count(*) FROM {}.{}",
                crate::pg::ident(schema),
                crate::pg::ident(table)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let rows = client.query(&counts, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (schema, table) = &tables[usize::try_from(r.get::<_, i32>(0)).unwrap_or(0)];
            (format!("{schema}.{table}"), r.get::<_, i64>(1))
        })
        .collect())
}
