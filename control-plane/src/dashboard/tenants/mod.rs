//! Tenants in the dashboard: the list, the create form, a tenant's page and its
//! actions.

mod actions;
mod backups;
mod create;
mod detail;
mod list;

pub use actions::{
    delete, domain_add, domain_primary, domain_remove, feature, maintenance_off, maintenance_on,
    move_server, resume, settings, subscription, suspend,
};
pub use backups::{backup_now, restore};
pub use create::{create, new_form};
pub use detail::{detail, usage_totals};
pub use list::list;
