//! `migrate status`: where the fleet is, from the owner database alone, or (with
//! `verify`) by asking every tenant database.

use futures::StreamExt;
use serde::Serialize;
use tenant::migrations::Drift;
use uuid::Uuid;

use super::{DEFAULT_CONCURRENCY, Fleet};
use crate::Result;
use crate::services::TenantRole;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FleetStatus {
    pub target_version: i32,
    pub source: String,
    /// The set's migrations, `V{version}__{name}`, oldest first.
    pub migrations: Vec<String>,
    /// `[schema version, tenants]` pairs among active and suspended tenants.
    #[schema(value_type = Vec<Vec<Option<i64>>>)]
    pub histogram: Vec<(Option<i32>, i64)>,
    /// `[slug, recorded version]` of the tenants whose recorded version is below the target.
    #[schema(value_type = Vec<Vec<serde_json::Value>>)]
    pub behind: Vec<(String, Option<i32>)>,
    /// With `verify`: tenants whose database disagrees with the source or the record.
    pub drift: Vec<TenantDrift>,
    pub verified: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantDrift {
    pub tenant_id: Uuid,
    pub slug: String,
    pub recorded_version: Option<i32>,
    pub actual_version: Option<i32>,
    /// How the database differs: migrations missing, unknown, or changed.
    #[schema(value_type = Option<serde_json::Value>)]
    pub drift: Option<Drift>,
    pub error: Option<String>,
}

pub async fn fleet_status(fleet: &Fleet, verify: bool) -> Result<FleetStatus> {
    // Re-read: another process may have recorded migrations since this one last looked.
    let source = fleet.source.refresh().await?;
    let target_version = source.latest_version();
    let conn = fleet.owner.conn().await?;
    let histogram = owner::migration_runs::schema_version_histogram(&**conn).await?;
    let tenants = owner::tenants::tenant_list_for_migration(
        &**conn,
        &super::FleetOptions::default().statuses,
        &[],
        None,
    )
    .await?;
    drop(conn);
    let behind = tenants
        .iter()
        .filter(|t| t.schema_version.unwrap_or(0) < target_version)
        .map(|t| (t.slug.clone(), t.schema_version))
        .collect();
    let mut drift = Vec::new();
    if verify {
        let checks = futures::stream::iter(tenants)
            .map(|t| {
                let source = source.clone();
                async move {
                    let result: Result<(i32, Drift)> = async {
                        let client = fleet.access.connect(&t, TenantRole::Owner).await?;
                        Ok((
                            tenant::migrations::current_version(&client).await?,
                            source.drift(&client).await?,
                        ))
                    }
                    .await;
                    match result {
                        Ok((actual, d)) if d.is_empty() && Some(actual) == t.schema_version => None,
                        Ok((actual, d)) => Some(TenantDrift {
                            tenant_id: t.id,
                            slug: t.slug,
                            recorded_version: t.schema_version,
                            actual_version: Some(actual),
                            drift: Some(d),
                            error: None,
                        }),
                        Err(e) => Some(TenantDrift {
                            tenant_id: t.id,
                            slug: t.slug,
                            recorded_version: t.schema_version,
                            actual_version: None,
                            drift: None,
                            error: Some(e.to_string()),
                        }),
                    }
                }
            })
            .buffer_unordered(DEFAULT_CONCURRENCY);
        drift = checks.filter_map(|d| async move { d }).collect().await;
        drift.sort_by(|a: &TenantDrift, b: &TenantDrift| a.slug.cmp(&b.slug));
    }
    Ok(FleetStatus {
        target_version,
        source: source.origin().to_string(),
        migrations: source
            .migrations()
            .map(|(v, name)| format!("V{v}__{name}"))
            .collect(),
        histogram,
        behind,
        drift,
        verified: verify,
    })
}
