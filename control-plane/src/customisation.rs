//! A tenant's settings and feature overrides, as operators change them (owner API,
//! dashboard, CLI). Every change is audited with what it was before, and announced, so
//! the gateway serves the new profile from the next request.

use owner::plans::plan_terms;
use owner::tenant_settings::{FeatureOverrides, Settings, features_update, settings_update};
use owner::tenants::{Tenant, TenantStatus, tenant_fetch_for_update};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::Result;
use crate::audit::{self, Actor, Target};
use crate::services::{OwnerDb, TenantEvents, owner_db};

/// A tenant's settings and features as operators see them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Customisation {
    pub settings: Settings,
    /// What its plan carries.
    pub plan_features: Vec<String>,
    /// Operators' overrides: `true` adds, `false` takes away.
    #[schema(value_type = std::collections::BTreeMap<String, bool>)]
    pub feature_overrides: FeatureOverrides,
    /// What the tenant has: the plan's, with the overrides.
    pub features: Vec<String>,
}

pub struct Customiser {
    owner: OwnerDb,
    events: TenantEvents,
}

impl Customiser {
    pub fn new(owner: OwnerDb, events: TenantEvents) -> Self {
        Self { owner, events }
    }

    /// The settings and features of `tenant`.
    pub async fn show(&self, tenant: &Tenant) -> Result<Customisation> {
        let conn = self.owner.conn().await?;
        let terms = plan_terms(&**conn, &tenant.plan_code)
            .await?
            .unwrap_or_default();
        Ok(describe(tenant, terms.features))
    }

    /// Applies a settings patch (see `owner::tenant_settings`) to tenant `id`.
    pub async fn update_settings(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: &serde_json::Value,
    ) -> Result<Customisation> {
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        let tenant = locked(&tx, id).await?;
        let before = Settings::from_stored(&tenant.settings);
        let after = before.patched(patch)?;
        settings_update(&tx, id, &after).await?;
        let change = json!({ "from": before, "to": after });
        self.finish(tx, actor, &tenant, "tenant.settings.update", change)
            .await
    }

    /// Applies a feature-override patch (`{"feature": true|false|null}`) to tenant `id`.
    pub async fn update_features(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: &serde_json::Value,
    ) -> Result<Customisation> {
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        let tenant = locked(&tx, id).await?;
        let before = FeatureOverrides::from_stored(&tenant.features);
        let after = before.patched(patch)?;
        features_update(&tx, id, &after).await?;
        let change = json!({ "from": before, "to": after });
        self.finish(tx, actor, &tenant, "tenant.features.update", change)
            .await
    }

    /// Audits `change`, commits and announces it; what the tenant looks like now.
    async fn finish(
        &self,
        tx: tokio_postgres::Transaction<'_>,
        actor: &Actor,
        tenant: &Tenant,
        action: &str,
        change: serde_json::Value,
    ) -> Result<Customisation> {
        audit::record(
            &tx,
            actor,
            action,
            Target("tenant", &tenant.id.to_string()),
            json!({ "slug": tenant.slug, "change": change }),
        )
        .await?;
        let now = owner::tenants::tenant_fetch(&tx, tenant.id).await?;
        let terms = plan_terms(&tx, &now.plan_code).await?.unwrap_or_default();
        owner_db::commit(tx).await?;
        self.events.changed(tenant.id).await;
        Ok(describe(&now, terms.features))
    }
}

/// Tenant `id`, its row locked; refused once it is being deleted.
async fn locked(tx: &tokio_postgres::Transaction<'_>, id: Uuid) -> Result<Tenant> {
    let tenant = tenant_fetch_for_update(tx, id).await?;
    if matches!(
        tenant.status,
        TenantStatus::Deleting | TenantStatus::Deleted
    ) {
        return Err(crate::Error::WrongState {
            id,
            status: tenant.status.as_str(),
        });
    }
    Ok(tenant)
}

fn describe(tenant: &Tenant, plan_features: Vec<String>) -> Customisation {
    let overrides = FeatureOverrides::from_stored(&tenant.features);
    let features = overrides
        .apply(plan_features.iter().map(String::as_str))
        .into_iter()
        .collect();
    Customisation {
        settings: Settings::from_stored(&tenant.settings),
        plan_features,
        feature_overrides: overrides,
        features,
    }
}
