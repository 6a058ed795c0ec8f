//! The scheduled integration sync: every `CP_INTEGRATION_SYNC_INTERVAL_SECS`, each active
//! tenant with the `integrations` feature has its integrations that are due synced (see
//! `tenant::integrations::sync_due`), over one short-lived connection as its runtime role
//! (never through the gateway's pools or budget). With several replicas, the one holding
//! the sync lock does it. A tenant that fails is logged and the others go on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use owner::tenant_settings::FeatureOverrides;
use owner::tenants::{TenantFilter, TenantStatus};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::integrations::DataKeyVault;
use crate::services::{OwnerDb, TenantAccess, TenantRole};
use crate::{Error, Result};

const SYNC_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended('cp-integration-sync', 0))";

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncPass {
    /// Tenants visited.
    pub tenants: usize,
    pub synced: usize,
    pub failed: usize,
    /// Tenants that could not be visited.
    pub unreachable: usize,
}

pub struct IntegrationSync {
    owner: OwnerDb,
    access: Arc<TenantAccess>,
    caller: Arc<dyn tenant::integrations::Caller>,
    endpoints: Arc<HashMap<String, String>>,
    /// How often an integration is synced.
    every: Duration,
}

impl IntegrationSync {
    pub fn new(
        owner: OwnerDb,
        access: Arc<TenantAccess>,
        caller: Arc<dyn tenant::integrations::Caller>,
        endpoints: HashMap<String, String>,
        every: Duration,
    ) -> Self {
        Self {
            owner,
            access,
            caller,
            endpoints: Arc::new(endpoints),
            every,
        }
    }

    /// Syncs every integration due (not synced for a whole interval), fleet-wide.
    pub async fn run_once(&self) -> Result<SyncPass> {
        let leader = self.owner.lock_session().await?;
        let got: bool = leader
            .query_one(SYNC_LOCK, &[])
            .await
            .map_err(owner::Error::from)?
            .get(0);
        if !got {
            return Ok(SyncPass::default());
        }
        let tenants = {
            let conn = self.owner.conn().await?;
            owner::tenants::tenant_list(
                &**conn,
                &TenantFilter {
                    status: Some(TenantStatus::Active),
                    limit: i64::MAX,
                    ..Default::default()
                },
            )
            .await?
        };
        let mut plans: HashMap<String, Vec<String>> = HashMap::new();
        let mut pass = SyncPass::default();
        for t in tenants {
            if t.schema_version.is_some_and(|v| v < 3) {
                continue;
            }
            if !plans.contains_key(&t.plan_code) {
                let conn = self.owner.conn().await?;
                let terms = owner::plans::plan_terms(&**conn, &t.plan_code)
                    .await?
                    .unwrap_or_default();
                plans.insert(t.plan_code.clone(), terms.features);
            }
            let plan = plans.get(&t.plan_code).cloned().unwrap_or_default();
            let features =
                FeatureOverrides::from_stored(&t.features).apply(plan.iter().map(String::as_str));
            if !features.contains("integrations") {
                continue;
            }
            let result = async {
                let Some(key) = self.access.data_key(&t)? else {
                    return Ok(None);
                };
                let env = tenant::integrations::IntegrationEnv {
                    caller: Arc::clone(&self.caller),
                    endpoints: Arc::clone(&self.endpoints),
                    vault: Some(Arc::new(DataKeyVault::new(&key))),
                };
                let mut client = self.access.connect(&t, TenantRole::Runtime).await?;
                let report = tenant::integrations::sync_due(
                    &mut client,
                    &env,
                    t.id,
                    self.every.as_secs_f64(),
                )
                .await?;
                Ok::<_, Error>(Some(report))
            }
            .await;
            match result {
                Ok(Some(report)) => {
                    pass.tenants += 1;
                    pass.synced += report.synced;
                    pass.failed += report.failed;
                }
                Ok(None) => {}
                Err(e) => {
                    pass.unreachable += 1;
                    tracing::warn!(tenant_id = %t.id, slug = %t.slug, error = %e, "integration sync: tenant skipped");
                }
            }
        }
        drop(leader);
        Ok(pass)
    }

    /// A pass every interval until cancelled.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.every) => {}
            }
            match self.run_once().await {
                Ok(pass) => tracing::debug!(?pass, "integration sync pass"),
                Err(e) => tracing::warn!(error = %e, "integration sync pass failed"),
            }
        }
    }
}
