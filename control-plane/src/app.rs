//! The running service: services built, listener bound, state made; then serving
//! until shutdown with the reconciler and metering in the background.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::OwnerTokens;
use crate::config::Config;
use crate::gateway::ConnectionPlan;
use crate::http::state::AppState;
use crate::provisioning::Faults;
use crate::wiring::Services;
use crate::{Error, Result};

/// The running service: a bound listener, the state, and the background reconciler.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    services: Services,
    address: SocketAddr,
    /// Set by the change feed while it listens.
    listening: tokio::sync::watch::Sender<bool>,
}

/// Longest the service waits for the change feed before serving without it (it keeps
/// trying; the caches' TTLs bound what a replica without it serves stale).
const FEED_WAIT: Duration = Duration::from_secs(5);

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
        let tokens = OwnerTokens::new(&services.keyring, services.config.owner_token_ttl)?
            .with_dashboard_ttl(services.config.dashboard_session);
        let plan = ConnectionPlan::for_server(
            &services.config,
            services.access.servers().default_endpoint(),
        )
        .await?;
        match plan.derived {
            Some(d) => tracing::info!(
                budget = plan.budget,
                max_connections = d.max_connections,
                reserved = d.reserved,
                kept_back = d.kept_back,
                max_pools = plan.max_pools,
                "tenant connection budget derived from the server's max_connections"
            ),
            None => tracing::info!(
                budget = plan.budget,
                max_pools = plan.max_pools,
                "tenant connection budget as configured"
            ),
        }
        let (listening, change_feed) = tokio::sync::watch::channel(false);
        let state = AppState::new(&services, tokens, &plan, change_feed);
        Ok(Self {
            listener,
            state,
            services,
            address,
            listening,
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

    /// The services the state was built from.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests and
    /// provisioning drives finish.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let reconciler = tokio::spawn(
            Arc::clone(&self.state.provisioner)
                .run_reconciler(self.state.config.reconcile_interval, shutdown.clone()),
        );
        let fleet_recovery = tokio::spawn(
            self.services
                .fleet
                .clone()
                .run_recovery(self.state.config.reconcile_interval, shutdown.clone()),
        );
        let backups = {
            let config = &self.state.config;
            tokio::spawn(Arc::clone(&self.services.backups).run(
                config.reconcile_interval,
                config.backup_schedule_interval,
                config.restore_test_interval,
                shutdown.clone(),
            ))
        };
        let keys = tokio::spawn(
            Arc::clone(&self.services.keys)
                .follow(self.state.config.reconcile_interval, shutdown.clone()),
        );
        let changes = tokio::spawn(crate::services::change_feed::follow(
            self.services.owner.endpoint().clone(),
            self.services.events.clone(),
            shutdown.clone(),
            self.listening.clone(),
        ));
        // Serving before the feed listens could cache a change it then never hears of.
        let mut feed = self.state.change_feed.clone();
        if tokio::time::timeout(FEED_WAIT, feed.wait_for(|listening| *listening))
            .await
            .is_err()
        {
            tracing::warn!(
                "serving without the change feed for now: changes made by other processes show within the cache TTL"
            );
        }
        let prewarm = {
            let gateway = Arc::clone(&self.state.gateway);
            tokio::spawn(async move { gateway.prewarm().await })
        };
        let interval = self.state.config.metering_interval;
        let metering = (!interval.is_zero()).then(|| {
            tokio::spawn(Arc::clone(&self.state.metering).run(interval, shutdown.clone()))
        });
        let integration_sync =
            (!self.state.config.integration_sync_interval.is_zero()).then(|| {
                tokio::spawn(Arc::clone(&self.services.integration_sync).run(shutdown.clone()))
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
        let router = crate::http::router::router(self.state.clone());
        crate::http::serve(self.listener, router, shutdown.clone(), max_connections).await;
        prewarm.abort();
        // Background drives and fleet runs finish before the process stops.
        let tasks = &self.services.tasks;
        tasks.close();
        tasks.wait().await;
        let _ = reconciler.await;
        let _ = backups.await;
        let _ = changes.await;
        let _ = fleet_recovery.await;
        let _ = keys.await;
        if let Some(metering) = metering {
            let _ = metering.await;
        }
        if let Some(sync) = integration_sync {
            let _ = sync.await;
        }
        tracing::info!("control plane stopped");
        Ok(())
    }
}
