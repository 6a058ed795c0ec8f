//! The services the whole control plane shares, built once per process by
//! `wiring::Services::init` and handed explicitly to whoever needs one. Each has one
//! job:
//!
//! | service | its job |
//! | --- | --- |
//! | [`OwnerDb`] | the owner database: pools, a lock session, the transaction helper |
//! | [`ServerDirectory`] | each database server's admin connection (the registry's URLs, sealed) |
//! | [`TenantAccess`] | tenant credentials sealed and opened, connection settings per role, token keys |
//! | `storage::Storage` | the per-tenant file trees under the storage root |
//! | [`MigrationSource`] | the tenant migrations: built in, plus the set fleet runs recorded in the owner database, so provisioning, fleet runs, status and the dashboard agree in every process |
//! | [`TenantEvents`] | "tenant X changed" announcements, for caches; [`change_feed`] brings those of other processes |
//! | `Tasks` | background work (drives, fleet runs) awaited at shutdown |
//! | [`Traffic`] | the rate of tenant requests the gateway admits, so background jobs yield to it |
//!
//! On top of them, each in its own module: `provisioning::Cluster` (the PostgreSQL
//! server tenants live on), `provisioning::Provisioner` (the tenant lifecycle),
//! `domains::Domains`, `billing::Billing` and `fleet::Fleet`. The HTTP layer, the
//! dashboard and the CLI are thin layers over those.

pub mod change_feed;
mod events;
mod migration_source;
pub mod owner_db;
mod server_directory;
mod tasks;
mod tenant_access;
mod traffic;

pub use events::{Change, Listener, TenantEvents};
pub use migration_source::MigrationSource;
pub use owner_db::OwnerDb;
pub use server_directory::ServerDirectory;
pub use tasks::Tasks;
pub use tenant_access::{Rewrapped, SealedPasswords, TenantAccess, TenantRole};
pub use traffic::Traffic;
