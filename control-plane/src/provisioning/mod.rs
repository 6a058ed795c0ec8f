//! Provisioning: tenants are created and deleted by a persisted state machine.
//!
//! The API, the dashboard and the CLI only record intent ([`intent`]: a row in
//! `provisioning`, or a move to `deleting`); the driver ([`driver`]) then walks the tenant
//! forward one idempotent step at a time ([`steps`]), recording each in the row. A crash
//! anywhere leaves a row that says how far it got, and the reconciler finishes the job.
//! One driver per tenant at a time, across processes, through an advisory lock in the
//! owner database.
//!
//! Creation:  row_inserted -> roles_created -> database_created -> schema_migrated ->
//!            storage_created -> ready (status active)
//! Deletion:  delete_requested -> database_dropped -> roles_dropped -> storage_removed ->
//!            removed (status deleted; the row stays for the audit trail)

mod cluster;
mod credentials;
mod driver;
pub mod faults;
mod intent;
pub mod maintenance;
pub mod names;
mod reconciler;
pub mod servers;
mod steps;

use std::sync::Arc;

pub use cluster::{Cluster, Sessions, TENANT_MIGRATION_LOCK};
pub use faults::{FaultPoint, Faults};
pub use intent::{CreateTenant, Created, DEFAULT_PLAN, FirstAdmin, MAX_NAME_CHARS};
pub use names::TenantNames;
pub use reconciler::ReconcileReport;
pub use servers::{AddServer, ClusterSettings, ServerReport, Servers};

use crate::services::{OwnerDb, Tasks, TenantAccess, TenantEvents};

/// The tenant lifecycle. Built once by `Services::init`.
pub struct Provisioner {
    owner: OwnerDb,
    access: Arc<TenantAccess>,
    servers: Arc<Servers>,
    storage: storage::Storage,
    events: TenantEvents,
    /// Where background drives run, so shutdown waits for them.
    tasks: Tasks,
    faults: Arc<Faults>,
    /// New tenants get `<slug>.<base_domain>` as their primary domain.
    base_domain: String,
}

impl Provisioner {
    /// Tenant credentials, for work beside provisioning (moves).
    pub fn access(&self) -> &Arc<TenantAccess> {
        &self.access
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "each argument is a service it uses; a bag of them would hide which"
    )]
    pub fn new(
        owner: OwnerDb,
        access: Arc<TenantAccess>,
        servers: Arc<Servers>,
        storage: storage::Storage,
        events: TenantEvents,
        tasks: Tasks,
        faults: Arc<Faults>,
        base_domain: String,
    ) -> Self {
        Self {
            owner,
            access,
            servers,
            storage,
            events,
            tasks,
            faults,
            base_domain,
        }
    }
}
