//! `tenant_subscriptions`: which plan a tenant is on, and in what state of billing.

use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::Result;

/// Starts a tenant's first subscription, active from now.
pub async fn subscription_start(
    client: &impl GenericClient,
    tenant_id: Uuid,
    plan_code: &str,
) -> Result<Uuid> {
    let id = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO tenant_subscriptions (id, tenant_id, plan_code, status, current_period_end) \
             VALUES ($1, $2, $3, 'active', now() + interval '1 month')",
            &[&id, &tenant_id, &plan_code],
        )
        .await?;
    Ok(id)
}

/// Cancels every open subscription of a tenant (when it is deleted).
pub async fn subscription_cancel_all(client: &impl GenericClient, tenant_id: Uuid) -> Result<()> {
    client
        .execute(
            "UPDATE tenant_subscriptions SET status = 'cancelled', updated_at = now() \
             WHERE tenant_id = $1 AND status <> 'cancelled'",
            &[&tenant_id],
        )
        .await?;
    Ok(())
}
