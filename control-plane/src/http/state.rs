//! The state every handler sees: the services, plus what only the web layer needs.

use std::sync::Arc;

use crate::auth::OwnerTokens;
use crate::backups::Backups;
use crate::billing::Billing;
use crate::config::Config;
use crate::customisation::Customiser;
use crate::domains::Domains;
use crate::fleet::Fleet;
use crate::gateway::{ConnectionPlan, Gateway};
use crate::metering::Metering;
use crate::provisioning::Provisioner;
use crate::services::{MigrationSource, OwnerDb, Tasks};
use crate::wiring::Services;

/// Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub owner: OwnerDb,
    pub provisioner: Arc<Provisioner>,
    pub domains: Arc<Domains>,
    pub billing: Arc<Billing>,
    pub customiser: Arc<Customiser>,
    pub keys: Arc<crate::keys::Keys>,
    pub finder: Arc<crate::finder::Finder>,
    pub fleet: Fleet,
    /// The tenant migrations (the dashboard shows how far each tenant is from them).
    pub migrations: Arc<MigrationSource>,
    /// Operator session tokens.
    pub tokens: Arc<OwnerTokens>,
    /// Host -> tenant -> pool, for requests on tenant domains.
    pub gateway: Arc<Gateway>,
    /// Usage sampling; `sample_once` takes a sample now.
    pub metering: Arc<Metering>,
    pub backups: Arc<Backups>,
    /// The database servers tenants live on.
    pub servers: Arc<crate::provisioning::Servers>,
    /// Background work (backups, restores started over HTTP) awaited at shutdown.
    pub tasks: Tasks,
    /// Whether the owner database's change feed is listening (see `services::change_feed`).
    pub change_feed: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// The web state over `services`, with a gateway (holding `plan`'s connections)
    /// and metering of its own.
    pub fn new(
        services: &Services,
        tokens: OwnerTokens,
        plan: &ConnectionPlan,
        change_feed: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let gateway = Gateway::new(
            &services.config,
            plan,
            crate::gateway::Backends {
                owner: services.owner.clone(),
                access: Arc::clone(&services.access),
                storage: services.storage.clone(),
                directory: services.email_index.clone(),
                caller: services.provider_client.clone(),
            },
            &services.events,
            services.traffic.clone(),
        );
        let metering = Arc::new(
            Metering::new(
                services.owner.clone(),
                Arc::clone(&services.access),
                services.storage.clone(),
                Arc::clone(&gateway),
                services.config.metering_concurrency,
            )
            .with_retention_days(services.config.usage_retention_days),
        );
        Self {
            config: Arc::clone(&services.config),
            owner: services.owner.clone(),
            provisioner: Arc::clone(&services.provisioner),
            domains: Arc::clone(&services.domains),
            billing: Arc::clone(&services.billing),
            customiser: Arc::clone(&services.customiser),
            keys: Arc::clone(&services.keys),
            finder: Arc::clone(&services.finder),
            fleet: services.fleet.clone(),
            migrations: Arc::clone(&services.migrations),
            tokens: Arc::new(tokens),
            gateway,
            metering,
            backups: Arc::clone(&services.backups),
            servers: Arc::clone(&services.servers),
            tasks: services.tasks.clone(),
            change_feed,
        }
    }
}
