//! A tenant's domains: add, remove, make primary. Audited; a change is announced
//! ([`TenantEvents`]) so the gateway forgets the tenant and the change takes effect on
//! the next request.

use owner::DomainName;
use owner::tenants::TenantStatus;
use serde_json::json;
use uuid::Uuid;

use crate::audit::{self, Actor, Target};
use crate::services::{OwnerDb, TenantEvents, owner_db};
use crate::{Error, Result};

pub struct Domains {
    owner: OwnerDb,
    events: TenantEvents,
    /// Names under it belong to tenants by slug only (`<slug>.<base_domain>`).
    base_domain: String,
}

impl Domains {
    pub fn new(owner: OwnerDb, events: TenantEvents, base_domain: String) -> Self {
        Self {
            owner,
            events,
            base_domain,
        }
    }

    pub fn base_domain(&self) -> &str {
        &self.base_domain
    }

    pub async fn add(
        &self,
        tenant_id: Uuid,
        domain: &str,
        primary: bool,
        actor: &Actor,
    ) -> Result<()> {
        let domain = DomainName::parse(domain)?;
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        let tenant = owner::tenants::tenant_fetch(&tx, tenant_id).await?;
        if matches!(
            tenant.status,
            TenantStatus::Deleting | TenantStatus::Deleted
        ) {
            return Err(Error::WrongState {
                id: tenant_id,
                status: tenant.status.as_str(),
            });
        }
        let own_default =
            DomainName::for_slug(&owner::TenantSlug::parse(&tenant.slug)?, &self.base_domain)?;
        if domain.is_within(&self.base_domain) && domain != own_default {
            return Err(owner::Error::InvalidDomain(format!(
                "{domain} is under the base domain {}, where only <slug>.{} names live",
                &self.base_domain, &self.base_domain
            ))
            .into());
        }
        owner::domains::domain_insert(&tx, tenant_id, &domain, false, false).await?;
        if primary {
            owner::domains::domain_set_primary(&tx, tenant_id, domain.as_str()).await?;
        }
        self.audit_domain(
            &tx,
            actor,
            "tenant.domain.add",
            tenant_id,
            domain.as_str(),
            primary,
        )
        .await?;
        owner_db::commit(tx).await?;
        self.events.changed(tenant_id).await;
        Ok(())
    }

    pub async fn remove(&self, tenant_id: Uuid, domain: &str, actor: &Actor) -> Result<()> {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        match owner::domains::domain_is_primary(&tx, tenant_id, &domain).await? {
            None => return Err(owner::Error::NotFound.into()),
            Some(true) => {
                return Err(Error::Conflict(
                    "primary_domain",
                    "this is the tenant's primary domain; make another domain primary first".into(),
                ));
            }
            Some(false) => {}
        }
        owner::domains::domain_delete(&tx, tenant_id, &domain).await?;
        self.audit_domain(
            &tx,
            actor,
            "tenant.domain.remove",
            tenant_id,
            &domain,
            false,
        )
        .await?;
        owner_db::commit(tx).await?;
        self.events.changed(tenant_id).await;
        Ok(())
    }

    pub async fn make_primary(&self, tenant_id: Uuid, domain: &str, actor: &Actor) -> Result<()> {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        if !owner::domains::domain_set_primary(&tx, tenant_id, &domain).await? {
            return Err(owner::Error::NotFound.into());
        }
        self.audit_domain(
            &tx,
            actor,
            "tenant.domain.primary",
            tenant_id,
            &domain,
            true,
        )
        .await?;
        owner_db::commit(tx).await?;
        self.events.changed(tenant_id).await;
        Ok(())
    }

    async fn audit_domain(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        actor: &Actor,
        action: &str,
        tenant_id: Uuid,
        domain: &str,
        primary: bool,
    ) -> Result<()> {
        audit::record(
            tx,
            actor,
            action,
            Target("tenant", &tenant_id.to_string()),
            json!({ "domain": domain, "primary": primary }),
        )
        .await
    }
}
