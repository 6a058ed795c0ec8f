//! A tenant's domains: add, remove, make primary. Audited; the gateway forgets the
//! tenant at once (in this process) so changes take effect on the next request.

use owner::DomainName;
use owner::audit::{AuditEntry, audit_insert};
use owner::tenants::TenantStatus;
use serde_json::json;
use uuid::Uuid;

use super::{Actor, Provisioner};
use crate::{Error, Result};

impl Provisioner {
    pub async fn domain_add(
        &self,
        tenant_id: Uuid,
        domain: &str,
        primary: bool,
        actor: &Actor,
    ) -> Result<()> {
        let domain = DomainName::parse(domain)?;
        let mut conn = self.pool().get().await?;
        let tx = conn.transaction().await.map_err(owner::Error::from)?;
        let tenant = owner::tenants::tenant_fetch(&*tx, tenant_id).await?;
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
            DomainName::for_slug(&owner::TenantSlug::parse(&tenant.slug)?, self.base_domain())?;
        if domain.is_within(self.base_domain()) && domain != own_default {
            return Err(owner::Error::InvalidDomain(format!(
                "{domain} is under the base domain {}, where only <slug>.{} names live",
                self.base_domain(),
                self.base_domain()
            ))
            .into());
        }
        owner::domains::domain_insert(&*tx, tenant_id, &domain, false, false).await?;
        if primary {
            owner::domains::domain_set_primary(&*tx, tenant_id, domain.as_str()).await?;
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
        tx.commit().await.map_err(owner::Error::from)?;
        self.tenant_changed(tenant_id);
        Ok(())
    }

    pub async fn domain_remove(&self, tenant_id: Uuid, domain: &str, actor: &Actor) -> Result<()> {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        let mut conn = self.pool().get().await?;
        let tx = conn.transaction().await.map_err(owner::Error::from)?;
        match owner::domains::domain_is_primary(&*tx, tenant_id, &domain).await? {
            None => return Err(owner::Error::NotFound.into()),
            Some(true) => {
                return Err(Error::Conflict(
                    "primary_domain",
                    "this is the tenant's primary domain; make another domain primary first".into(),
                ));
            }
            Some(false) => {}
        }
        owner::domains::domain_delete(&*tx, tenant_id, &domain).await?;
        self.audit_domain(
            &tx,
            actor,
            "tenant.domain.remove",
            tenant_id,
            &domain,
            false,
        )
        .await?;
        tx.commit().await.map_err(owner::Error::from)?;
        self.tenant_changed(tenant_id);
        Ok(())
    }

    pub async fn domain_make_primary(
        &self,
        tenant_id: Uuid,
        domain: &str,
        actor: &Actor,
    ) -> Result<()> {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        let mut conn = self.pool().get().await?;
        let tx = conn.transaction().await.map_err(owner::Error::from)?;
        if !owner::domains::domain_set_primary(&*tx, tenant_id, &domain).await? {
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
        tx.commit().await.map_err(owner::Error::from)?;
        self.tenant_changed(tenant_id);
        Ok(())
    }

    async fn audit_domain(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        actor: &Actor,
        action: &str,
        tenant_id: Uuid,
        domain: &str,
        primary: bool,
    ) -> Result<()> {
        audit_insert(
            &**tx,
            &AuditEntry {
                actor: &actor.label,
                action,
                target_type: "tenant",
                target_id: &tenant_id.to_string(),
                details: json!({ "domain": domain, "primary": primary }),
                ip: actor.ip.as_deref(),
            },
        )
        .await?;
        Ok(())
    }
}
