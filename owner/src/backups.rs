//! `tenant_backups`, `tenant_restores` and `backup_policies`: what was saved of each
//! tenant, what was brought back, and how often each plan's tenants are saved.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::{Error, Result};

text_status! {
    /// Why a backup was taken.
    BackupKind {
        Scheduled = "scheduled",
        Manual = "manual",
        /// Right before a fleet migration touched the tenant (`migrate --backup`).
        PreMigration = "pre_migration",
    }
}

text_status! {
    /// Where a backup is.
    BackupStatus {
        Running = "running",
        Succeeded = "succeeded",
        /// Failed, or left running by a process that stopped; its files are removed.
        Failed = "failed",
        /// Removed by the retention policy or an operator; the row stays as history.
        Removed = "removed",
    }
}

text_status! {
    /// Where a restore is.
    RestoreStatus {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

text_status! {
    /// How far a running restore got: before the swap it is undone, after it finished.
    RestorePhase {
        Loading = "loading",
        Swapped = "swapped",
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Backup {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// The tenant's slug (joined in, for listings).
    pub tenant_slug: String,
    pub kind: BackupKind,
    pub status: BackupStatus,
    /// The folder holding the dump, the file archive and the manifest.
    pub location: String,
    pub schema_version: Option<i32>,
    pub database_bytes: Option<i64>,
    pub files_bytes: Option<i64>,
    pub manifest_sha256: Option<String>,
    pub error: Option<String>,
    pub requested_by: String,
    pub migration_run_id: Option<Uuid>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Backup {
    /// Milliseconds from start to end, once finished.
    pub fn duration_ms(&self) -> Option<i64> {
        self.finished_at
            .map(|end| (end - self.started_at).num_milliseconds())
    }

    /// Dump and archive together, once known.
    pub fn size_bytes(&self) -> Option<i64> {
        Some(self.database_bytes? + self.files_bytes?)
    }
}

const COLUMNS: &str = "b.id, b.tenant_id, t.slug, b.kind, b.status, b.location, \
    b.schema_version, b.database_bytes, b.files_bytes, b.manifest_sha256, b.error, \
    b.requested_by, b.migration_run_id, b.started_at, b.finished_at";

const FROM: &str = "tenant_backups b JOIN tenants t ON t.id = b.tenant_id";

fn backup_from(r: &Row) -> Result<Backup> {
    Ok(Backup {
        id: r.try_get(0)?,
        tenant_id: r.try_get(1)?,
        tenant_slug: r.try_get(2)?,
        kind: r.try_get(3)?,
        status: r.try_get(4)?,
        location: r.try_get(5)?,
        schema_version: r.try_get(6)?,
        database_bytes: r.try_get(7)?,
        files_bytes: r.try_get(8)?,
        manifest_sha256: r.try_get(9)?,
        error: r.try_get(10)?,
        requested_by: r.try_get(11)?,
        migration_run_id: r.try_get(12)?,
        started_at: r.try_get(13)?,
        finished_at: r.try_get(14)?,
    })
}

fn backups_from(rows: &[Row]) -> Result<Vec<Backup>> {
    rows.iter().map(backup_from).collect()
}

pub struct NewBackup<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub kind: BackupKind,
    pub location: &'a str,
    pub requested_by: &'a str,
    pub migration_run_id: Option<Uuid>,
}

/// Records a backup as running. Refused with [`Error::AlreadyRunning`] while another
/// backup of the tenant runs.
pub async fn backup_begin(client: &impl GenericClient, new: &NewBackup<'_>) -> Result<Backup> {
    client
        .execute(
            "INSERT INTO tenant_backups (id, tenant_id, kind, status, location, requested_by, \
             migration_run_id) VALUES ($1, $2, $3, 'running', $4, $5, $6)",
            &[
                &new.id,
                &new.tenant_id,
                &new.kind,
                &new.location,
                &new.requested_by,
                &new.migration_run_id,
            ],
        )
        .await?;
    backup_fetch(client, new.id).await
}

/// What a finished backup measured.
pub struct BackupDone<'a> {
    pub schema_version: Option<i32>,
    pub database_bytes: i64,
    pub files_bytes: i64,
    pub manifest_sha256: &'a str,
}

/// Marks a running backup succeeded; false if it was no longer running (a reconciler
/// gave it up for dead).
pub async fn backup_succeed(
    client: &impl GenericClient,
    id: Uuid,
    done: &BackupDone<'_>,
) -> Result<bool> {
    let n = client
        .execute(
            "UPDATE tenant_backups SET status = 'succeeded', schema_version = $2, \
             database_bytes = $3, files_bytes = $4, manifest_sha256 = $5, finished_at = now() \
             WHERE id = $1 AND status = 'running'",
            &[
                &id,
                &done.schema_version,
                &done.database_bytes,
                &done.files_bytes,
                &done.manifest_sha256,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Marks a running backup failed; false if it was not running (any more).
pub async fn backup_fail(client: &impl GenericClient, id: Uuid, error: &str) -> Result<bool> {
    let n = client
        .execute(
            "UPDATE tenant_backups SET status = 'failed', error = $2, finished_at = now() \
             WHERE id = $1 AND status = 'running'",
            &[&id, &error],
        )
        .await?;
    Ok(n == 1)
}

/// Marks a succeeded backup removed (its files are gone).
pub async fn backup_mark_removed(client: &impl GenericClient, id: Uuid) -> Result<()> {
    client
        .execute(
            "UPDATE tenant_backups SET status = 'removed' WHERE id = $1 AND status = 'succeeded'",
            &[&id],
        )
        .await?;
    Ok(())
}

pub async fn backup_fetch(client: &impl GenericClient, id: Uuid) -> Result<Backup> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE b.id = $1"),
            &[&id],
        )
        .await?
        .ok_or(Error::NotFound)?;
    backup_from(&row)
}

/// Backups, newest first: of one tenant, or of every tenant.
pub async fn backup_list(
    client: &impl GenericClient,
    tenant_id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Backup>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE $1::uuid IS NULL OR b.tenant_id = $1 \
                 ORDER BY b.started_at DESC, b.id LIMIT $2"
            ),
            &[&tenant_id, &limit],
        )
        .await?;
    backups_from(&rows)
}

/// Backups recorded as running (for the reconciler: some may have lost their process).
pub async fn backup_list_running(client: &impl GenericClient) -> Result<Vec<Backup>> {
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE b.status = 'running'"),
            &[],
        )
        .await?;
    backups_from(&rows)
}

/// The succeeded backups of one kind of a tenant, newest first (for retention).
pub async fn backup_list_succeeded(
    client: &impl GenericClient,
    tenant_id: Uuid,
    kind: BackupKind,
) -> Result<Vec<Backup>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE b.tenant_id = $1 AND b.kind = $2 \
                 AND b.status = 'succeeded' ORDER BY b.started_at DESC"
            ),
            &[&tenant_id, &kind],
        )
        .await?;
    backups_from(&rows)
}

/// A random succeeded backup finished within `days` days (for the restore test).
pub async fn backup_pick_recent(client: &impl GenericClient, days: i32) -> Result<Option<Backup>> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE b.status = 'succeeded' \
                 AND b.finished_at > now() - make_interval(days => $1) \
                 ORDER BY random() LIMIT 1"
            ),
            &[&days],
        )
        .await?;
    row.as_ref().map(backup_from).transpose()
}

/// A tenant whose plan's schedule says a backup is due: the policy of its plan, or the
/// default one (daily, 7 daily and 4 weekly kept) for a plan without.
#[derive(Debug, Clone)]
pub struct DueTenant {
    pub tenant_id: Uuid,
    pub slug: String,
}

/// Active tenants whose last scheduled backup (succeeded or running) started longer ago
/// than their plan's interval, or who have none; the longest waiting first.
pub async fn backup_list_due(client: &impl GenericClient, limit: i64) -> Result<Vec<DueTenant>> {
    let rows = client
        .query(
            "SELECT t.id, t.slug FROM tenants t \
             LEFT JOIN backup_policies p ON p.plan_code = t.plan_code \
             LEFT JOIN LATERAL ( \
                 SELECT max(b.started_at) AS last FROM tenant_backups b \
                 WHERE b.tenant_id = t.id AND b.kind = 'scheduled' \
                 AND b.status IN ('succeeded', 'running', 'removed') \
             ) l ON true \
             WHERE t.status = 'active' AND t.maintenance IS NULL \
             AND (l.last IS NULL OR l.last < now() - make_interval(secs => coalesce(p.every_secs, 86400))) \
             ORDER BY l.last NULLS FIRST, t.id LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DueTenant {
            tenant_id: r.get(0),
            slug: r.get(1),
        })
        .collect())
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Policy {
    pub every_secs: i32,
    pub keep_daily: i32,
    pub keep_weekly: i32,
}

/// Used for a plan without a row in `backup_policies`.
pub const DEFAULT_POLICY: Policy = Policy {
    every_secs: 86_400,
    keep_daily: 7,
    keep_weekly: 4,
};

/// The backup policy of a tenant's plan.
pub async fn policy_for_tenant(client: &impl GenericClient, tenant_id: Uuid) -> Result<Policy> {
    let row = client
        .query_opt(
            "SELECT p.every_secs, p.keep_daily, p.keep_weekly FROM tenants t \
             JOIN backup_policies p ON p.plan_code = t.plan_code WHERE t.id = $1",
            &[&tenant_id],
        )
        .await?;
    Ok(row.map_or(DEFAULT_POLICY, |r| Policy {
        every_secs: r.get(0),
        keep_daily: r.get(1),
        keep_weekly: r.get(2),
    }))
}

/// Every plan's policy (the default for plans without a row of their own), by plan code.
pub async fn policy_list(client: &impl GenericClient) -> Result<Vec<(String, Policy)>> {
    let rows = client
        .query(
            "SELECT s.code, p.every_secs, p.keep_daily, p.keep_weekly FROM subscription_plans s \
             LEFT JOIN backup_policies p ON p.plan_code = s.code ORDER BY s.code",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let policy = match r.get::<_, Option<i32>>(1) {
                Some(every_secs) => Policy {
                    every_secs,
                    keep_daily: r.get(2),
                    keep_weekly: r.get(3),
                },
                None => DEFAULT_POLICY,
            };
            (r.get(0), policy)
        })
        .collect())
}

/// Sets a plan's policy.
pub async fn policy_set(client: &impl GenericClient, plan_code: &str, p: &Policy) -> Result<()> {
    if p.every_secs < 300
        || p.keep_daily < 0
        || p.keep_weekly < 0
        || p.keep_daily + p.keep_weekly == 0
    {
        return Err(Error::Invalid {
            field: "backup policy",
            reason: "back up at most every 5 minutes, and keep at least one daily or weekly backup"
                .into(),
        });
    }
    client
        .execute(
            "INSERT INTO backup_policies (plan_code, every_secs, keep_daily, keep_weekly) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (plan_code) DO UPDATE SET \
             every_secs = excluded.every_secs, keep_daily = excluded.keep_daily, \
             keep_weekly = excluded.keep_weekly",
            &[&plan_code, &p.every_secs, &p.keep_daily, &p.keep_weekly],
        )
        .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Restore {
    pub id: Uuid,
    pub backup_id: Uuid,
    pub tenant_id: Uuid,
    pub status: RestoreStatus,
    pub phase: RestorePhase,
    /// Into a tenant made for it (a clone), deleted again if the restore fails.
    pub into_new: bool,
    pub error: Option<String>,
    pub requested_by: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const RESTORE_COLUMNS: &str = "id, backup_id, tenant_id, status, phase, into_new, error, \
    requested_by, started_at, finished_at";

fn restore_from(r: &Row) -> Result<Restore> {
    Ok(Restore {
        id: r.try_get(0)?,
        backup_id: r.try_get(1)?,
        tenant_id: r.try_get(2)?,
        status: r.try_get(3)?,
        phase: r.try_get(4)?,
        into_new: r.try_get(5)?,
        error: r.try_get(6)?,
        requested_by: r.try_get(7)?,
        started_at: r.try_get(8)?,
        finished_at: r.try_get(9)?,
    })
}

pub struct NewRestore<'a> {
    pub id: Uuid,
    pub backup_id: Uuid,
    pub tenant_id: Uuid,
    pub into_new: bool,
    pub requested_by: &'a str,
}

/// Records a restore as running; refused with [`Error::AlreadyRunning`] while another
/// restore of the same tenant runs.
pub async fn restore_begin(client: &impl GenericClient, new: &NewRestore<'_>) -> Result<Restore> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO tenant_restores (id, backup_id, tenant_id, status, phase, into_new, \
                 requested_by) VALUES ($1, $2, $3, 'running', 'loading', $4, $5) \
                 RETURNING {RESTORE_COLUMNS}"
            ),
            &[
                &new.id,
                &new.backup_id,
                &new.tenant_id,
                &new.into_new,
                &new.requested_by,
            ],
        )
        .await?;
    restore_from(&row)
}

pub async fn restore_set_phase(
    client: &impl GenericClient,
    id: Uuid,
    phase: RestorePhase,
) -> Result<()> {
    client
        .execute(
            "UPDATE tenant_restores SET phase = $2 WHERE id = $1 AND status = 'running'",
            &[&id, &phase],
        )
        .await?;
    Ok(())
}

/// Ends a running restore: succeeded when `error` is `None`.
pub async fn restore_finish(
    client: &impl GenericClient,
    id: Uuid,
    error: Option<&str>,
) -> Result<()> {
    client
        .execute(
            "UPDATE tenant_restores SET status = CASE WHEN $2::text IS NULL THEN 'succeeded' \
             ELSE 'failed' END, error = $2, finished_at = now() \
             WHERE id = $1 AND status = 'running'",
            &[&id, &error],
        )
        .await?;
    Ok(())
}

pub async fn restore_fetch(client: &impl GenericClient, id: Uuid) -> Result<Restore> {
    let row = client
        .query_opt(
            &format!("SELECT {RESTORE_COLUMNS} FROM tenant_restores WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or(Error::NotFound)?;
    restore_from(&row)
}

pub async fn restore_list_running(client: &impl GenericClient) -> Result<Vec<Restore>> {
    let rows = client
        .query(
            &format!("SELECT {RESTORE_COLUMNS} FROM tenant_restores WHERE status = 'running'"),
            &[],
        )
        .await?;
    rows.iter().map(restore_from).collect()
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RestoreTest {
    pub id: Uuid,
    pub backup_id: Uuid,
    pub ok: bool,
    pub detail: String,
    pub duration_ms: i64,
    pub tested_at: DateTime<Utc>,
}

pub async fn restore_test_insert(
    client: &impl GenericClient,
    backup_id: Uuid,
    ok: bool,
    detail: &str,
    duration_ms: i64,
) -> Result<RestoreTest> {
    let row = client
        .query_one(
            "INSERT INTO restore_tests (id, backup_id, ok, detail, duration_ms) \
             VALUES ($1, $2, $3, $4, $5) \
             RETURNING id, backup_id, ok, detail, duration_ms, tested_at",
            &[&Uuid::new_v4(), &backup_id, &ok, &detail, &duration_ms],
        )
        .await?;
    restore_test_from(&row)
}

fn restore_test_from(row: &Row) -> Result<RestoreTest> {
    Ok(RestoreTest {
        id: row.try_get(0)?,
        backup_id: row.try_get(1)?,
        ok: row.try_get(2)?,
        detail: row.try_get(3)?,
        duration_ms: row.try_get(4)?,
        tested_at: row.try_get(5)?,
    })
}

/// The latest restore test, if any ran.
pub async fn restore_test_latest(client: &impl GenericClient) -> Result<Option<RestoreTest>> {
    let row = client
        .query_opt(
            "SELECT id, backup_id, ok, detail, duration_ms, tested_at FROM restore_tests \
             ORDER BY tested_at DESC LIMIT 1",
            &[],
        )
        .await?;
    row.as_ref().map(restore_test_from).transpose()
}
