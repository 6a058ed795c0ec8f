//! `migration_runs` and `migration_run_tenants`: the record of every fleet migration and
//! of every tenant's outcome in it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::{Error, Result};

text_status! {
    /// Where a fleet migration run is.
    RunStatus {
        Running = "running",
        Succeeded = "succeeded",
        /// Finished with failed tenants, within the failure budget.
        Failed = "failed",
        /// Stopped early: the failure budget was spent or a canary failed.
        Halted = "halted",
        /// Left running by a process that stopped.
        Interrupted = "interrupted",
        DryRun = "dry_run",
    }
}

text_status! {
    /// Where one tenant is in a run.
    TenantRunStatus {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        /// A tenant never attempted.
        Skipped = "skipped",
        /// A dry run's finding: `pending` lists what a real run would apply.
        WouldApply = "would_apply",
        Interrupted = "interrupted",
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MigrationRun {
    pub id: Uuid,
    pub status: RunStatus,
    pub source: String,
    pub target_version: i32,
    pub options: serde_json::Value,
    pub started_by: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub halt_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunTenant {
    pub tenant_id: Uuid,
    pub slug: String,
    pub wave: String,
    pub status: TenantRunStatus,
    pub from_version: Option<i32>,
    pub to_version: Option<i32>,
    pub pending: Option<serde_json::Value>,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i32>,
    /// The pre-migration backup taken for the tenant in this run (`migrate --backup`).
    pub backup_id: Option<Uuid>,
}

const RUN_COLUMNS: &str =
    "id, status, source, target_version, options, started_by, started_at, finished_at, halt_reason";
const TENANT_COLUMNS: &str = "tenant_id, slug, wave, status, from_version, to_version, pending, \
    error, started_at, finished_at, duration_ms, \
    (SELECT b.id FROM tenant_backups b WHERE b.migration_run_id = run_id \
     AND b.tenant_id = migration_run_tenants.tenant_id AND b.status = 'succeeded' \
     ORDER BY b.started_at DESC LIMIT 1) AS backup_id";

fn run_from_row(r: &Row) -> MigrationRun {
    MigrationRun {
        id: r.get(0),
        status: r.get(1),
        source: r.get(2),
        target_version: r.get(3),
        options: r.get(4),
        started_by: r.get(5),
        started_at: r.get(6),
        finished_at: r.get(7),
        halt_reason: r.get(8),
    }
}

fn tenant_from_row(r: &Row) -> RunTenant {
    RunTenant {
        tenant_id: r.get(0),
        slug: r.get(1),
        wave: r.get(2),
        status: r.get(3),
        from_version: r.get(4),
        to_version: r.get(5),
        pending: r.get(6),
        error: r.get(7),
        started_at: r.get(8),
        finished_at: r.get(9),
        duration_ms: r.get(10),
        backup_id: r.get(11),
    }
}

pub async fn run_insert(
    client: &impl GenericClient,
    id: Uuid,
    status: RunStatus,
    source: &str,
    target_version: i32,
    options: &serde_json::Value,
    started_by: &str,
) -> Result<MigrationRun> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO migration_runs (id, status, source, target_version, options, started_by) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {RUN_COLUMNS}"
            ),
            &[&id, &status, &source, &target_version, options, &started_by],
        )
        .await?;
    Ok(run_from_row(&row))
}

pub async fn run_finish(
    client: &impl GenericClient,
    id: Uuid,
    status: RunStatus,
    halt_reason: Option<&str>,
) -> Result<()> {
    client
        .execute(
            "UPDATE migration_runs SET status = $2, halt_reason = $3, finished_at = now() WHERE id = $1",
            &[&id, &status, &halt_reason],
        )
        .await?;
    Ok(())
}

/// Marks runs left `running` (by a process that died) as interrupted, with their
/// in-flight tenants. Only called by a process holding the fleet lock.
pub async fn run_mark_interrupted(client: &impl GenericClient) -> Result<Vec<Uuid>> {
    let rows = client
        .query(
            "UPDATE migration_runs SET status = 'interrupted', finished_at = now(), \
             halt_reason = 'the process running it stopped before it finished' \
             WHERE status = 'running' RETURNING id",
            &[],
        )
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    if !ids.is_empty() {
        client
            .execute(
                "UPDATE migration_run_tenants SET status = 'interrupted', finished_at = now() \
                 WHERE run_id = ANY($1) AND status IN ('pending', 'running')",
                &[&ids],
            )
            .await?;
    }
    Ok(ids)
}

pub async fn run_fetch(client: &impl GenericClient, id: Uuid) -> Result<MigrationRun> {
    let row = client
        .query_opt(
            &format!("SELECT {RUN_COLUMNS} FROM migration_runs WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or(Error::NotFound)?;
    Ok(run_from_row(&row))
}

pub async fn run_list(client: &impl GenericClient, limit: i64) -> Result<Vec<MigrationRun>> {
    let rows = client
        .query(
            &format!("SELECT {RUN_COLUMNS} FROM migration_runs ORDER BY started_at DESC LIMIT $1"),
            &[&limit],
        )
        .await?;
    Ok(rows.iter().map(run_from_row).collect())
}

/// Adds the tenants a run will look at, all `pending`.
pub async fn run_tenants_insert(
    client: &impl GenericClient,
    run_id: Uuid,
    tenants: &[(Uuid, String, &'static str, Option<i32>)],
) -> Result<()> {
    let ids: Vec<Uuid> = tenants.iter().map(|t| t.0).collect();
    let slugs: Vec<&str> = tenants.iter().map(|t| t.1.as_str()).collect();
    let waves: Vec<&str> = tenants.iter().map(|t| t.2).collect();
    let versions: Vec<Option<i32>> = tenants.iter().map(|t| t.3).collect();
    // One statement for the whole list, however long.
    client
        .execute(
            "INSERT INTO migration_run_tenants (run_id, tenant_id, slug, wave, status, from_version) \
             SELECT $1, t.id, t.slug, t.wave, 'pending', t.v \
             FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int[]) AS t(id, slug, wave, v)",
            &[&run_id, &ids, &slugs, &waves, &versions],
        )
        .await?;
    Ok(())
}

pub async fn run_tenant_start(
    client: &impl GenericClient,
    run_id: Uuid,
    tenant_id: Uuid,
) -> Result<()> {
    client
        .execute(
            "UPDATE migration_run_tenants SET status = 'running', started_at = now() \
             WHERE run_id = $1 AND tenant_id = $2",
            &[&run_id, &tenant_id],
        )
        .await?;
    Ok(())
}

#[expect(
    clippy::too_many_arguments,
    reason = "one argument per column the statement sets"
)]
pub async fn run_tenant_finish(
    client: &impl GenericClient,
    run_id: Uuid,
    tenant_id: Uuid,
    status: TenantRunStatus,
    from_version: Option<i32>,
    to_version: Option<i32>,
    pending: Option<&serde_json::Value>,
    error: Option<&str>,
    duration_ms: i32,
) -> Result<()> {
    client
        .execute(
            "UPDATE migration_run_tenants SET status = $3, from_version = coalesce($4, from_version), \
             to_version = $5, pending = $6, error = $7, duration_ms = $8, finished_at = now(), \
             started_at = coalesce(started_at, now()) \
             WHERE run_id = $1 AND tenant_id = $2",
            &[&run_id, &tenant_id, &status, &from_version, &to_version, &pending, &error, &duration_ms],
        )
        .await?;
    Ok(())
}

/// Counts of a run's tenants by status.
pub async fn run_counts(client: &impl GenericClient, run_id: Uuid) -> Result<Vec<(String, i64)>> {
    let rows = client
        .query(
            "SELECT status, count(*) FROM migration_run_tenants WHERE run_id = $1 GROUP BY status ORDER BY status",
            &[&run_id],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn run_tenants_list(
    client: &impl GenericClient,
    run_id: Uuid,
    limit: i64,
) -> Result<Vec<RunTenant>> {
    let rows = client
        .query(
            &format!(
                "SELECT {TENANT_COLUMNS} FROM migration_run_tenants WHERE run_id = $1 \
                 ORDER BY (status = 'failed') DESC, wave, slug LIMIT $2"
            ),
            &[&run_id, &limit],
        )
        .await?;
    Ok(rows.iter().map(tenant_from_row).collect())
}

/// Tenants by schema version among living, settled tenants: `(version, count)`.
pub async fn schema_version_histogram(
    client: &impl GenericClient,
) -> Result<Vec<(Option<i32>, i64)>> {
    let rows = client
        .query(
            "SELECT schema_version, count(*) FROM tenants WHERE status IN ('active', 'suspended') \
             GROUP BY schema_version ORDER BY schema_version NULLS FIRST",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Records a tenant's successful migration and its new schema version in one statement.
pub async fn run_tenant_succeeded(
    client: &impl GenericClient,
    run_id: Uuid,
    tenant_id: Uuid,
    from_version: i32,
    to_version: i32,
    applied: &serde_json::Value,
    duration_ms: i32,
) -> Result<()> {
    client
        .execute(
            "WITH t AS (UPDATE tenants SET schema_version = $4, updated_at = now() WHERE id = $2) \
             UPDATE migration_run_tenants SET status = 'succeeded', from_version = $3, to_version = $4, \
             pending = $5, error = NULL, duration_ms = $6, finished_at = now(), \
             started_at = coalesce(started_at, now()) WHERE run_id = $1 AND tenant_id = $2",
            &[&run_id, &tenant_id, &from_version, &to_version, applied, &duration_ms],
        )
        .await?;
    Ok(())
}
