//! Maintenance mode (`tenants.maintenance*`): while a tenant is in it, its requests are
//! answered 503 (all of them, or only writes). It has one holder at a time: an operator,
//! or an operation that must not race the tenant's requests. An operation takes it only
//! when it is free and releases only its own; one an operator set outlives every
//! operation run under it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::Result;

/// Who holds a tenant's maintenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Holder {
    /// Set and cleared by hand (CLI, owner API, dashboard).
    Operator,
    /// A backup being restored into the tenant.
    Restore,
    /// A fleet migration run with `--maintenance`, while it migrates this tenant.
    Migration,
    /// A move of the tenant's database to another server, while it copies.
    Move,
}

impl Holder {
    pub fn as_str(self) -> &'static str {
        match self {
            Holder::Operator => "operator",
            Holder::Restore => "restore",
            Holder::Migration => "migration",
            Holder::Move => "move",
        }
    }

    /// Unknown holders (a newer version's) read as operations: never cleared by hand.
    fn parse(s: &str) -> Self {
        match s {
            "operator" => Holder::Operator,
            "migration" => Holder::Migration,
            "move" => Holder::Move,
            _ => Holder::Restore,
        }
    }
}

/// A tenant's maintenance, while it is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Maintenance {
    pub by: Holder,
    /// What the operator said about it, if anything.
    pub note: Option<String>,
    /// GET and HEAD requests are still served.
    pub allow_reads: bool,
    pub since: Option<DateTime<Utc>>,
}

impl Maintenance {
    /// Read from a row with the `maintenance*` columns of `tenants`.
    pub fn from_row(row: &Row) -> Result<Option<Self>> {
        let Some(by) = row.try_get::<_, Option<String>>("maintenance")? else {
            return Ok(None);
        };
        Ok(Some(Maintenance {
            by: Holder::parse(&by),
            note: row.try_get("maintenance_note")?,
            allow_reads: row.try_get("maintenance_reads")?,
            since: row.try_get("maintenance_since")?,
        }))
    }
}

/// Puts the tenant in maintenance held by `by` if nobody holds it. Whether it did.
pub async fn maintenance_take(
    client: &impl GenericClient,
    id: Uuid,
    by: Holder,
    note: Option<&str>,
    allow_reads: bool,
) -> Result<bool> {
    let taken = client
        .execute(
            "UPDATE tenants SET maintenance = $2, maintenance_note = $3, \
             maintenance_reads = $4, maintenance_since = now(), updated_at = now() \
             WHERE id = $1 AND maintenance IS NULL",
            &[&id, &by.as_str(), &note, &allow_reads],
        )
        .await?;
    Ok(taken == 1)
}

/// Changes what an operator's maintenance says (note, reads), keeping when it began.
/// Whether the tenant was in an operator's maintenance.
pub async fn maintenance_amend(
    client: &impl GenericClient,
    id: Uuid,
    note: Option<&str>,
    allow_reads: bool,
) -> Result<bool> {
    let amended = client
        .execute(
            "UPDATE tenants SET maintenance_note = $2, maintenance_reads = $3, \
             updated_at = now() WHERE id = $1 AND maintenance = 'operator'",
            &[&id, &note, &allow_reads],
        )
        .await?;
    Ok(amended == 1)
}

/// Ends the tenant's maintenance if `by` holds it. Whether it did.
pub async fn maintenance_release(
    client: &impl GenericClient,
    id: Uuid,
    by: Holder,
) -> Result<bool> {
    let released = client
        .execute(
            "UPDATE tenants SET maintenance = NULL, maintenance_note = NULL, \
             maintenance_reads = false, maintenance_since = NULL, updated_at = now() \
             WHERE id = $1 AND maintenance = $2",
            &[&id, &by.as_str()],
        )
        .await?;
    Ok(released == 1)
}

/// The tenants whose maintenance `by` holds.
pub async fn maintenance_held_by(client: &impl GenericClient, by: Holder) -> Result<Vec<Uuid>> {
    let rows = client
        .query(
            "SELECT id FROM tenants WHERE maintenance = $1 ORDER BY id",
            &[&by.as_str()],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
