//! What a tenant request is served with. The gateway builds it; the handlers here never
//! see another tenant's anything.

use std::sync::Arc;

use uuid::Uuid;

use crate::pool::TenantPool;

#[derive(Clone)]
pub struct TenantContext {
    pub id: Uuid,
    pub slug: String,
    pub pool: TenantPool,
    pub storage: Arc<storage::TenantTree>,
    /// This tenant's token keys (no other tenant's key verifies its tokens).
    pub keys: Arc<crate::auth::TenantKeys>,
    /// What the tenant's plan allows.
    pub limits: Limits,
    /// Its settings and features.
    pub profile: Arc<crate::TenantProfile>,
    /// Its database's schema version as the owner database last recorded it (`None`:
    /// unknown), for code that must also serve a database a fleet migration has not
    /// reached yet.
    pub schema_version: Option<i32>,
    /// Its integrations' vault and the provider client (see [`crate::integrations`]).
    pub integrations: crate::integrations::IntegrationEnv,
    /// Told when a user comes or goes (see [`crate::directory`]).
    pub directory: Arc<dyn crate::directory::UserDirectory>,
    /// This tenant's uploads in flight in this process, shared by all its requests so
    /// parallel uploads cannot pass the storage quota together (see [`crate::ledger`]).
    pub ledger: Arc<crate::ledger::StorageLedger>,
    /// The client's address: the connection's peer, or what a trusted proxy forwarded
    /// (the gateway decides, as for the owner routes). Sign-in throttling counts by it.
    pub client_ip: Option<std::net::IpAddr>,
}

/// Plan limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub max_users: Option<i32>,
    pub max_storage_bytes: Option<i64>,
    /// Largest single upload.
    pub max_file_bytes: Option<u64>,
}

impl TenantContext {
    /// Whether its database has the `roles` table (see `crate::permissions`).
    pub fn has_roles(&self) -> bool {
        self.schema_version
            .is_none_or(|v| v >= crate::permissions::ROLES_SINCE)
    }
}
