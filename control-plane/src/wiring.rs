//! Wiring: every service built once per process, in dependency order, and shared by
//! the service and every CLI command. The only module that knows them all.

use std::sync::Arc;

use crate::backups::Backups;
use crate::billing::Billing;
use crate::config::Config;
use crate::customisation::Customiser;
use crate::domains::Domains;
use crate::finder::{EmailIndex, Finder};
use crate::fleet::Fleet;
use crate::keys::Keys;
use crate::mailer::Mailer;
use crate::provisioning::{ClusterSettings, Faults, Provisioner, Servers};
use crate::secrets::Keyring;
use crate::{Error, Result, installation, pg};

use crate::services::{
    MigrationSource, OwnerDb, ServerDirectory, Tasks, TenantAccess, TenantEvents, Traffic,
};

/// Everything the service and the CLI share. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    pub owner: OwnerDb,
    pub keyring: Arc<Keyring>,
    pub access: Arc<TenantAccess>,
    pub storage: storage::Storage,
    pub migrations: Arc<MigrationSource>,
    pub events: TenantEvents,
    pub tasks: Tasks,
    /// The database servers tenants live on, each with its cluster.
    pub servers: Arc<Servers>,
    pub provisioner: Arc<Provisioner>,
    pub domains: Arc<Domains>,
    pub billing: Arc<Billing>,
    pub customiser: Arc<Customiser>,
    pub keys: Arc<Keys>,
    /// Where the tenant API reports users coming and going (see `finder`).
    pub email_index: Arc<dyn tenant::directory::UserDirectory>,
    pub finder: Arc<Finder>,
    /// Calls integration providers for the tenant API.
    pub provider_client: Arc<dyn tenant::integrations::Caller>,
    /// The scheduled integration sync.
    pub integration_sync: Arc<crate::integration_sync::IntegrationSync>,
    pub fleet: Fleet,
    pub backups: Arc<Backups>,
    pub traffic: Traffic,
}

impl Services {
    /// Prepares the owner database (created if missing, migrated, hardened), checks this
    /// process's key and storage root against the installation's, and builds the
    /// services. Shared by `serve` and every CLI command.
    pub async fn init(mut config: Config, faults: Arc<Faults>) -> Result<Self> {
        let owner_pg = config.owner_endpoint()?;
        let admin_pg = config.admin_endpoint()?;
        let owner_db = owner_pg
            .config()
            .get_dbname()
            .ok_or_else(|| Error::Config("invalid setting DATABASE_URL: names no database".into()))?
            .to_string();
        pg::ensure_owner_database(&owner_pg, &admin_pg, &owner_db).await?;
        let owner = OwnerDb::new(owner_pg)?;
        {
            let mut conn = owner.conn().await?;
            owner::migrations::run(&mut conn).await?;
        }
        pg::harden_server(&admin_pg, Some(&owner_db)).await?;
        // Relative roots would follow the current directory; the recorded one must not.
        std::fs::create_dir_all(&config.storage_root).map_err(|e| {
            Error::Config(format!(
                "invalid setting CP_STORAGE_ROOT: cannot create {}: {e}",
                config.storage_root.display()
            ))
        })?;
        config.storage_root = installation::absolute(&config.storage_root);
        let keyring = {
            let conn = owner.conn().await?;
            installation::refuse_second_dev_key(&**conn, &config.master_key).await?;
            let keyring = Arc::new(Keyring::load(&config.master_key)?);
            installation::verify(&**conn, &keyring, &config.master_key, &config.storage_root)
                .await?;
            keyring
        };
        let (host, port) = pg::server_address(admin_pg.config());
        let installation_id = {
            let conn = owner.conn().await?;
            owner::servers::server_upsert(&**conn, owner::servers::DEFAULT_SERVER, &host, port)
                .await?;
            owner::settings::installation_id(&**conn).await?
        };
        let migrations = Arc::new(
            MigrationSource::load(owner.clone(), config.tenant_migrations_dir.clone()).await?,
        );
        let directory = Arc::new(ServerDirectory::new(
            owner.clone(),
            Arc::clone(&keyring),
            admin_pg,
            config.database_ca_file.clone(),
        ));
        let access = Arc::new(TenantAccess::new(
            Arc::clone(&keyring),
            Arc::clone(&directory),
        ));
        let servers = Arc::new(Servers::new(
            owner.clone(),
            directory,
            ClusterSettings {
                prefix: config.tenant_db_prefix.clone(),
                installation_id,
                source: Arc::clone(&migrations),
                runtime_connection_limit: runtime_connection_limit(config.tenant_pool_size),
                scram_iterations: config.tenant_scram_iterations,
            },
        ));
        let storage = storage::Storage::new(&config.storage_root);
        Backups::check_root(config.backup_root.as_deref())?;
        let events = TenantEvents::default();
        let tasks = Tasks::new();
        let traffic = Traffic::default();
        let provisioner = Arc::new(Provisioner::new(
            owner.clone(),
            Arc::clone(&access),
            Arc::clone(&servers),
            storage.clone(),
            events.clone(),
            tasks.clone(),
            Arc::clone(&faults),
            config.base_domain.clone(),
        ));
        let backups = Arc::new(Backups::new(
            owner.clone(),
            Arc::clone(&servers),
            storage.clone(),
            events.clone(),
            Arc::clone(&provisioner),
            faults,
            config.backup_root.clone(),
            config.backup_concurrency,
            traffic.clone(),
            config.move_grace,
        ));
        let domains = Arc::new(Domains::new(
            owner.clone(),
            events.clone(),
            config.base_domain.clone(),
        ));
        let billing = Arc::new(Billing::new(owner.clone(), events.clone()));
        let customiser = Arc::new(Customiser::new(owner.clone(), events.clone()));
        let keys = Arc::new(Keys::new(
            owner.clone(),
            Arc::clone(&access),
            events.clone(),
        ));
        let email_index: Arc<dyn tenant::directory::UserDirectory> =
            Arc::new(EmailIndex::new(owner.clone()));
        let finder = Arc::new(Finder::new(
            owner.clone(),
            Arc::clone(&access),
            Arc::new(Mailer::from_config(&config)?),
            tasks.clone(),
            &config,
        )?);
        let provider_client: Arc<dyn tenant::integrations::Caller> =
            crate::integrations::ProviderClient::new()?;
        let integration_sync = Arc::new(crate::integration_sync::IntegrationSync::new(
            owner.clone(),
            Arc::clone(&access),
            Arc::clone(&provider_client),
            config.integration_endpoints.clone(),
            config.integration_sync_interval,
        ));
        let keys_listener: Arc<dyn crate::services::Listener> = keys.clone();
        events.listen(Arc::downgrade(&keys_listener));
        let migrations_listener: Arc<dyn crate::services::Listener> = migrations.clone();
        events.listen(Arc::downgrade(&migrations_listener));
        let fleet = Fleet::new(
            owner.clone(),
            Arc::clone(&access),
            Arc::clone(&servers),
            Arc::clone(&migrations),
            tasks.clone(),
            Arc::clone(&backups),
            events.clone(),
        );
        Ok(Self {
            config: Arc::new(config),
            owner,
            keyring,
            access,
            storage,
            migrations,
            events,
            tasks,
            servers,
            provisioner,
            domains,
            billing,
            customiser,
            keys,
            email_index,
            finder,
            provider_client,
            integration_sync,
            fleet,
            backups,
            traffic,
        })
    }
}

/// The runtime role's CONNECTION LIMIT: its pool, twice over (a pool being replaced
/// while the old one drains), plus a few for metering and checks.
fn runtime_connection_limit(pool_size: usize) -> i32 {
    i32::try_from(pool_size.saturating_mul(2).saturating_add(5)).unwrap_or(i32::MAX)
}
