//! The driver: walks one tenant to its desired state, one recorded step at a time,
//! holding the tenant's driver lock (a session-level advisory lock in the owner
//! database) so two processes never drive the same tenant at once.

use owner::tenants::{self, Step, Tenant, TenantStatus};
use tokio_postgres::Client;
use tracing::Instrument;
use uuid::Uuid;

use super::cluster::Sessions;
use super::faults::FaultPoint;
use super::{Provisioner, steps};
use crate::audit::{self, Actor, Target};
use crate::services::owner_db;
use crate::{Error, Result};

const PROVISIONER_ACTOR: &str = "system:provisioner";
const LOCK: &str = "SELECT pg_advisory_lock(hashtextextended('cp-tenant:' || $1, 0))";
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended('cp-tenant:' || $1, 0))";

impl Provisioner {
    /// Drives the tenant to its desired state, waiting for any other driver first.
    pub async fn drive(&self, id: Uuid) -> Result<Tenant> {
        let lock = self.owner.lock_session().await?;
        lock.execute(LOCK, &[&id.to_string()]).await?;
        self.drive_locked(id, &lock).await
    }

    /// Drives the tenant unless another driver holds it; `None` when skipped.
    pub async fn try_drive(&self, id: Uuid) -> Result<Option<Tenant>> {
        let lock = self.owner.lock_session().await?;
        let got: bool = lock.query_one(TRY_LOCK, &[&id.to_string()]).await?.get(0);
        if !got {
            return Ok(None);
        }
        self.drive_locked(id, &lock).await.map(Some)
    }

    /// Starts a drive in the background (tracked for shutdown) and returns its handle.
    pub fn spawn_drive(
        self: &std::sync::Arc<Self>,
        id: Uuid,
    ) -> tokio::task::JoinHandle<Result<Tenant>> {
        let this = std::sync::Arc::clone(self);
        self.tasks.spawn(async move { this.drive(id).await })
    }

    async fn drive_locked(&self, id: Uuid, lock: &Client) -> Result<Tenant> {
        let result = self.run_steps(id, lock).await;
        // An injected fault stands for a crash, and a crash records nothing.
        if let Err(e) = &result
            && !matches!(e, Error::InjectedFault(_))
        {
            tracing::warn!(tenant_id = %id, error = %e, "provisioning step failed; the reconciler will retry");
            if let Ok(conn) = self.owner.conn().await {
                let _ = tenants::tenant_set_error(&**conn, id, &e.to_string()).await;
            }
        }
        result
    }

    async fn run_steps(&self, id: Uuid, lock: &Client) -> Result<Tenant> {
        let mut sessions = Sessions::default();
        // If the lock's session died, another driver may hold the tenant now: stop.
        let still_locked = || {
            if lock.is_closed() {
                Err(Error::Internal(
                    "lost the tenant's driver lock; another driver may take over".into(),
                ))
            } else {
                Ok(())
            }
        };
        loop {
            still_locked()?;
            let tenant = {
                let conn = self.owner.conn().await?;
                tenants::tenant_fetch(&**conn, id).await?
            };
            let Some((status, next)) = steps::next(tenant.status, tenant.provisioning_step) else {
                return Ok(tenant);
            };
            let span =
                tracing::info_span!("provisioning_step", tenant_id = %id, step = next.as_str());
            let details = self
                .run_step(&mut sessions, &tenant, next)
                .instrument(span)
                .await?;
            self.faults.check(FaultPoint::BeforeRecord(next))?;
            still_locked()?;
            match self.record(&tenant, status, next, details).await {
                Ok(()) => {}
                // The status moved under us (a delete arrived): go round and follow it.
                Err(Error::Owner(owner::Error::Conflict)) => continue,
                Err(e) => return Err(e),
            }
            self.faults.check(FaultPoint::AfterRecord(next))?;
        }
    }

    /// Records a finished step (and the final status change) with its audit entry.
    async fn record(
        &self,
        tenant: &Tenant,
        status: TenantStatus,
        step: Step,
        details: serde_json::Value,
    ) -> Result<()> {
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        if !matches!(step, Step::Ready | Step::Removed) {
            // Every step is idempotent, so losing an intermediate record to a crash only
            // means redoing that step: no need to wait for the WAL flush. The final
            // status change is flushed, because callers are told about it.
            tx.batch_execute("SET LOCAL synchronous_commit = off")
                .await
                .map_err(owner::Error::from)?;
        }
        match step {
            Step::Ready => {
                tenants::tenant_transition(&tx, tenant.id, &[status], TenantStatus::Active, step)
                    .await?;
            }
            Step::Removed => {
                owner::domains::domain_delete_for_tenant(&tx, tenant.id).await?;
                owner::subscriptions::subscription_cancel_all(&tx, tenant.id).await?;
                tenants::tenant_transition(&tx, tenant.id, &[status], TenantStatus::Deleted, step)
                    .await?;
            }
            _ => {
                tenants::tenant_record_step(&tx, tenant.id, status, step).await?;
            }
        }
        audit::record(
            &tx,
            &Actor::system(PROVISIONER_ACTOR),
            &format!("tenant.step.{}", step.as_str()),
            Target("tenant", &tenant.id.to_string()),
            details,
        )
        .await?;
        owner_db::commit(tx).await?;
        if matches!(step, Step::Ready | Step::Removed) {
            self.events.changed(tenant.id).await;
        }
        tracing::info!(tenant_id = %tenant.id, step = step.as_str(), "provisioning step done");
        Ok(())
    }
}
