//! `audit_log`: every operator action and every tenant lifecycle step.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::Result;

/// Who did it: `operator:<email>`, `cli`, `system:provisioner`...
pub struct AuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub details: serde_json::Value,
    pub ip: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub details: serde_json::Value,
    pub ip: Option<String>,
}

pub async fn audit_insert(client: &impl GenericClient, entry: &AuditEntry<'_>) -> Result<()> {
    client
        .execute(
            "INSERT INTO audit_log (actor, action, target_type, target_id, details, ip) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &entry.actor,
                &entry.action,
                &entry.target_type,
                &entry.target_id,
                &entry.details,
                &entry.ip,
            ],
        )
        .await?;
    Ok(())
}

pub async fn audit_list_for_target(
    client: &impl GenericClient,
    target_type: &str,
    target_id: &str,
    limit: i64,
) -> Result<Vec<AuditEvent>> {
    let rows = client
        .query(
            "SELECT id, at, actor, action, target_type, target_id, details, ip FROM audit_log \
             WHERE target_type = $1 AND target_id = $2 ORDER BY id LIMIT $3",
            &[&target_type, &target_id, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AuditEvent {
            id: r.get(0),
            at: r.get(1),
            actor: r.get(2),
            action: r.get(3),
            target_type: r.get(4),
            target_id: r.get(5),
            details: r.get(6),
            ip: r.get(7),
        })
        .collect())
}
