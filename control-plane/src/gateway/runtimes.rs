//! Each tenant's runtime: its pool (logging in as its runtime role), token keys,
//! storage tree and upload ledger, built once and cached; and the relief that frees a
//! connection of another tenant when the connection budget is spent.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use owner::tenants::Tenant;
use tenant::ledger::StorageLedger;
use tenant::pool::{Relief, Relogin, TenantPool, build_pool};
use uuid::Uuid;

use super::{Gateway, Refusal};
use crate::services::TenantRole;

/// What serving one tenant needs, built once per tenant and cached with its pool.
pub struct TenantRuntime {
    pub(super) pool: TenantPool,
    pub(super) keys: Arc<tenant::auth::TenantKeys>,
    pub(super) storage: Arc<storage::TenantTree>,
    /// Uploads in flight, for the storage quota (see `tenant::ledger`).
    pub(super) ledger: Arc<StorageLedger>,
    demand: Demand,
    /// Seals its integration credentials (`None`: it has no data key yet).
    pub(super) vault: Option<Arc<dyn tenant::integrations::Vault>>,
    /// Its settings and features, with the plan's (see `profile`).
    pub(super) profile: super::profile::ProfileSource,
    /// The server its connections are on: relief frees a connection on the same server.
    server: String,
}

impl TenantRuntime {
    /// Counts a request towards the tenant's demand (see [`Demand`]).
    pub(super) fn record_demand(&self) {
        self.demand.record();
    }
}

/// How long a request keeps counting towards its tenant's demand (the time constant of an
/// exponential decay): long enough to tell a steadily used tenant from one seen once,
/// short enough that a tenant that went quiet stops being kept.
const DEMAND_HALF_LIFE: Duration = Duration::from_secs(10);

/// Recent requests of a tenant, exponentially decayed: which connection to close when
/// another tenant needs one. Under skewed traffic (the bench's Zipf), keeping the most
/// requested tenants' connections misses less often than keeping the most recently used
/// ones (a simulation of 40 connections over Zipf(1) traffic: about 18% of requests need a
/// new connection instead of 25% at 100 tenants, 43% instead of 58% at 1000).
struct Demand(std::sync::Mutex<(f64, Instant)>);

impl Demand {
    fn new() -> Self {
        Self(std::sync::Mutex::new((0.0, Instant::now())))
    }

    fn decayed(value: f64, since: Instant, now: Instant) -> f64 {
        let halvings =
            now.saturating_duration_since(since).as_secs_f64() / DEMAND_HALF_LIFE.as_secs_f64();
        value * 0.5f64.powf(halvings)
    }

    fn record(&self) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        *state = (Self::decayed(state.0, state.1, now) + 1.0, now);
    }

    fn now(&self) -> f64 {
        let state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Self::decayed(state.0, state.1, Instant::now())
    }
}

impl Gateway {
    /// The tenant's upload ledger: the one requests still hold, else a new one.
    pub(super) fn ledger(&self, tenant: Uuid) -> Arc<StorageLedger> {
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ledger) = ledgers.get(&tenant).and_then(Weak::upgrade) {
            return ledger;
        }
        // Runtimes are built rarely; forget the ledgers nothing holds any more.
        ledgers.retain(|_, ledger| ledger.strong_count() > 0);
        let ledger = Arc::new(StorageLedger::new());
        ledgers.insert(tenant, Arc::downgrade(&ledger));
        ledger
    }

    /// The tenant's runtime (pool, token keys, storage tree), built once however many
    /// requests ask at the same time, and kept while the tenant is in use: nothing is
    /// decrypted or derived again per request.
    pub(super) async fn runtime(
        &self,
        tenant: &Arc<Tenant>,
    ) -> Result<Arc<TenantRuntime>, Refusal> {
        if let Some(runtime) = self.pools.get(&tenant.id).await {
            return Ok(runtime);
        }
        let access = Arc::clone(&self.access);
        let tree = self.storage.tenant(&tenant.slug);
        let tenant = Arc::clone(tenant);
        let settings = self.settings;
        let ledger = self.ledger(tenant.id);
        let budget = self.budget_of(&tenant.server_id).await?;
        let server = tenant.server_id.clone();
        let pools = self.pools.clone();
        let relief: Relief = Arc::new(move || {
            // Free one connection for a tenant that holds none (only those ask). The old
            // rule (trim the largest pool first, and let any tenant whose connections were
            // all busy ask) closed the busiest tenants' connections, which were needed
            // again within a millisecond and so reopened at once: at 100 tenants the bench
            // saw about one connection opened for every two requests.
            //
            // Now, among idle connections only: a tenant's second (third...) connection
            // before any tenant's only one, so the budget spreads over as many tenants as
            // possible (a tenant left with one connection queues on it, which costs far
            // less than a new connection costs another tenant); then the tenant with the
            // least recent demand; then the connection idle longest.
            // Lowest first: (only connection of its tenant, demand, longest idle reversed).
            type Rank = (bool, f64, std::cmp::Reverse<Duration>);
            let mut best: Option<(Arc<TenantRuntime>, Rank)> = None;
            for (_, runtime) in pools.iter() {
                if runtime.server != server {
                    continue;
                }
                let status = runtime.pool.status();
                if status.available == 0 {
                    continue;
                }
                let Some(idle) = runtime.pool.longest_idle() else {
                    continue;
                };
                let rank = (
                    status.size <= 1,
                    runtime.demand.now(),
                    std::cmp::Reverse(idle),
                );
                if best.as_ref().is_none_or(|(_, best)| rank < *best) {
                    best = Some((runtime, rank));
                }
            }
            let closed = best.is_some_and(|(runtime, _)| runtime.pool.close_longest_idle());
            if closed {
                metrics::counter!("tenant_connections_relieved_total").increment(1);
            }
            closed
        });
        let relogin: Relogin = {
            let (owner, access, id) = (self.owner.clone(), Arc::clone(&self.access), tenant.id);
            Arc::new(move || {
                let (owner, access) = (owner.clone(), Arc::clone(&access));
                Box::pin(async move {
                    let conn = owner.conn().await.ok()?;
                    let tenant = owner::tenants::tenant_fetch(&**conn, id).await.ok()?;
                    let logins = access.logins(&tenant, TenantRole::Runtime).await.ok()?;
                    Some(logins.iter().map(|e| e.config().clone()).collect())
                })
            })
        };
        self.pools
            .try_get_with(tenant.id, async move {
                metrics::counter!("tenant_pools_created_total").increment(1);
                let logins = access
                    .logins(&tenant, TenantRole::Runtime)
                    .await
                    .map_err(|e| e.to_string())?;
                let tls = logins[0].tls().clone();
                let pool = build_pool(
                    logins.iter().map(|e| e.config().clone()).collect(),
                    tls,
                    settings,
                    budget,
                    relief,
                    Some(relogin),
                )?;
                let secret = access.token_secret(&tenant).map_err(|e| e.to_string())?;
                let keys = tenant::auth::TenantKeys::new(
                    tenant.id,
                    secrecy::ExposeSecret::expose_secret(&secret),
                );
                let storage = tree.map_err(|e| e.to_string())?;
                let vault = access
                    .data_key(&tenant)
                    .map_err(|e| e.to_string())?
                    .map(|key| {
                        Arc::new(crate::integrations::DataKeyVault::new(&key))
                            as Arc<dyn tenant::integrations::Vault>
                    });
                Ok::<_, String>(Arc::new(TenantRuntime {
                    pool,
                    keys: Arc::new(keys),
                    storage: Arc::new(storage),
                    ledger,
                    demand: Demand::new(),
                    vault,
                    profile: super::profile::ProfileSource::new(&tenant),
                    server: tenant.server_id.clone(),
                }))
            })
            .await
            .map_err(|e| Refusal::TenantUnavailable(e.to_string()))
    }
}
