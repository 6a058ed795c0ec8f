//! What answers show of the owner database's rows: the owner API's and the CLI's JSON.
//! A view names every field it shows, so a column added to a row (a secret, say) is not
//! shown until someone decides it should be.

use chrono::{DateTime, Utc};
use owner::tenants::{Step, Tenant, TenantStatus};
use serde::Serialize;
use uuid::Uuid;

/// A tenant as operators see it: never its credentials or its first admin's hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantInfo {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    pub provisioning_step: Step,
    pub last_error: Option<String>,
    pub plan_code: String,
    pub server_id: String,
    pub db_name: String,
    pub owner_role: String,
    pub runtime_role: String,
    pub schema_version: Option<i32>,
    pub settings: serde_json::Value,
    pub features: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Set while the tenant is in maintenance: who holds it, the operator's note,
    /// whether reads are still served, and since when.
    pub maintenance: Option<owner::maintenance::Maintenance>,
}

impl From<&Tenant> for TenantInfo {
    fn from(t: &Tenant) -> Self {
        Self {
            id: t.id,
            slug: t.slug.clone(),
            name: t.name.clone(),
            status: t.status,
            provisioning_step: t.provisioning_step,
            last_error: t.last_error.clone(),
            plan_code: t.plan_code.clone(),
            server_id: t.server_id.clone(),
            db_name: t.db_name.clone(),
            owner_role: t.owner_role.clone(),
            runtime_role: t.runtime_role.clone(),
            schema_version: t.schema_version,
            settings: t.settings.clone(),
            features: t.features.clone(),
            created_at: t.created_at,
            updated_at: t.updated_at,
            activated_at: t.activated_at,
            deleted_at: t.deleted_at,
            maintenance: t.maintenance.clone(),
        }
    }
}

/// A backup as operators see it: the row with its size and duration worked out.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackupInfo {
    #[serde(flatten)]
    pub backup: owner::backups::Backup,
    pub size_bytes: Option<i64>,
    pub duration_ms: Option<i64>,
}

impl From<&owner::backups::Backup> for BackupInfo {
    fn from(b: &owner::backups::Backup) -> Self {
        Self {
            backup: b.clone(),
            size_bytes: b.size_bytes(),
            duration_ms: b.duration_ms(),
        }
    }
}

/// `1.2 GB`, `340 kB`: decimal units, as disks and bills count.
pub fn human_bytes(n: i64) -> String {
    // Binary units everywhere (the plan forms take GiB too), so a limit of 512 MiB reads
    // as 512 MiB and not as 536.9 MB.
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if value.fract() == 0.0 || value.abs() >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(512 * 1024 * 1024), "512 MiB");
        assert_eq!(human_bytes(8_912_896), "8.5 MiB");
        assert_eq!(human_bytes(10 * 1024 * 1024 * 1024), "10 GiB");
    }
}
