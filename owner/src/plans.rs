//! `subscription_plans`: what a tenant may use. A NULL limit means unlimited.

use serde::{Deserialize, Serialize};
use tokio_postgres::{GenericClient, Row};

use crate::{Error, Result};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// Its tenants go to the servers of this group (none: to servers without a group).
    pub server_group: Option<String>,
}

const COLUMNS: &str = "code, name, max_users, max_storage_bytes, max_database_bytes, \
    price_cents, currency, features, active, server_group";

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
        server_group: r.get(9),
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

/// An active plan by code; an unknown or retired code is [`Error::UnknownPlan`], which
/// names the active plans.
pub async fn plan_fetch_active(client: &impl GenericClient, code: &str) -> Result<Plan> {
    if let Some(row) = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM subscription_plans WHERE code = $1 AND active"),
            &[&code],
        )
        .await?
    {
        return Ok(from_row(&row));
    }
    let active: Vec<String> = client
        .query(
            "SELECT code FROM subscription_plans WHERE active ORDER BY price_cents, code",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Err(Error::UnknownPlan(format!(
        "{code:?} (active plans: {})",
        active.join(", ")
    )))
}

/// `(max_users, max_storage_bytes)` of a plan, active or not; `None` if unknown.
/// What the gateway applies of a plan.
#[derive(Debug, Clone, Default)]
pub struct PlanTerms {
    pub max_users: Option<i32>,
    pub max_storage_bytes: Option<i64>,
    pub features: Vec<String>,
}

pub async fn plan_terms(client: &impl GenericClient, code: &str) -> Result<Option<PlanTerms>> {
    let Some(row) = client
        .query_opt(
            "SELECT max_users, max_storage_bytes, features FROM subscription_plans WHERE code = $1",
            &[&code],
        )
        .await?
    else {
        return Ok(None);
    };
    let features: serde_json::Value = row.get(2);
    Ok(Some(PlanTerms {
        max_users: row.get(0),
        max_storage_bytes: row.get(1),
        features: serde_json::from_value(features).unwrap_or_default(),
    }))
}

/// What an operator may set on a plan. The code is fixed once a plan exists: tenants and
/// subscriptions point at it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanFields {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Unlimited when absent or null.
    #[schema(minimum = 1)]
    pub max_users: Option<i32>,
    #[schema(minimum = 0)]
    pub max_storage_bytes: Option<i64>,
    #[schema(minimum = 0)]
    pub max_database_bytes: Option<i64>,
    #[schema(minimum = 0)]
    pub price_cents: i32,
    /// A three-letter ISO code (default USD).
    #[serde(default = "default_currency")]
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default = "default_active")]
    pub active: bool,
    /// Pins the plan's new tenants to the servers of this group.
    #[serde(default)]
    #[schema(pattern = "^[a-z][a-z0-9-]{0,39}$")]
    pub server_group: Option<String>,
}

fn default_currency() -> String {
    "USD".into()
}

fn default_active() -> bool {
    true
}

impl PlanFields {
    /// Checks the values a form or a JSON body may get wrong, naming the field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str, reason: &str| Error::Invalid {
            field,
            reason: reason.to_string(),
        };
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(invalid("name", "must be 1 to 100 characters"));
        }
        if self.max_users.is_some_and(|n| n < 1) {
            return Err(invalid(
                "max_users",
                "must be at least 1 (or empty for unlimited)",
            ));
        }
        if self.max_storage_bytes.is_some_and(|n| n < 0) {
            return Err(invalid("max_storage_bytes", "must not be negative"));
        }
        if self.max_database_bytes.is_some_and(|n| n < 0) {
            return Err(invalid("max_database_bytes", "must not be negative"));
        }
        if self.price_cents < 0 {
            return Err(invalid("price_cents", "must not be negative"));
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(invalid(
                "currency",
                "must be a three-letter ISO code such as USD",
            ));
        }
        if self
            .server_group
            .as_deref()
            .is_some_and(|g| !crate::servers::valid_group(g))
        {
            return Err(invalid(
                "server_group",
                "a lowercase letter, then lowercase letters, digits or '-', at most 40",
            ));
        }
        if !self
            .features
            .iter()
            .all(|f| crate::tenant_settings::valid_feature(f))
        {
            return Err(invalid(
                "features",
                "each feature is 1 to 40 of a-z, 0-9, - and _",
            ));
        }
        Ok(())
    }
}

/// A plan code: the same shape as a slug, but short.
pub fn plan_code_check(code: &str) -> Result<()> {
    let ok = !code.is_empty()
        && code.len() <= 32
        && code.starts_with(|c: char| c.is_ascii_lowercase())
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            field: "code",
            reason: "must be 1 to 32 of a-z, 0-9 and -, starting with a letter".into(),
        })
    }
}

pub async fn plan_fetch(client: &impl GenericClient, code: &str) -> Result<Plan> {
    client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM subscription_plans WHERE code = $1"),
            &[&code],
        )
        .await?
        .map(|r| from_row(&r))
        .ok_or(Error::NotFound)
}

pub async fn plan_insert(client: &impl GenericClient, code: &str, f: &PlanFields) -> Result<Plan> {
    write_plan(
        client,
        "INSERT INTO subscription_plans (code, name, max_users, max_storage_bytes, \
         max_database_bytes, price_cents, currency, features, active, server_group) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        code,
        f,
    )
    .await?
    .ok_or(Error::NotFound)
}

pub async fn plan_update(client: &impl GenericClient, code: &str, f: &PlanFields) -> Result<Plan> {
    write_plan(
        client,
        "UPDATE subscription_plans SET name = $2, max_users = $3, max_storage_bytes = $4, \
         max_database_bytes = $5, price_cents = $6, currency = $7, features = $8, \
         active = $9, server_group = $10, updated_at = now() WHERE code = $1",
        code,
        f,
    )
    .await?
    .ok_or(Error::NotFound)
}

/// Runs an insert or update that takes the plan's fields as `$1..$10` (code first).
async fn write_plan(
    client: &impl GenericClient,
    statement: &str,
    code: &str,
    f: &PlanFields,
) -> Result<Option<Plan>> {
    let features = serde_json::json!(f.features);
    Ok(client
        .query_opt(
            &format!("{statement} RETURNING {COLUMNS}"),
            &[
                &code,
                &f.name.trim(),
                &f.max_users,
                &f.max_storage_bytes,
                &f.max_database_bytes,
                &f.price_cents,
                &f.currency,
                &features,
                &f.active,
                &f.server_group,
            ],
        )
        .await?
        .map(|r| from_row(&r)))
}

/// Living tenants per plan code.
pub async fn plan_tenant_counts(
    client: &impl GenericClient,
) -> Result<std::collections::HashMap<String, i64>> {
    let rows = client
        .query(
            "SELECT plan_code, count(*) FROM tenants WHERE status <> 'deleted' GROUP BY plan_code",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
