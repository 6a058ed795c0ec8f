//! Provisioning: tenants are created and deleted by a persisted state machine.
//!
//! The API and the CLI only record intent (a row in `provisioning`, or a move to
//! `deleting`); [`Provisioner::drive`] then walks the tenant forward one idempotent step
//! at a time, recording each in the row. A crash anywhere leaves a row that says how far
//! it got, and the reconciler finishes the job. One driver per tenant at a time, across
//! processes, through an advisory lock in the owner database.
//!
//! Creation:  row_inserted -> roles_created -> database_created -> schema_migrated ->
//!            storage_created -> ready (status active)
//! Deletion:  delete_requested -> database_dropped -> roles_dropped -> storage_removed ->
//!            removed (status deleted; the row stays for the audit trail)

mod cluster;
mod domains;
pub mod faults;
pub mod names;
mod reconciler;

use std::sync::Arc;

use deadpool_postgres::Pool;
use owner::audit::{AuditEntry, audit_insert};
use owner::tenants::{self, NewTenant, Step, Tenant, TenantStatus};
use owner::{DomainName, TenantSlug};
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::Notify;
use tokio_postgres::Client;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

pub use cluster::{Cluster, Sessions, TENANT_MIGRATION_LOCK};
pub use faults::{FaultPoint, Faults};
pub use names::TenantNames;
pub use reconciler::ReconcileReport;

use crate::pg::{Endpoint, connect};
use crate::secrets::{Keyring, random_password};
use crate::{Error, Result};

/// The default plan of a tenant created without one.
pub const DEFAULT_PLAN: &str = "free";
const MAX_EXTRA_DOMAINS: usize = 20;
const MAX_NAME_CHARS: usize = 200;
const PROVISIONER_ACTOR: &str = "system:provisioner";

/// Who asked for an action, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub label: String,
    pub ip: Option<String>,
}

impl Actor {
    pub fn cli() -> Self {
        Self {
            label: "cli".into(),
            ip: None,
        }
    }
}

/// Which of a tenant's two database roles to log in as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantRole {
    Owner,
    Runtime,
}

/// The first user of a new tenant.
#[derive(Debug, Clone)]
pub struct FirstAdmin {
    pub email: String,
    /// None: generate a one-time password.
    pub password: Option<SecretString>,
}

/// A request to create a tenant, as it arrived (validated by [`Provisioner::tenant_create`]).
#[derive(Debug, Clone, Default)]
pub struct CreateTenant {
    pub slug: String,
    pub name: String,
    pub plan: Option<String>,
    pub domains: Vec<String>,
}

pub struct Provisioner {
    pool: Pool,
    owner_pg: Endpoint,
    cluster: Cluster,
    keyring: Arc<Keyring>,
    storage: storage::Storage,
    base_domain: String,
    server_id: String,
    faults: Arc<Faults>,
    nudge: Notify,
    tasks: TaskTracker,
    /// Tenants whose status or domains changed, for caches to forget them.
    changes: tokio::sync::broadcast::Sender<Uuid>,
}

fn secret_aad(id: Uuid, purpose: &str) -> String {
    format!("tenant:{id}:{purpose}")
}

impl Provisioner {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pool: Pool,
        owner_pg: Endpoint,
        cluster: Cluster,
        keyring: Arc<Keyring>,
        storage: storage::Storage,
        base_domain: String,
        server_id: String,
        faults: Arc<Faults>,
    ) -> Self {
        Self {
            pool,
            owner_pg,
            cluster,
            keyring,
            storage,
            base_domain,
            server_id,
            faults,
            nudge: Notify::new(),
            tasks: TaskTracker::new(),
            changes: tokio::sync::broadcast::channel(1024).0,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn owner_endpoint(&self) -> &Endpoint {
        &self.owner_pg
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn storage(&self) -> &storage::Storage {
        &self.storage
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn base_domain(&self) -> &str {
        &self.base_domain
    }

    /// Tenant ids whose status or domains changed in this process.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Uuid> {
        self.changes.subscribe()
    }

    /// Tells caches (the gateway's) that a tenant changed.
    pub fn tenant_changed(&self, id: Uuid) {
        // No receiver (the CLI) is fine.
        let _ = self.changes.send(id);
    }

    /// Wakes the reconciler ahead of its timer.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// Background drives started by the API; awaited at shutdown.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Validates the request and records the intent: the tenant row (status
    /// `provisioning`), its domains and subscription, and the audit entry, in one
    /// transaction. Nothing exists on the server yet; [`Provisioner::drive`] makes it.
    pub async fn tenant_create(&self, req: &CreateTenant, actor: &Actor) -> Result<Tenant> {
        Ok(self.tenant_create_with_admin(req, None, actor).await?.0)
    }

    /// Like [`Provisioner::tenant_create`], also asking for the tenant's first user (an
    /// admin) to be made in its database. Without a password, a one-time password is
    /// generated, returned here once, and must be changed at first login. Only its
    /// argon2 hash is kept, and only until the tenant is active.
    pub async fn tenant_create_with_admin(
        &self,
        req: &CreateTenant,
        admin: Option<&FirstAdmin>,
        actor: &Actor,
    ) -> Result<(Tenant, Option<SecretString>)> {
        use secrecy::ExposeSecret;
        let mut one_time = None;
        let initial_admin = match admin {
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
                        one_time = Some(pw.clone());
                        (pw, true)
                    }
                };
                let hash = tenant::auth::hash_password_async(password.expose_secret().to_string())
                    .await?
                    .map_err(Error::Crypto)?;
                Some(
                    json!({ "email": email.as_str(), "password_hash": hash, "must_change_password": must_change }),
                )
            }
        };
        let tenant = self
            .insert_tenant(req, initial_admin.as_ref(), actor)
            .await?;
        Ok((tenant, one_time))
    }

    async fn insert_tenant(
        &self,
        req: &CreateTenant,
        initial_admin: Option<&serde_json::Value>,
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
        let names = TenantNames::new(self.cluster.prefix(), id);
        let (v1, owner_password_enc) = self.seal_password(id, "db-owner")?;
        let (v2, runtime_password_enc) = self.seal_password(id, "db-runtime")?;
        debug_assert_eq!(v1, v2);

        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await.map_err(owner::Error::from)?;
        owner::plans::plan_fetch_active(&*tx, plan_code).await?;
        let tenant = tenants::tenant_insert(
            &*tx,
            &NewTenant {
                id,
                slug: slug.as_str(),
                name,
                plan_code,
                server_id: &self.server_id,
                db_name: &names.database,
                owner_role: &names.owner_role,
                runtime_role: &names.runtime_role,
                owner_password_enc: &owner_password_enc,
                runtime_password_enc: &runtime_password_enc,
                secret_key_version: v1,
            },
        )
        .await?;
        if let Some(admin) = initial_admin {
            tenants::tenant_set_initial_admin(&*tx, id, admin).await?;
        }
        owner::domains::domain_insert(&*tx, id, &primary, true, true).await?;
        for domain in &extra {
            owner::domains::domain_insert(&*tx, id, domain, false, false).await?;
        }
        owner::subscriptions::subscription_start(&*tx, id, plan_code).await?;
        audit_insert(
            &*tx,
            &AuditEntry {
                actor: &actor.label,
                action: "tenant.create",
                target_type: "tenant",
                target_id: &id.to_string(),
                details: json!({
                    "slug": slug.as_str(), "name": name, "plan": plan_code,
                    "domains": std::iter::once(&primary).chain(&extra).map(DomainName::as_str).collect::<Vec<_>>(),
                }),
                ip: actor.ip.as_deref(),
            },
        )
        .await?;
        tx.commit().await.map_err(owner::Error::from)?;
        self.tenant_changed(id);
        tracing::info!(tenant_id = %id, slug = %slug, "tenant creation requested");
        Ok(tenant)
    }

    fn seal_password(&self, id: Uuid, purpose: &str) -> Result<(i32, Vec<u8>)> {
        use secrecy::ExposeSecret;
        let password = random_password();
        self.keyring.seal(
            password.expose_secret().as_bytes(),
            &secret_aad(id, purpose),
        )
    }

    fn open_password(&self, tenant: &Tenant, purpose: &str) -> Result<SecretString> {
        let blob = match purpose {
            "db-owner" => &tenant.owner_password_enc,
            _ => &tenant.runtime_password_enc,
        };
        self.keyring.open_string(
            tenant.secret_key_version,
            blob,
            &secret_aad(tenant.id, purpose),
        )
    }

    /// The key that signs this tenant's user tokens (and no other tenant's).
    pub fn tenant_token_secret(&self, id: Uuid) -> Result<secrecy::SecretBox<[u8; 32]>> {
        self.keyring.derive(&format!("tenant-jwt-v1:{id}"))
    }

    /// The owner role's password, for migrations.
    pub fn owner_password(&self, tenant: &Tenant) -> Result<SecretString> {
        self.open_password(tenant, "db-owner")
    }

    /// The runtime role's password, for the tenant's pool.
    pub fn runtime_password(&self, tenant: &Tenant) -> Result<SecretString> {
        self.open_password(tenant, "db-runtime")
    }

    /// Where and as whom to reach a tenant's database. `Owner` may change the schema
    /// (migrations); `Runtime` may only read and write rows.
    pub fn tenant_endpoint(&self, tenant: &Tenant, role: TenantRole) -> Result<Endpoint> {
        let (name, password) = match role {
            TenantRole::Owner => (&tenant.owner_role, self.owner_password(tenant)?),
            TenantRole::Runtime => (&tenant.runtime_role, self.runtime_password(tenant)?),
        };
        Ok(self.cluster.endpoint_as(&tenant.db_name, name, &password))
    }

    /// One connection to a tenant's database, outside any pool: for work that visits
    /// each tenant briefly (migrations, checks, metering) and must not keep a pool open.
    pub async fn tenant_connect(&self, tenant: &Tenant, role: TenantRole) -> Result<Client> {
        connect(&self.tenant_endpoint(tenant, role)?).await
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
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await.map_err(owner::Error::from)?;
        let current = tenants::tenant_fetch(&*tx, id).await?;
        let tenant = match tenants::tenant_transition(&*tx, id, from, to, step).await {
            Ok(t) => t,
            Err(owner::Error::Conflict) => {
                return Err(Error::WrongState {
                    id,
                    status: current.status.as_str(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        audit_insert(
            &*tx,
            &AuditEntry {
                actor: &actor.label,
                action,
                target_type: "tenant",
                target_id: &id.to_string(),
                details: json!({ "slug": tenant.slug, "from": current.status, "to": to }),
                ip: actor.ip.as_deref(),
            },
        )
        .await?;
        tx.commit().await.map_err(owner::Error::from)?;
        self.tenant_changed(id);
        tracing::info!(tenant_id = %id, action, "tenant status changed");
        Ok(tenant)
    }

    /// A dedicated owner-database session holding the tenant's driver lock. The lock
    /// lives as long as the session, so a crashed or cancelled driver cannot leak it.
    async fn lock_session(&self) -> Result<Client> {
        let mut config = self.owner_pg.clone();
        // Notice a dead peer in a minute, not in two hours.
        config
            .config_mut()
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(30));
        connect(&config).await
    }

    /// Drives the tenant to its desired state, waiting for any other driver first.
    pub async fn drive(&self, id: Uuid) -> Result<Tenant> {
        let lock = self.lock_session().await?;
        lock.execute(
            "SELECT pg_advisory_lock(hashtextextended('cp-tenant:' || $1, 0))",
            &[&id.to_string()],
        )
        .await?;
        self.drive_locked(id, &lock).await
    }

    /// Drives the tenant unless another driver holds it; `None` when skipped.
    pub async fn try_drive(&self, id: Uuid) -> Result<Option<Tenant>> {
        let lock = self.lock_session().await?;
        let got: bool = lock
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended('cp-tenant:' || $1, 0))",
                &[&id.to_string()],
            )
            .await?
            .get(0);
        if !got {
            return Ok(None);
        }
        self.drive_locked(id, &lock).await.map(Some)
    }

    /// Starts a drive in the background (tracked for shutdown) and returns its handle.
    pub fn spawn_drive(self: &Arc<Self>, id: Uuid) -> tokio::task::JoinHandle<Result<Tenant>> {
        let this = Arc::clone(self);
        self.tasks.spawn(async move { this.drive(id).await })
    }

    async fn drive_locked(&self, id: Uuid, lock: &Client) -> Result<Tenant> {
        let result = self.run_steps(id, lock).await;
        // An injected fault stands for a crash, and a crash records nothing.
        if let Err(e) = &result
            && !matches!(e, Error::InjectedFault(_))
        {
            tracing::warn!(tenant_id = %id, error = %e, "provisioning step failed; the reconciler will retry");
            if let Ok(conn) = self.pool.get().await {
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
                let conn = self.pool.get().await?;
                tenants::tenant_fetch(&**conn, id).await?
            };
            let (status, next) = match (tenant.status, tenant.provisioning_step) {
                (TenantStatus::Provisioning, Step::RowInserted) => {
                    (TenantStatus::Provisioning, Step::RolesCreated)
                }
                (TenantStatus::Provisioning, Step::RolesCreated) => {
                    (TenantStatus::Provisioning, Step::DatabaseCreated)
                }
                (TenantStatus::Provisioning, Step::DatabaseCreated) => {
                    (TenantStatus::Provisioning, Step::SchemaMigrated)
                }
                (TenantStatus::Provisioning, Step::SchemaMigrated) => {
                    (TenantStatus::Provisioning, Step::StorageCreated)
                }
                (TenantStatus::Provisioning, _) => (TenantStatus::Provisioning, Step::Ready),
                (TenantStatus::Deleting, Step::DatabaseDropped) => {
                    (TenantStatus::Deleting, Step::RolesDropped)
                }
                (TenantStatus::Deleting, Step::RolesDropped) => {
                    (TenantStatus::Deleting, Step::StorageRemoved)
                }
                (TenantStatus::Deleting, Step::StorageRemoved) => {
                    (TenantStatus::Deleting, Step::Removed)
                }
                (TenantStatus::Deleting, _) => (TenantStatus::Deleting, Step::DatabaseDropped),
                (TenantStatus::Active | TenantStatus::Suspended | TenantStatus::Deleted, _) => {
                    return Ok(tenant);
                }
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

    /// Performs one step's effect; returns details for the audit entry.
    async fn run_step(
        &self,
        sessions: &mut Sessions,
        tenant: &Tenant,
        step: Step,
    ) -> Result<serde_json::Value> {
        let names = TenantNames {
            database: tenant.db_name.clone(),
            owner_role: tenant.owner_role.clone(),
            runtime_role: tenant.runtime_role.clone(),
        };
        let started = std::time::Instant::now();
        let mut details = json!({});
        match step {
            Step::RolesCreated => {
                let owner_pw = self.open_password(tenant, "db-owner")?;
                let runtime_pw = self.open_password(tenant, "db-runtime")?;
                self.cluster
                    .ensure_roles(sessions, tenant.id, &names, &owner_pw, &runtime_pw)
                    .await?;
                details = json!({ "roles": [names.owner_role, names.runtime_role] });
            }
            Step::DatabaseCreated => {
                self.cluster
                    .ensure_database(sessions, tenant.id, &names, &self.faults)
                    .await?;
                details = json!({ "database": names.database });
            }
            Step::SchemaMigrated => {
                let version = self.cluster.migrate(sessions, &names).await?;
                if let Some(admin) = &tenant.initial_admin {
                    self.cluster
                        .ensure_first_admin(sessions, &names, admin)
                        .await?;
                }
                let conn = self.pool.get().await?;
                tenants::tenant_set_schema_version(&**conn, tenant.id, version).await?;
                details = json!({ "schema_version": version });
            }
            Step::StorageCreated => {
                let tree = self.storage.tenant(&tenant.slug)?;
                tokio::task::spawn_blocking(move || tree.create())
                    .await
                    .map_err(|e| Error::Internal(format!("storage task failed: {e}")))??;
            }
            Step::DatabaseDropped => {
                self.cluster
                    .drop_database(sessions, tenant.id, &names)
                    .await?
            }
            Step::RolesDropped => {
                // Dropping the database again first is a no-op normally, and finishes the
                // job if a lost lock let a create land after the database was dropped.
                self.cluster
                    .drop_database(sessions, tenant.id, &names)
                    .await?;
                self.cluster.drop_roles(sessions, tenant.id, &names).await?
            }
            Step::StorageRemoved => {
                let tree = self.storage.tenant(&tenant.slug)?;
                tokio::task::spawn_blocking(move || tree.remove())
                    .await
                    .map_err(|e| Error::Internal(format!("storage task failed: {e}")))??;
            }
            Step::Ready | Step::Removed | Step::RowInserted | Step::DeleteRequested => {}
        }
        if let Some(map) = details.as_object_mut() {
            map.insert("ms".into(), json!(started.elapsed().as_millis() as u64));
        }
        Ok(details)
    }

    /// Records a finished step (and the final status change) with its audit entry.
    async fn record(
        &self,
        tenant: &Tenant,
        status: TenantStatus,
        step: Step,
        details: serde_json::Value,
    ) -> Result<()> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await.map_err(owner::Error::from)?;
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
                tenants::tenant_transition(&*tx, tenant.id, &[status], TenantStatus::Active, step)
                    .await?;
            }
            Step::Removed => {
                owner::domains::domain_delete_for_tenant(&*tx, tenant.id).await?;
                owner::subscriptions::subscription_cancel_all(&*tx, tenant.id).await?;
                tenants::tenant_transition(&*tx, tenant.id, &[status], TenantStatus::Deleted, step)
                    .await?;
            }
            _ => {
                tenants::tenant_record_step(&*tx, tenant.id, status, step).await?;
            }
        }
        audit_insert(
            &*tx,
            &AuditEntry {
                actor: PROVISIONER_ACTOR,
                action: &format!("tenant.step.{}", step.as_str()),
                target_type: "tenant",
                target_id: &tenant.id.to_string(),
                details,
                ip: None,
            },
        )
        .await?;
        tx.commit().await.map_err(owner::Error::from)?;
        if matches!(step, Step::Ready | Step::Removed) {
            self.tenant_changed(tenant.id);
        }
        tracing::info!(tenant_id = %tenant.id, step = step.as_str(), "provisioning step done");
        Ok(())
    }
}
