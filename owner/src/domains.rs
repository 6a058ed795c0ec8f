//! `tenant_domains`: the hosts a tenant is served on. A domain belongs to at most one
//! tenant (primary key); each tenant has at most one primary domain.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::{DomainName, Result};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantDomain {
    pub domain: String,
    pub tenant_id: Uuid,
    pub is_primary: bool,
    pub verified: bool,
    pub created_at: DateTime<Utc>,
}

pub async fn domain_insert(
    client: &impl GenericClient,
    tenant_id: Uuid,
    domain: &DomainName,
    is_primary: bool,
    verified: bool,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO tenant_domains (domain, tenant_id, is_primary, verified) VALUES ($1, $2, $3, $4)",
            &[&domain.as_str(), &tenant_id, &is_primary, &verified],
        )
        .await?;
    Ok(())
}

pub async fn domain_list_for_tenant(
    client: &impl GenericClient,
    tenant_id: Uuid,
) -> Result<Vec<TenantDomain>> {
    let rows = client
        .query(
            "SELECT domain, tenant_id, is_primary, verified, created_at FROM tenant_domains \
             WHERE tenant_id = $1 ORDER BY is_primary DESC, domain",
            &[&tenant_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TenantDomain {
            domain: r.get(0),
            tenant_id: r.get(1),
            is_primary: r.get(2),
            verified: r.get(3),
            created_at: r.get(4),
        })
        .collect())
}

/// Releases every domain of a tenant (at the end of its deletion), so they can be reused.
pub async fn domain_delete_for_tenant(client: &impl GenericClient, tenant_id: Uuid) -> Result<u64> {
    Ok(client
        .execute(
            "DELETE FROM tenant_domains WHERE tenant_id = $1",
            &[&tenant_id],
        )
        .await?)
}

/// Removes one non-primary domain of a tenant; true if it was removed.
pub async fn domain_delete(
    client: &impl GenericClient,
    tenant_id: Uuid,
    domain: &str,
) -> Result<bool> {
    Ok(client
        .execute(
            "DELETE FROM tenant_domains WHERE tenant_id = $1 AND domain = $2 AND NOT is_primary",
            &[&tenant_id, &domain],
        )
        .await?
        == 1)
}

/// Makes `domain` the tenant's only primary domain. False if the tenant has no such domain.
pub async fn domain_set_primary(
    client: &impl GenericClient,
    tenant_id: Uuid,
    domain: &str,
) -> Result<bool> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM tenant_domains WHERE tenant_id = $1 AND domain = $2",
            &[&tenant_id, &domain],
        )
        .await?
        .is_some();
    if !exists {
        return Ok(false);
    }
    client
        .execute(
            "UPDATE tenant_domains SET is_primary = false WHERE tenant_id = $1 AND is_primary",
            &[&tenant_id],
        )
        .await?;
    client
        .execute(
            "UPDATE tenant_domains SET is_primary = true WHERE tenant_id = $1 AND domain = $2",
            &[&tenant_id, &domain],
        )
        .await?;
    Ok(true)
}

pub async fn domain_is_primary(
    client: &impl GenericClient,
    tenant_id: Uuid,
    domain: &str,
) -> Result<Option<bool>> {
    Ok(client
        .query_opt(
            "SELECT is_primary FROM tenant_domains WHERE tenant_id = $1 AND domain = $2",
            &[&tenant_id, &domain],
        )
        .await?
        .map(|r| r.get(0)))
}
