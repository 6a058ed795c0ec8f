//! A tenant's connection pool, logging in as the tenant's runtime role, whose every open
//! connection holds a permit of a fleet-wide budget: however many tenant pools exist,
//! the service never holds more tenant connections than the budget.
//!
//! The pool knows nothing of other tenants: it is handed the budget and a way to ask
//! for relief (closing idle connections elsewhere) when the budget is spent.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_postgres::{ClientWrapper, ManagerConfig, RecyclingMethod};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::NoTls;

/// How often a connection waiting for budget asks for relief again.
const RELIEF_INTERVAL: Duration = Duration::from_millis(20);

/// Asked to free budget (close idle connections of other pools) before waiting for it.
pub type Relief = Arc<dyn Fn() + Send + Sync>;

pub struct BudgetedManager {
    inner: deadpool_postgres::Manager,
    budget: Arc<Semaphore>,
    budget_wait: Duration,
    relief: Relief,
}

/// A connection and the budget permit it holds; the permit returns when it closes.
pub struct BudgetedClient {
    client: ClientWrapper,
    _permit: OwnedSemaphorePermit,
}

impl Deref for BudgetedClient {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        &self.client
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("tenant database: {}", crate::chain(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("the tenant connection budget is spent")]
    Budget,
}

impl managed::Manager for BudgetedManager {
    type Type = BudgetedClient;
    type Error = ConnectError;

    async fn create(&self) -> Result<BudgetedClient, ConnectError> {
        let permit = match Arc::clone(&self.budget).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Permits are held by open connections, idle ones included, and idle
                // connections only close when asked: ask again while waiting, since
                // connections keep going idle in other pools.
                let deadline = tokio::time::Instant::now() + self.budget_wait;
                loop {
                    (self.relief)();
                    let step = RELIEF_INTERVAL
                        .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                    match tokio::time::timeout(step, Arc::clone(&self.budget).acquire_owned()).await
                    {
                        Ok(Ok(permit)) => break permit,
                        Ok(Err(_)) => return Err(ConnectError::Budget),
                        Err(_) if tokio::time::Instant::now() < deadline => continue,
                        Err(_) => return Err(ConnectError::Budget),
                    }
                }
            }
        };
        let client = <deadpool_postgres::Manager as managed::Manager>::create(&self.inner).await?;
        Ok(BudgetedClient {
            client,
            _permit: permit,
        })
    }

    async fn recycle(
        &self,
        obj: &mut BudgetedClient,
        metrics: &Metrics,
    ) -> RecycleResult<ConnectError> {
        <deadpool_postgres::Manager as managed::Manager>::recycle(
            &self.inner,
            &mut obj.client,
            metrics,
        )
        .await
        .map_err(|e| match e {
            RecycleError::Message(m) => RecycleError::Message(m),
            RecycleError::Backend(e) => RecycleError::Backend(ConnectError::Db(e)),
        })
    }
}

pub type TenantPool = managed::Pool<BudgetedManager>;
pub type TenantConnection = managed::Object<BudgetedManager>;
pub type PoolError = managed::PoolError<ConnectError>;

/// Sizes and waits of one tenant pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_size: usize,
    /// Longest a request waits for a connection of its tenant.
    pub wait: Duration,
    /// Longest opening a connection may take (budget wait included).
    pub connect: Duration,
}

/// Builds a pool for one tenant. Connections are verified when recycled, so one killed by
/// a server restart or `pg_terminate_backend` is replaced, not handed out.
pub fn build_pool(
    config: tokio_postgres::Config,
    settings: PoolSettings,
    budget: Arc<Semaphore>,
    relief: Relief,
) -> Result<TenantPool, String> {
    let inner = deadpool_postgres::Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        },
    );
    let manager = BudgetedManager {
        inner,
        budget,
        budget_wait: settings.connect,
        relief,
    };
    managed::Pool::builder(manager)
        .max_size(settings.max_size)
        .wait_timeout(Some(settings.wait))
        .create_timeout(Some(settings.connect + Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| e.to_string())
}
