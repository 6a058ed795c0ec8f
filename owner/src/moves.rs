//! `tenant_moves`: a tenant's database moving to another server (see the migration V10
//! for the phases).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::{Error, Result};

text_status! {
    /// Where a move is.
    MovePhase {
        Copying = "copying",
        Switched = "switched",
        Done = "done",
        Failed = "failed",
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantMove {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub from_server: String,
    pub to_server: String,
    pub phase: MovePhase,
    pub requested_by: String,
    pub started_at: DateTime<Utc>,
    pub switched_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub drop_after: Option<DateTime<Utc>>,
    pub write_pause_ms: Option<i32>,
    pub tables: Option<serde_json::Value>,
    pub error: Option<String>,
}

const COLUMNS: &str = "id, tenant_id, from_server, to_server, phase, requested_by, started_at, \
    switched_at, finished_at, drop_after, write_pause_ms, tables, error";

impl TryFrom<&Row> for TenantMove {
    type Error = Error;

    fn try_from(row: &Row) -> Result<Self> {
        let phase: String = row.try_get("phase")?;
        Ok(Self {
            id: row.try_get("id")?,
            tenant_id: row.try_get("tenant_id")?,
            from_server: row.try_get("from_server")?,
            to_server: row.try_get("to_server")?,
            phase: MovePhase::parse(&phase).ok_or_else(|| Error::Invalid {
                field: "tenant_moves.phase",
                reason: phase.clone(),
            })?,
            requested_by: row.try_get("requested_by")?,
            started_at: row.try_get("started_at")?,
            switched_at: row.try_get("switched_at")?,
            finished_at: row.try_get("finished_at")?,
            drop_after: row.try_get("drop_after")?,
            write_pause_ms: row.try_get("write_pause_ms")?,
            tables: row.try_get("tables")?,
            error: row.try_get("error")?,
        })
    }
}

/// Records a move in phase `copying`; one already copying for the tenant is
/// [`Error::AlreadyRunning`].
pub async fn move_begin(
    client: &impl GenericClient,
    id: Uuid,
    tenant_id: Uuid,
    from: &str,
    to: &str,
    requested_by: &str,
) -> Result<TenantMove> {
    let row = client
        .query_opt(
            &format!(
                "INSERT INTO tenant_moves (id, tenant_id, from_server, to_server, phase, requested_by) \
                 VALUES ($1, $2, $3, $4, 'copying', $5) ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
            ),
            &[&id, &tenant_id, &from, &to, &requested_by],
        )
        .await?
        .ok_or(Error::AlreadyRunning("move"))?;
    TenantMove::try_from(&row)
}

/// The switch: phase `switched`, with what was verified and how long writes paused;
/// the source is dropped after `grace_secs`.
pub async fn move_switched(
    client: &impl GenericClient,
    id: Uuid,
    tables: &serde_json::Value,
    write_pause_ms: i32,
    grace_secs: f64,
) -> Result<TenantMove> {
    let row = client
        .query_one(
            &format!(
                "UPDATE tenant_moves SET phase = 'switched', switched_at = now(), tables = $2, \
                 write_pause_ms = $3, drop_after = now() + make_interval(secs => $4) \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, tables, &write_pause_ms, &grace_secs],
        )
        .await?;
    TenantMove::try_from(&row)
}

/// Ends a move: `done` (no error) or `failed`.
pub async fn move_finish(client: &impl GenericClient, id: Uuid, error: Option<&str>) -> Result<()> {
    client
        .execute(
            "UPDATE tenant_moves SET phase = CASE WHEN $2::text IS NULL THEN 'done' ELSE 'failed' END, \
             error = $2, finished_at = now() WHERE id = $1",
            &[&id, &error],
        )
        .await?;
    Ok(())
}

pub async fn move_fetch(client: &impl GenericClient, id: Uuid) -> Result<TenantMove> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM tenant_moves WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or(Error::NotFound)?;
    TenantMove::try_from(&row)
}

/// A tenant's moves, newest first.
pub async fn move_list_for_tenant(
    client: &impl GenericClient,
    tenant_id: Uuid,
) -> Result<Vec<TenantMove>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM tenant_moves WHERE tenant_id = $1 ORDER BY started_at DESC"
            ),
            &[&tenant_id],
        )
        .await?;
    rows.iter().map(TenantMove::try_from).collect()
}

/// Moves still copying (their process may be gone), and switched ones whose source is
/// due to be dropped.
pub async fn move_list_unfinished(client: &impl GenericClient) -> Result<Vec<TenantMove>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM tenant_moves WHERE phase = 'copying' \
                 OR (phase = 'switched' AND drop_after <= now()) ORDER BY started_at"
            ),
            &[],
        )
        .await?;
    rows.iter().map(TenantMove::try_from).collect()
}
