//! Plans and subscriptions: create and edit plans, move a tenant to another plan or
//! billing status. Shared by the API and the dashboard; every change is audited and the
//! gateway forgets what it cached, so new limits apply from the next request.

use owner::plans::{Plan, PlanFields, plan_code_check, plan_fetch, plan_insert, plan_update};
use owner::subscriptions::{
    Subscription, SubscriptionStatus, subscription_change, subscription_list,
    subscription_set_status,
};
use owner::tenants::{TenantStatus, tenant_fetch, tenant_set_plan};
use serde_json::json;
use uuid::Uuid;

use crate::Result;
use crate::audit::{self, Actor, Target};
use crate::services::{OwnerDb, TenantEvents, owner_db};

/// Plans and subscriptions, over the owner database; changes are announced so caches
/// (the gateway's plan limits, its tenants) follow at once.
pub struct Billing {
    owner: OwnerDb,
    events: TenantEvents,
}

impl Billing {
    pub fn new(owner: OwnerDb, events: TenantEvents) -> Self {
        Self { owner, events }
    }

    pub async fn plan_create(
        &self,
        actor: &Actor,
        code: &str,
        fields: &PlanFields,
    ) -> Result<Plan> {
        plan_code_check(code)?;
        fields.validate()?;
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        let plan = match plan_insert(&tx, code, fields).await {
            Err(owner::Error::Db(e))
                if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
            {
                return Err(crate::Error::Conflict(
                    "plan_exists",
                    format!("a plan with code {code:?} exists"),
                ));
            }
            other => other?,
        };
        audit(
            &tx,
            actor,
            "plan.create",
            "plan",
            code,
            json!({ "plan": plan }),
        )
        .await?;
        owner_db::commit(tx).await?;
        Ok(plan)
    }

    pub async fn plan_edit(&self, actor: &Actor, code: &str, fields: &PlanFields) -> Result<Plan> {
        fields.validate()?;
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        let before = plan_fetch(&tx, code).await?;
        let plan = plan_update(&tx, code, fields).await?;
        audit(
            &tx,
            actor,
            "plan.update",
            "plan",
            code,
            json!({ "from": before, "to": plan }),
        )
        .await?;
        // A new max_database_bytes applies to the latest samples at once.
        let flipped = owner::usage::database_quota_refresh(&tx, None).await?;
        owner_db::commit(tx).await?;
        self.events.plans_changed().await;
        for id in flipped {
            self.events.changed(id).await;
        }
        Ok(plan)
    }

    /// Moves the tenant to `change.plan` (a new subscription, the old one cancelled) or, on
    /// the same plan, sets the billing status of its subscription.
    pub async fn subscription_update(
        &self,
        actor: &Actor,
        tenant_id: Uuid,
        change: &SubscriptionChange,
    ) -> Result<Subscription> {
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        tx.execute(
            "SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE",
            &[&tenant_id],
        )
        .await
        .map_err(owner::Error::from)?;
        let tenant = tenant_fetch(&tx, tenant_id).await?;
        if matches!(
            tenant.status,
            TenantStatus::Deleting | TenantStatus::Deleted
        ) {
            return Err(crate::Error::WrongState {
                id: tenant.id,
                status: tenant.status.as_str(),
            });
        }
        let plan = owner::plans::plan_fetch_active(&tx, &change.plan).await?;
        let current = subscription_list(&tx, tenant_id).await?.into_iter().next();
        let trial_ends_at = match (change.status, change.trial_days) {
            (SubscriptionStatus::Trialing, Some(days)) => {
                Some(chrono::Utc::now() + chrono::Duration::days(i64::from(days.min(365))))
            }
            (SubscriptionStatus::Trialing, None) => {
                Some(chrono::Utc::now() + chrono::Duration::days(14))
            }
            _ => None,
        };
        let subscription = match current {
            Some(sub)
                if sub.plan_code == plan.code && sub.status != SubscriptionStatus::Cancelled =>
            {
                subscription_set_status(&tx, sub.id, change.status).await?
            }
            _ => {
                subscription_change(&tx, tenant_id, &plan.code, change.status, trial_ends_at)
                    .await?
            }
        };
        tenant_set_plan(&tx, tenant_id, &plan.code).await?;
        owner::usage::database_quota_refresh(&tx, Some(tenant_id)).await?;
        audit(
            &tx,
            actor,
            "tenant.subscription_change",
            "tenant",
            &tenant_id.to_string(),
            json!({
                "plan": { "from": tenant.plan_code, "to": plan.code },
                "status": subscription.status,
            }),
        )
        .await?;
        owner_db::commit(tx).await?;
        self.events.changed(tenant_id).await;
        Ok(subscription)
    }
}

/// What an operator may change about a tenant's subscription.
pub struct SubscriptionChange {
    pub plan: String,
    pub status: SubscriptionStatus,
    /// Days of trial from now, for `trialing`.
    pub trial_days: Option<u32>,
}

async fn audit(
    client: &impl tokio_postgres::GenericClient,
    actor: &Actor,
    action: &str,
    target_type: &str,
    target_id: &str,
    details: serde_json::Value,
) -> Result<()> {
    audit::record(
        client,
        actor,
        action,
        Target(target_type, target_id),
        details,
    )
    .await
}
