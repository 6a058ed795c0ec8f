//! Intent: what callers ask of the lifecycle. Creating a tenant records its row (status
//! `provisioning`), domains, subscription and audit entry in one transaction; deleting,
//! suspending and resuming move its status. Nothing here touches the PostgreSQL server
//! or the storage tree: the driver does.

use std::sync::Arc;

use owner::tenants::{self, InitialAdmin, NewTenant, Step, Tenant, TenantStatus};
use owner::{DomainName, TenantSlug};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::Provisioner;
use super::names::TenantNames;
use crate::audit::{self, Actor, Target};
use crate::services::owner_db;
use crate::{Error, Result};

/// The default plan of a tenant created without one.
pub const DEFAULT_PLAN: &str = "free";
const MAX_EXTRA_DOMAINS: usize = 20;
pub const MAX_NAME_CHARS: usize = 200;

/// The first user of a new tenant.
#[derive(Debug, Clone)]
pub struct FirstAdmin {
    pub email: String,
    /// None: generate a one-time password.
    pub password: Option<SecretString>,
}

/// A request to create a tenant, as it arrived (validated when recorded).
#[derive(Debug, Clone, Default)]
pub struct CreateTenant {
    pub slug: String,
    pub name: String,
    pub plan: Option<String>,
    pub domains: Vec<String>,
    /// The tenant's first user (an admin), made in its database during provisioning.
    pub admin_email: Option<String>,
    /// The admin's password; without one, a one-time password is generated.
    pub admin_password: Option<SecretString>,
}

impl CreateTenant {
    /// The first admin asked for, if any. A password without an email is a mistake,
    /// not a request for no admin.
    fn first_admin(&self) -> Result<Option<FirstAdmin>> {
        match (&self.admin_email, &self.admin_password) {
            (None, Some(_)) => Err(owner::Error::Invalid {
                field: "admin_email",
                reason: "is required when an admin password is given".into(),
            }
            .into()),
            (None, None) => Ok(None),
            (Some(email), password) => Ok(Some(FirstAdmin {
                email: email.clone(),
                password: password.clone(),
            })),
        }
    }
}

/// A recorded creation.
pub struct Created {
    pub tenant: Tenant,
    /// The first admin's generated password, shown once; only its hash is kept.
    pub one_time_password: Option<SecretString>,
}

impl Provisioner {
    /// Records the intent to create a tenant (see [`Provisioner::record_create`]) and
    /// starts its drive in the background: what the API and the dashboard do.
    pub async fn create(
        self: &Arc<Self>,
        req: &CreateTenant,
        actor: &Actor,
    ) -> Result<(Created, JoinHandle<Result<Tenant>>)> {
        let created = self.record_create(req, actor).await?;
        let drive = self.spawn_drive(created.tenant.id);
        Ok((created, drive))
    }

    /// Validates the request and records the intent. Nothing exists on the server yet;
    /// [`Provisioner::drive`] makes it. With an admin but no password, a one-time password
    /// is generated, returned here once, and must be changed at first login.
    pub async fn record_create(&self, req: &CreateTenant, actor: &Actor) -> Result<Created> {
        let mut one_time_password = None;
        let initial_admin = match req.first_admin()? {
            None => None,
            Some(admin) => {
                let email = owner::Email::parse(&admin.email)?;
                let (password, must_change) = match &admin.password {
                    Some(pw) => {
                        crate::auth::check_new_password(pw.expose_secret())?;
                        (pw.clone(), false)
                    }
                    None => {
                        let pw = SecretString::from(tenant::auth::random_token());
                        one_time_password = Some(pw.clone());
                        (pw, true)
                    }
                };
                let hash = tenant::auth::hash_password_async(password.expose_secret().to_string())
                    .await?
                    .map_err(Error::Crypto)?;
                Some(InitialAdmin {
                    email: email.as_str().to_string(),
                    password_hash: hash,
                    must_change_password: must_change,
                })
            }
        };
        let tenant = self
            .insert_tenant(req, initial_admin.as_ref(), actor)
            .await?;
        Ok(Created {
            tenant,
            one_time_password,
        })
    }

    /// [`Provisioner::record_create`] for a tenant without a first admin.
    pub async fn tenant_create(&self, req: &CreateTenant, actor: &Actor) -> Result<Tenant> {
        Ok(self.record_create(req, actor).await?.tenant)
    }

    async fn insert_tenant(
        &self,
        req: &CreateTenant,
        initial_admin: Option<&InitialAdmin>,
        actor: &Actor,
    ) -> Result<Tenant> {
        let slug = TenantSlug::parse(req.slug.trim())?;
        let name = req.name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(owner::Error::Invalid {
                field: "name",
                reason: format!("must be 1 to {MAX_NAME_CHARS} printable characters"),
            }
            .into());
        }
        let plan_code = req.plan.as_deref().map(str::trim).unwrap_or(DEFAULT_PLAN);
        let primary = DomainName::for_slug(&slug, &self.base_domain)?;
        let mut extra: Vec<DomainName> = Vec::new();
        if req.domains.len() > MAX_EXTRA_DOMAINS {
            return Err(owner::Error::Invalid {
                field: "domains",
                reason: format!("at most {MAX_EXTRA_DOMAINS} extra domains"),
            }
            .into());
        }
        for raw in &req.domains {
            let domain = DomainName::parse(raw)?;
            if domain.is_within(&self.base_domain) {
                return Err(owner::Error::InvalidDomain(format!(
                    "{domain} is under the base domain {}, where only <slug>.{} names live",
                    self.base_domain, self.base_domain
                ))
                .into());
            }
            if !extra.contains(&domain) {
                extra.push(domain);
            }
        }

        let id = Uuid::now_v7();
        let names = TenantNames::new(self.servers.prefix(), id);
        let sealed = self.access.seal_new_tenant(id)?;

        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        let plan = owner::plans::plan_fetch_active(&tx, plan_code).await?;
        let server_id = self
            .servers
            .place(&tx, plan.server_group.as_deref())
            .await?;
        let tenant = tenants::tenant_insert(
            &tx,
            &NewTenant {
                id,
                slug: slug.as_str(),
                name,
                plan_code,
                server_id: &server_id,
                db_name: &names.database,
                owner_role: &names.owner_role,
                runtime_role: &names.runtime_role,
                owner_password_enc: &sealed.owner,
                runtime_password_enc: &sealed.runtime,
                secret_key_version: sealed.key_version,
                data_key_enc: sealed.data_key_enc.as_deref().unwrap_or_default(),
            },
        )
        .await?;
        if let Some(admin) = initial_admin {
            tenants::tenant_set_initial_admin(&tx, id, admin).await?;
        }
        owner::domains::domain_insert(&tx, id, &primary, true, true).await?;
        for domain in &extra {
            owner::domains::domain_insert(&tx, id, domain, false, false).await?;
        }
        owner::subscriptions::subscription_start(&tx, id, plan_code).await?;
        audit::record(
            &tx,
            actor,
            "tenant.create",
            Target("tenant", &id.to_string()),
            json!({
                "slug": slug.as_str(), "name": name, "plan": plan_code,
                "domains": std::iter::once(&primary).chain(&extra).map(DomainName::as_str).collect::<Vec<_>>(),
            }),
        )
        .await?;
        owner_db::commit(tx).await?;
        self.events.changed(id).await;
        tracing::info!(tenant_id = %id, slug = %slug, "tenant creation requested");
        Ok(tenant)
    }

    /// Records the intent to delete (see [`Provisioner::tenant_delete`]) and starts the
    /// drive that carries it out: what the API and the dashboard do.
    pub async fn delete(
        self: &Arc<Self>,
        id: Uuid,
        actor: &Actor,
    ) -> Result<(Tenant, JoinHandle<Result<Tenant>>)> {
        let tenant = self.tenant_delete(id, actor).await?;
        let drive = self.spawn_drive(id);
        Ok((tenant, drive))
    }

    /// Records the intent to delete: the tenant stops being served at once and the
    /// reverse state machine removes its database, roles and files.
    pub async fn tenant_delete(&self, id: Uuid, actor: &Actor) -> Result<Tenant> {
        self.transition(
            id,
            &[
                TenantStatus::Provisioning,
                TenantStatus::Active,
                TenantStatus::Suspended,
            ],
            TenantStatus::Deleting,
            Step::DeleteRequested,
            "tenant.delete",
            actor,
        )
        .await
    }

    pub async fn tenant_suspend(&self, id: Uuid, actor: &Actor) -> Result<Tenant> {
        self.transition(
            id,
            &[TenantStatus::Active],
            TenantStatus::Suspended,
            Step::Ready,
            "tenant.suspend",
            actor,
        )
        .await
    }

    pub async fn tenant_resume(&self, id: Uuid, actor: &Actor) -> Result<Tenant> {
        self.transition(
            id,
            &[TenantStatus::Suspended],
            TenantStatus::Active,
            Step::Ready,
            "tenant.resume",
            actor,
        )
        .await
    }

    async fn transition(
        &self,
        id: Uuid,
        from: &[TenantStatus],
        to: TenantStatus,
        step: Step,
        action: &str,
        actor: &Actor,
    ) -> Result<Tenant> {
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        let current = tenants::tenant_fetch(&tx, id).await?;
        // A restore swaps the tenant's database and files: nothing else changes it meanwhile.
        super::maintenance::refuse_during_operation(&current)?;
        let tenant = match tenants::tenant_transition(&tx, id, from, to, step).await {
            Ok(t) => t,
            Err(owner::Error::Conflict) => {
                return Err(Error::WrongState {
                    id,
                    status: current.status.as_str(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        audit::record(
            &tx,
            actor,
            action,
            Target("tenant", &id.to_string()),
            json!({ "slug": tenant.slug, "from": current.status, "to": to }),
        )
        .await?;
        owner_db::commit(tx).await?;
        self.events.changed(id).await;
        tracing::info!(tenant_id = %id, action, "tenant status changed");
        Ok(tenant)
    }
}
