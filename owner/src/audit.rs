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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    Ok(rows.iter().map(event_from_row).collect())
}

fn event_from_row(r: &tokio_postgres::Row) -> AuditEvent {
    AuditEvent {
        id: r.get(0),
        at: r.get(1),
        actor: r.get(2),
        action: r.get(3),
        target_type: r.get(4),
        target_id: r.get(5),
        details: r.get(6),
        ip: r.get(7),
    }
}

/// Filters of the audit log page. `action` matches a prefix (`tenant.` for all tenant
/// events); the others match exactly. Pages go backwards from `before_id`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub before_id: Option<i64>,
    /// Leave out the reconciler's per-step events (`*.step.*`).
    pub hide_system: bool,
    /// Events at or after this time, and before that one.
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// The most events one search returns (a CSV export; pages ask for 100).
pub const MAX_EXPORT: i64 = 10_000;

/// Events matching the filter, newest first.
pub async fn audit_search(client: &impl GenericClient, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
    let action = f.action.as_deref().map(|a| {
        format!(
            "{}%",
            a.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let rows = client
        .query(
            "SELECT id, at, actor, action, target_type, target_id, details, ip FROM audit_log \
             WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action LIKE $2) \
             AND ($3::text IS NULL OR target_type = $3) AND ($4::text IS NULL OR target_id = $4) \
             AND ($5::bigint IS NULL OR id < $5) \
             AND (NOT $7 OR action NOT LIKE '%.step.%') \
             AND ($8::timestamptz IS NULL OR at >= $8) AND ($9::timestamptz IS NULL OR at < $9) \
             ORDER BY id DESC LIMIT $6",
            &[
                &f.actor,
                &action,
                &f.target_type,
                &f.target_id,
                &f.before_id,
                &f.limit.clamp(1, MAX_EXPORT),
                &f.hide_system,
                &f.from,
                &f.until,
            ],
        )
        .await?;
    Ok(rows.iter().map(event_from_row).collect())
}

/// Failed sign-ins for an account since `since` (the caller passes the later of the
/// window start and the account's last successful sign-in), and from an address.
pub async fn audit_login_failures(
    client: &impl GenericClient,
    email: &str,
    ip: Option<&str>,
    since_account: DateTime<Utc>,
    since_ip: DateTime<Utc>,
) -> Result<(i64, i64)> {
    let row = client
        .query_one(
            "SELECT \
               (SELECT count(*) FROM audit_log WHERE action = 'operator.login_failed' \
                  AND target_id = $1 AND at > $3), \
               (SELECT count(*) FROM audit_log WHERE action = 'operator.login_failed' \
                  AND $2::text IS NOT NULL AND ip = $2 AND at > $4)",
            &[&email, &ip, &since_account, &since_ip],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}
