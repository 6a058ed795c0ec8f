//! `subscription_plans`: what a tenant may use. A NULL limit means unlimited.

use serde::Serialize;
use tokio_postgres::{GenericClient, Row};

use crate::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub code: String,
    pub name: String,
    pub max_users: Option<i32>,
    pub max_storage_bytes: Option<i64>,
    pub max_database_bytes: Option<i64>,
    pub price_cents: i32,
    pub currency: String,
    pub features: serde_json::Value,
    pub active: bool,
}

const COLUMNS: &str = "code, name, max_users, max_storage_bytes, max_database_bytes, \
    price_cents, currency, features, active";

fn from_row(r: &Row) -> Plan {
    Plan {
        code: r.get(0),
        name: r.get(1),
        max_users: r.get(2),
        max_storage_bytes: r.get(3),
        max_database_bytes: r.get(4),
        price_cents: r.get(5),
        currency: r.get(6),
        features: r.get(7),
        active: r.get(8),
    }
}

pub async fn plan_list(client: &impl GenericClient) -> Result<Vec<Plan>> {
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM subscription_plans ORDER BY price_cents, code"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// An active plan by code; an unknown or retired code is [`Error::UnknownPlan`].
pub async fn plan_fetch_active(client: &impl GenericClient, code: &str) -> Result<Plan> {
    client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM subscription_plans WHERE code = $1 AND active"),
            &[&code],
        )
        .await?
        .map(|r| from_row(&r))
        .ok_or_else(|| Error::UnknownPlan(code.to_string()))
}

/// `(max_users, max_storage_bytes)` of a plan, active or not; `None` if unknown.
pub async fn plan_limits(
    client: &impl GenericClient,
    code: &str,
) -> Result<Option<(Option<i32>, Option<i64>)>> {
    Ok(client
        .query_opt(
            "SELECT max_users, max_storage_bytes FROM subscription_plans WHERE code = $1",
            &[&code],
        )
        .await?
        .map(|r| (r.get(0), r.get(1))))
}
