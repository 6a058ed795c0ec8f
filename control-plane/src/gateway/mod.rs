//! The gateway: `Host` -> tenant -> pool, for every request on a tenant domain. A
//! library: it knows nothing of the web layer's state; `http::dispatch` asks it to
//! [`Gateway::admit`] a request and serves the answer.
//!
//! - The domain cache ([`resolve`]) maps a host to its tenant (or to "unknown", cached
//!   briefly so a flood of random hosts does not reach the owner database). Entries live
//!   [`KNOWN_TTL`] and are dropped at once when a tenant change is announced, by this
//!   process or, through the owner database's change feed, by any other.
//! - If the owner database is unreachable, tenants last known to be active keep being
//!   served; never one last known suspended or deleted.
//! - The pool cache ([`runtimes`]) holds at most `CP_MAX_TENANT_POOLS` pools (by default
//!   sized with the budget, see [`budget`]), closes a pool unused for
//!   `CP_TENANT_POOL_IDLE_SECS`, and opens each pool once however many requests arrive
//!   for a cold tenant at once. Every open tenant connection holds a permit of the
//!   connection budget; a tenant's first connection comes before any tenant's second,
//!   extras are closed first (tenant/src/pool.rs), and a tenant holding none when the
//!   budget is spent gets one by closing an idle connection of another pool (the relief
//!   in `runtimes`).
//! - Requests are counted per tenant ([`requests`]) for metering.

mod budget;
mod client;
mod host;
mod prewarm;
mod profile;
mod refusal;
mod requests;
mod resolve;
mod runtimes;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use moka::future::Cache;
use owner::tenants::{Tenant, TenantStatus};
use tenant::ledger::StorageLedger;
use tenant::pool::{Budget, PoolSettings};
use uuid::Uuid;

pub use budget::{ConnectionPlan, Derivation};
pub use client::{ClientAddr, client_addr};
pub use host::{forwarded_host, is_ip_literal, normalise, request_host};
pub use profile::profile;
pub use refusal::Refusal;
pub use resolve::Resolution;
pub use runtimes::TenantRuntime;

use crate::config::Config;
use crate::services::{Change, Listener, OwnerDb, TenantAccess, TenantEvents, Traffic};
use requests::RequestCounts;
use resolve::ResolutionExpiry;

/// How long a known domain is trusted without asking the owner database again.
pub const KNOWN_TTL: Duration = Duration::from_secs(30);
/// How long an unknown host is remembered as unknown.
pub const UNKNOWN_TTL: Duration = Duration::from_secs(5);
/// How long plan limits are cached.
pub const PLAN_TTL: Duration = Duration::from_secs(60);
/// Longest a request waits for a connection of its tenant.
pub const POOL_WAIT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Gateway {
    owner_hosts: HashSet<String>,
    owner: OwnerDb,
    access: Arc<TenantAccess>,
    storage: storage::Storage,
    domains: Cache<String, Resolution>,
    /// The last answer for each domain, kept without expiry for owner-database outages.
    last_known: Cache<String, Arc<Tenant>>,
    pools: Cache<Uuid, Arc<TenantRuntime>>,
    /// Bumped by every `forget`: a lookup that started before a change must not cache
    /// what it read.
    generation: std::sync::atomic::AtomicU64,
    /// Requests served per tenant since metering last took them.
    requests: RequestCounts,
    /// The rate of admitted requests, read by background jobs that yield to traffic.
    traffic: Traffic,
    /// Plan terms (limits, features) by plan code; plans change rarely.
    plans: Cache<String, Arc<owner::plans::PlanTerms>>,
    /// Each tenant's upload ledger while anything holds it. Not kept in the runtime
    /// alone: a runtime is rebuilt after eviction or a change of the tenant, and uploads
    /// still in flight on the old one must count against the quota for the new one's.
    ledgers: std::sync::Mutex<HashMap<Uuid, Weak<StorageLedger>>>,
    /// The default server's tenant connection budget.
    budget: Arc<Budget>,
    /// Told by the tenant API when users come or go (the "find my tenants" index).
    directory: Arc<dyn tenant::directory::UserDirectory>,
    /// Calls integration providers, at `endpoints` where configured.
    caller: Arc<dyn tenant::integrations::Caller>,
    endpoints: Arc<HashMap<String, String>>,
    /// Every other server's, made when its first tenant is served (see `budget_of`).
    server_budgets: tokio::sync::Mutex<HashMap<String, Arc<Budget>>>,
    /// For deriving other servers' budgets.
    config: Arc<Config>,
    max_upload_bytes: u64,
    settings: PoolSettings,
}

/// What the gateway reaches: the owner database, tenants' databases and trees, and the
/// index of tenant users.
pub struct Backends {
    pub owner: OwnerDb,
    pub access: Arc<TenantAccess>,
    pub storage: storage::Storage,
    pub directory: Arc<dyn tenant::directory::UserDirectory>,
    /// Calls integration providers.
    pub caller: Arc<dyn tenant::integrations::Caller>,
}

impl Gateway {
    /// Builds the gateway; it forgets a tenant whenever `events` announces a change.
    pub fn new(
        config: &Config,
        plan: &ConnectionPlan,
        backends: Backends,
        events: &TenantEvents,
        traffic: Traffic,
    ) -> Arc<Self> {
        let Backends {
            owner,
            access,
            storage,
            directory,
            caller,
        } = backends;
        let pools: Cache<Uuid, Arc<TenantRuntime>> = Cache::builder()
            .name("tenant_pools")
            .max_capacity(plan.max_pools)
            // Plain LRU, not moka's default TinyLFU: under TinyLFU a full cache may refuse
            // to admit a newly built pool, which is then dropped after its one request with
            // the connection it opened, so every request of a rarely seen tenant paid for
            // a connection set-up (and a pool build). Under LRU a new pool is always kept
            // and the pool evicted is the one unused longest, which holds no connection
            // unless the budget has room to spare.
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .time_to_idle(config.tenant_pool_idle)
            .eviction_listener(|id, runtime: Arc<TenantRuntime>, cause| {
                metrics::counter!("tenant_pool_evictions_total", "cause" => format!("{cause:?}"))
                    .increment(1);
                // Close the idle connections now; requests still holding this pool finish
                // normally and its last connections close when the last of them drops it.
                // (`Pool::close` would fail those requests.)
                tracing::debug!(tenant_id = %id, ?cause, "releasing tenant pool");
                runtime.pool.close_idle();
            })
            .build();
        let gateway = Arc::new(Self {
            owner_hosts: config.owner_hosts.iter().cloned().collect(),
            owner,
            access,
            storage,
            domains: Cache::builder()
                .name("tenant_domains")
                .max_capacity(100_000)
                .expire_after(ResolutionExpiry)
                .build(),
            last_known: Cache::builder()
                .max_capacity(100_000)
                .support_invalidation_closures()
                .build(),
            pools,
            plans: Cache::builder()
                .max_capacity(1_000)
                .time_to_live(PLAN_TTL)
                .build(),
            ledgers: std::sync::Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            requests: RequestCounts::default(),
            traffic,
            budget: Budget::new(plan.budget),
            directory,
            caller,
            endpoints: Arc::new(config.integration_endpoints.clone()),
            server_budgets: tokio::sync::Mutex::new(HashMap::new()),
            config: Arc::new(config.clone()),
            max_upload_bytes: config.max_upload_bytes,
            settings: PoolSettings {
                max_size: config.tenant_pool_size,
                wait: POOL_WAIT,
                connect: CONNECT_TIMEOUT,
            },
        });
        // Forget a tenant (or the plans) as soon as this process changes it.
        let listener: Arc<dyn Listener> = gateway.clone();
        events.listen(Arc::downgrade(&listener));
        tokio::spawn(sweep_pools(Arc::downgrade(&gateway)));
        gateway
    }

    /// Drops cached knowledge of a tenant (or of every tenant, for `None`).
    pub async fn forget(&self, id: Option<Uuid>) {
        // Domains are few per tenant and changes are rare: forgetting every domain is
        // simpler than indexing them by tenant and just as correct.
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.domains.invalidate_all();
        match id {
            Some(id) => {
                self.pools.invalidate(&id).await;
                let _ = self
                    .last_known
                    .invalidate_entries_if(move |_, t| t.id == id);
            }
            None => {
                self.pools.invalidate_all();
                self.last_known.invalidate_all();
            }
        }
        self.domains.run_pending_tasks().await;
    }

    /// Drops cached plan limits (a plan was edited).
    pub fn forget_plans(&self) {
        self.plans.invalidate_all();
    }

    /// Whether `host` serves the owner API rather than a tenant.
    pub fn is_owner_host(&self, host: &str) -> bool {
        self.owner_hosts.contains(host) || is_ip_literal(host)
    }

    /// Tenant pools open now.
    pub async fn open_pools(&self) -> u64 {
        // The count is eventually consistent until pending maintenance runs.
        self.pools.run_pending_tasks().await;
        self.pools.entry_count()
    }

    /// Tenant connections open now on the default server (each holds a permit of its
    /// budget).
    pub fn connections_open(&self) -> usize {
        self.budget.in_use()
    }

    /// Tenant connections open now, and the budget, per server this process has served.
    pub async fn connections_by_server(&self) -> Vec<(String, usize, usize)> {
        let mut out = vec![(
            owner::servers::DEFAULT_SERVER.to_string(),
            self.budget.in_use(),
            self.budget.limit(),
        )];
        let others = self.server_budgets.lock().await;
        out.extend(
            others
                .iter()
                .map(|(id, b)| (id.clone(), b.in_use(), b.limit())),
        );
        out
    }

    /// The connection budget of server `id`: the default server's is set at start-up;
    /// another's is its registry `connection_budget`, else derived from its
    /// `max_connections` like the default's, on first use. A server that cannot be asked
    /// refuses its tenant (503) and is asked again by the next request.
    async fn budget_of(&self, id: &str) -> Result<Arc<Budget>, Refusal> {
        if id == owner::servers::DEFAULT_SERVER {
            return Ok(Arc::clone(&self.budget));
        }
        let mut budgets = self.server_budgets.lock().await;
        if let Some(budget) = budgets.get(id) {
            return Ok(Arc::clone(budget));
        }
        let unavailable = |e: crate::Error| Refusal::TenantUnavailable(e.to_string());
        let recorded = {
            let conn = self.owner.conn().await.map_err(unavailable)?;
            owner::servers::server_fetch(&**conn, id)
                .await
                .map_err(|e| unavailable(e.into()))?
                .connection_budget
        };
        let limit = match recorded.and_then(|n| usize::try_from(n).ok()) {
            Some(n) => n,
            None => {
                let endpoint = self
                    .access
                    .servers()
                    .endpoint(id)
                    .await
                    .map_err(unavailable)?;
                budget::derived_budget(&self.config, &endpoint)
                    .await
                    .map_err(unavailable)?
                    .0
            }
        };
        tracing::info!(
            server = id,
            budget = limit,
            "tenant connection budget of a database server"
        );
        let budget = Budget::new(limit);
        budgets.insert(id.to_string(), Arc::clone(&budget));
        Ok(budget)
    }

    /// The tenant connection budget in force (configured, or derived from the server).
    pub fn connection_budget(&self) -> usize {
        self.budget.limit()
    }

    /// Everything a request on `host` needs to be served by the tenant API: its tenant,
    /// resolved and admitted (active; not in maintenance, or in maintenance that serves
    /// reads and `effect` is a read; under its database quota, or `effect` cannot grow the
    /// database), with a pool, keys, storage, limits and profile. Counts the request for
    /// metering.
    pub async fn admit(
        &self,
        host: &str,
        client_ip: Option<IpAddr>,
        effect: Effect,
    ) -> Result<tenant::TenantContext, Refusal> {
        let tenant = match self.resolve(host).await? {
            Resolution::Unknown => return Err(Refusal::UnknownTenant),
            Resolution::Tenant(t) => t,
        };
        tracing::Span::current().record("tenant_id", tracing::field::display(tenant.id));
        self.count_request(tenant.id);
        self.traffic.record();
        match tenant.status {
            TenantStatus::Active => {}
            TenantStatus::Suspended => return Err(Refusal::Suspended),
            TenantStatus::Provisioning => return Err(Refusal::Provisioning),
            TenantStatus::Deleting | TenantStatus::Deleted => return Err(Refusal::UnknownTenant),
        }
        match &tenant.maintenance {
            None => {}
            Some(m) if m.allow_reads && effect == Effect::Read => {}
            Some(m) if m.allow_reads => return Err(Refusal::MaintenanceWrites),
            Some(_) => return Err(Refusal::Maintenance),
        }
        if tenant.database_over_quota && effect == Effect::Write {
            return Err(Refusal::DatabaseQuota);
        }
        let runtime = self.runtime(&tenant).await?;
        runtime.record_demand();
        let terms = self.plan_terms(&tenant.plan_code).await?;
        Ok(tenant::TenantContext {
            id: tenant.id,
            slug: tenant.slug.clone(),
            pool: runtime.pool.clone(),
            storage: Arc::clone(&runtime.storage),
            keys: Arc::clone(&runtime.keys),
            limits: tenant::Limits {
                max_users: terms.max_users,
                max_storage_bytes: terms.max_storage_bytes,
                max_file_bytes: Some(self.max_upload_bytes),
            },
            profile: runtime.profile.for_plan(&terms),
            schema_version: tenant.schema_version,
            directory: Arc::clone(&self.directory),
            integrations: tenant::integrations::IntegrationEnv {
                caller: Arc::clone(&self.caller),
                endpoints: Arc::clone(&self.endpoints),
                vault: runtime.vault.clone(),
            },
            ledger: Arc::clone(&runtime.ledger),
            client_ip,
        })
    }
}

/// What a request may do to its tenant's data, as far as admission cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// GET, HEAD, OPTIONS: served in maintenance that serves reads, and over quota.
    Read,
    /// Frees space or only signs in (DELETE, the auth routes): served over the database
    /// quota, so a tenant over it can sign in and delete its way back under.
    Shrink,
    /// Anything else.
    Write,
}

/// How often idle tenant connections are checked (dead ones dropped, idle extras closed).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Sweeps every pool (see `TenantPool::sweep`) until the gateway is gone.
async fn sweep_pools(gateway: Weak<Gateway>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(gateway) = gateway.upgrade() else {
            return;
        };
        for (_, runtime) in gateway.pools.iter() {
            runtime.pool.sweep(Budget::EXTRA_IDLE);
        }
    }
}

impl Listener for Gateway {
    fn forget(&self, change: Change) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            match change {
                Change::Tenant(id) => Gateway::forget(self, Some(id)).await,
                Change::Plans => self.forget_plans(),
                Change::Keys | Change::Migrations => {}
                Change::Everything => {
                    Gateway::forget(self, None).await;
                    self.forget_plans();
                }
            }
        })
    }
}
