//! Building the service: the shared state and the application that serves it.

use std::net::SocketAddr;
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::OwnerTokens;
use crate::config::Config;
use crate::provisioning::{Cluster, Faults, Provisioner};
use crate::secrets::Keyring;
use crate::{Error, Result};
use crate::{installation, pg};

/// Everything the service and the CLI share, built once.
pub struct Services {
    pub config: Config,
    /// The owner database.
    pub pool: Pool,
    pub keyring: Arc<Keyring>,
    pub provisioner: Arc<Provisioner>,
}

impl Services {
    /// Prepares the owner database (created if missing, migrated, hardened) and the
    /// provisioner. Shared by `serve` and every CLI command.
    pub async fn init(mut config: Config, faults: Arc<Faults>) -> Result<Self> {
        let owner_pg = config.owner_endpoint()?;
        let admin_pg = config.admin_endpoint()?;
        let owner_db = owner_pg
            .config()
            .get_dbname()
            .ok_or_else(|| Error::Config("invalid setting DATABASE_URL: names no database".into()))?
            .to_string();
        pg::ensure_owner_database(&owner_pg, &admin_pg, &owner_db).await?;
        let pool = pg::owner_pool(&owner_pg)?;
        {
            let mut conn = pool.get().await?;
            owner::migrations::run(&mut conn).await?;
        }
        pg::harden_server(&admin_pg, &owner_db).await?;
        // Relative roots would follow the current directory; the recorded one must not.
        std::fs::create_dir_all(&config.storage_root).map_err(|e| {
            Error::Config(format!(
                "invalid setting CP_STORAGE_ROOT: cannot create {}: {e}",
                config.storage_root.display()
            ))
        })?;
        config.storage_root = installation::absolute(&config.storage_root);
        let keyring = {
            let conn = pool.get().await?;
            installation::refuse_second_dev_key(&**conn, &config.master_key).await?;
            let keyring = Arc::new(Keyring::load(&config.master_key)?);
            installation::verify(&**conn, &keyring, &config.master_key, &config.storage_root)
                .await?;
            keyring
        };
        let (host, port) = server_address(admin_pg.config());
        let installation_id = {
            let conn = pool.get().await?;
            owner::servers::server_upsert(&**conn, owner::servers::DEFAULT_SERVER, &host, port)
                .await?;
            owner::settings::installation_id(&**conn).await?
        };
        let source = match &config.tenant_migrations_dir {
            Some(dir) => tenant::migrations::Source::with_dir(dir)?,
            None => tenant::migrations::Source::embedded(),
        };
        let cluster = Cluster::new(
            admin_pg,
            config.tenant_db_prefix.clone(),
            installation_id,
            Arc::new(source),
            runtime_connection_limit(config.tenant_pool_size),
        );
        let provisioner = Arc::new(Provisioner::new(
            pool.clone(),
            owner_pg,
            cluster,
            Arc::clone(&keyring),
            storage::Storage::new(&config.storage_root),
            config.base_domain.clone(),
            owner::servers::DEFAULT_SERVER.to_string(),
            faults,
        ));
        Ok(Self {
            config,
            pool,
            keyring,
            provisioner,
        })
    }
}

/// The runtime role's CONNECTION LIMIT: its pool, twice over (a pool being replaced
/// while the old one drains), plus a few for metering and checks.
fn runtime_connection_limit(pool_size: usize) -> i32 {
    i32::try_from(pool_size.saturating_mul(2).saturating_add(5)).unwrap_or(i32::MAX)
}

/// Host and port of the admin connection, as recorded in `database_servers`.
fn server_address(config: &tokio_postgres::Config) -> (String, u16) {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    (host, port)
}

/// The state every handler sees. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub provisioner: Arc<Provisioner>,
    pub tokens: Arc<OwnerTokens>,
    /// Host -> tenant -> pool, for requests on tenant domains.
    pub gateway: Arc<crate::gateway::Gateway>,
    /// Usage sampling; `sample_once` takes a sample now.
    pub metering: Arc<crate::metering::Metering>,
}

/// The running service: a bound listener, the state, and the background reconciler.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    address: SocketAddr,
}

impl Application {
    /// Prepares everything and binds the listener (port 0 picks a free one).
    pub async fn build(config: Config, faults: Arc<Faults>) -> Result<Self> {
        let services = Services::init(config, faults).await?;
        let listener = TcpListener::bind(services.config.listen)
            .await
            .map_err(|e| {
                Error::Config(format!(
                    "invalid setting CP_LISTEN: cannot bind {}: {e}",
                    services.config.listen
                ))
            })?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("listener has no address: {e}")))?;
        let tokens = OwnerTokens::new(&services.keyring, services.config.owner_token_ttl)?;
        let gateway =
            crate::gateway::Gateway::new(&services.config, Arc::clone(&services.provisioner));
        let metering = Arc::new(crate::metering::Metering::new(
            Arc::clone(&services.provisioner),
            Arc::clone(&gateway),
            services.config.metering_concurrency,
        ));
        let state = AppState {
            metering,
            gateway,
            config: Arc::new(services.config),
            pool: services.pool,
            provisioner: services.provisioner,
            tokens: Arc::new(tokens),
        };
        Ok(Self {
            listener,
            state,
            address,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests and
    /// provisioning drives finish.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let reconciler = tokio::spawn(
            Arc::clone(&self.state.provisioner)
                .run_reconciler(self.state.config.reconcile_interval, shutdown.clone()),
        );
        let interval = self.state.config.metering_interval;
        let metering = (!interval.is_zero()).then(|| {
            tokio::spawn(Arc::clone(&self.state.metering).run(interval, shutdown.clone()))
        });
        // Half the descriptors for clients leaves the rest for PostgreSQL connections
        // and files, so a flood of sockets cannot starve the tenants' pools.
        let max_connections = match crate::http::raise_open_file_limit() {
            Some(files) => self
                .state
                .config
                .max_connections
                .min(usize::try_from(files / 2).unwrap_or(usize::MAX))
                .max(1),
            None => self.state.config.max_connections,
        };
        tracing::info!(address = %self.address, max_connections, "control plane listening");
        let router = crate::http::router(self.state.clone());
        crate::http::serve(self.listener, router, shutdown.clone(), max_connections).await;
        let tasks = self.state.provisioner.tasks();
        tasks.close();
        tasks.wait().await;
        let _ = reconciler.await;
        if let Some(metering) = metering {
            let _ = metering.await;
        }
        tracing::info!("control plane stopped");
        Ok(())
    }
}
