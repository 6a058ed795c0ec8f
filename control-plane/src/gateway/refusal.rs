//! Why a tenant request could not be served. The web layer turns a refusal into the
//! error envelope (`http::error`).

use axum::http::StatusCode;

#[derive(Debug)]
pub enum Refusal {
    /// No live tenant is served on this host.
    UnknownTenant,
    Suspended,
    Provisioning,
    /// The tenant is in maintenance (an operator's, or an operation's such as a restore).
    Maintenance,
    /// The tenant is in maintenance that still serves reads, and this is a write.
    MaintenanceWrites,
    /// The tenant's database is over its plan's `max_database_bytes`, and this request
    /// could grow it.
    DatabaseQuota,
    /// The owner database cannot be asked and nothing is known of the host.
    OwnerUnavailable,
    /// The tenant's pool could not be built (the detail is for the log).
    TenantUnavailable(String),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::UnknownTenant => StatusCode::NOT_FOUND,
            Refusal::Suspended => StatusCode::FORBIDDEN,
            Refusal::DatabaseQuota => StatusCode::INSUFFICIENT_STORAGE,
            Refusal::Provisioning
            | Refusal::Maintenance
            | Refusal::MaintenanceWrites
            | Refusal::OwnerUnavailable
            | Refusal::TenantUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownTenant => "unknown_tenant",
            Refusal::Suspended => "tenant_suspended",
            Refusal::Provisioning => "tenant_provisioning",
            Refusal::Maintenance | Refusal::MaintenanceWrites => "tenant_maintenance",
            Refusal::DatabaseQuota => "database_quota",
            Refusal::OwnerUnavailable => "owner_unavailable",
            Refusal::TenantUnavailable(_) => "tenant_unavailable",
        }
    }

    /// What the client is told (never the detail of an internal failure).
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::UnknownTenant => "no tenant is served on this host",
            Refusal::Suspended => "this tenant is suspended",
            Refusal::Provisioning => "this tenant is still being set up; retry shortly",
            Refusal::Maintenance => "this tenant is in maintenance; retry shortly",
            Refusal::MaintenanceWrites => {
                "this tenant is in maintenance: reads are served, changes are not; retry shortly"
            }
            Refusal::DatabaseQuota => {
                "this tenant's database is over its plan's size limit: reads and deletions are served, changes are not; delete data or upgrade the plan"
            }
            Refusal::OwnerUnavailable => "tenant routing is unavailable; retry shortly",
            Refusal::TenantUnavailable(_) => "this tenant's database is unavailable; retry shortly",
        }
    }
}
