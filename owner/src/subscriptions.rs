//! `tenant_subscriptions`: which plan a tenant is on, and in what state of billing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Trialing,
    Active,
    PastDue,
    Cancelled,
}

impl SubscriptionStatus {
    pub const ALL: [Self; 4] = [Self::Trialing, Self::Active, Self::PastDue, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub plan_code: String,
    pub status: SubscriptionStatus,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, tenant_id, plan_code, status, trial_ends_at, current_period_start, \
    current_period_end, created_at, updated_at";

fn from_row(r: &Row) -> Result<Subscription> {
    let status: String = r.try_get(3)?;
    Ok(Subscription {
        id: r.try_get(0)?,
        tenant_id: r.try_get(1)?,
        plan_code: r.try_get(2)?,
        status: SubscriptionStatus::parse(&status).ok_or_else(|| Error::Invalid {
            field: "tenant_subscriptions.status",
            reason: status.clone(),
        })?,
        trial_ends_at: r.try_get(4)?,
        current_period_start: r.try_get(5)?,
        current_period_end: r.try_get(6)?,
        created_at: r.try_get(7)?,
        updated_at: r.try_get(8)?,
    })
}

/// A tenant's subscriptions, newest first (the first is the current one).
pub async fn subscription_list(
    client: &impl GenericClient,
    tenant_id: Uuid,
) -> Result<Vec<Subscription>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM tenant_subscriptions WHERE tenant_id = $1 \
                 ORDER BY created_at DESC, id DESC"
            ),
            &[&tenant_id],
        )
        .await?;
    rows.iter().map(from_row).collect()
}

/// Moves a tenant to another plan: the open subscription ends (cancelled) and a new one
/// starts with `status`. Run it in a transaction with the tenant row's plan update.
pub async fn subscription_change(
    client: &impl GenericClient,
    tenant_id: Uuid,
    plan_code: &str,
    status: SubscriptionStatus,
    trial_ends_at: Option<DateTime<Utc>>,
) -> Result<Subscription> {
    subscription_cancel_all(client, tenant_id).await?;
    let row = client
        .query_one(
            &format!(
                "INSERT INTO tenant_subscriptions (id, tenant_id, plan_code, status, trial_ends_at, \
                 current_period_end) VALUES ($1, $2, $3, $4, $5, now() + interval '1 month') \
                 RETURNING {COLUMNS}"
            ),
            &[&Uuid::now_v7(), &tenant_id, &plan_code, &status.as_str(), &trial_ends_at],
        )
        .await
        .map_err(|e| match Error::from(e) {
            Error::UnknownPlan(_) => Error::UnknownPlan(plan_code.to_string()),
            other => other,
        })?;
    from_row(&row)
}

/// Sets the billing status of the tenant's open subscription (same plan).
pub async fn subscription_set_status(
    client: &impl GenericClient,
    id: Uuid,
    status: SubscriptionStatus,
) -> Result<Subscription> {
    let row = client
        .query_opt(
            &format!(
                "UPDATE tenant_subscriptions SET status = $2, updated_at = now() WHERE id = $1 \
                 RETURNING {COLUMNS}"
            ),
            &[&id, &status.as_str()],
        )
        .await?
        .ok_or(Error::NotFound)?;
    from_row(&row)
}

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
