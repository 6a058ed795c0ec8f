//! The owner database: what the control plane stores about its fleet, and why.
//!
//! - `tenants`: one row per tenant, kept after deletion for the audit trail. The row is a
//!   persisted state machine (`status` + `provisioning_step`) that the provisioner drives.
//! - `tenant_domains`: the hosts that resolve to a tenant; unique across the fleet.
//! - `subscription_plans`, `tenant_subscriptions`, `tenant_usage`: what a tenant may use
//!   and what it did use.
//! - `owner_users`, `owner_sessions`: operators and their sessions.
//! - `database_servers`: where tenant databases live (no credentials).
//! - `system_settings`: installation-wide values, such as the installation id that marks
//!   every database and role we create.
//! - `audit_log`: every operator action and every lifecycle step.
//!
//! All SQL against the owner database lives in this crate, in small functions named
//! resource-first that take any [`tokio_postgres::GenericClient`] (a client or a transaction).
//! No HTTP here.

#[macro_use]
mod text_status;

pub mod audit;
pub mod backups;
pub mod domains;
mod error;
pub mod finder;
pub mod ids;
pub mod keys;
pub mod maintenance;
pub mod migration_runs;
pub mod migrations;
pub mod moves;
pub mod operators;
pub mod plans;
pub mod servers;
pub mod sessions;
pub mod settings;
pub mod subscriptions;
pub mod tenant_migrations;
pub mod tenant_settings;
pub mod tenants;
pub mod usage;

pub use error::{Error, Result};
pub use ids::{DomainName, Email, TenantSlug};
