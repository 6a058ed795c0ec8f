//! The gateway: `Host` -> tenant -> pool, for every request on a tenant domain.
//!
//! - The domain cache maps a host to its tenant (or to "unknown", cached briefly so a
//!   flood of random hosts does not reach the owner database). Entries live
//!   [`KNOWN_TTL`] and are dropped at once when this process changes a tenant; other
//!   processes' changes show within the TTL.
//! - If the owner database is unreachable, tenants last known to be active keep being
//!   served; never one last known suspended or deleted.
//! - The pool cache holds at most `CP_MAX_TENANT_POOLS` pools, closes a pool unused for
//!   `CP_TENANT_POOL_IDLE_SECS`, and opens each pool once however many requests arrive
//!   for a cold tenant at once. Every open tenant connection holds a permit of
//!   `CP_TENANT_CONNECTION_BUDGET`; when it is spent, a tenant holding connections waits
//!   for its own (tenant/src/pool.rs), and a tenant holding none gets one by closing an
//!   idle connection of another pool (see `relief` in [`Gateway::runtime`]).

mod client;
mod host;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use moka::Expiry;
use moka::future::Cache;
use owner::tenants::{Tenant, TenantStatus};
use tenant::ledger::StorageLedger;
use tenant::pool::{PoolSettings, Relief, TenantPool, build_pool};
use tokio::sync::Semaphore;
use tower::ServiceExt;
use uuid::Uuid;

pub use client::{ClientAddr, client_addr};
pub use host::{forwarded_host, is_ip_literal, normalise, request_host};

use crate::app::AppState;
use crate::config::Config;
use crate::http::ApiError;
use crate::provisioning::{Provisioner, TenantRole};

/// How long a known domain is trusted without asking the owner database again.
pub const KNOWN_TTL: Duration = Duration::from_secs(30);
/// How long an unknown host is remembered as unknown.
pub const UNKNOWN_TTL: Duration = Duration::from_secs(5);
/// How long plan limits are cached.
pub const PLAN_TTL: Duration = Duration::from_secs(60);
/// Longest a request waits for a connection of its tenant.
pub const POOL_WAIT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What serving one tenant needs, built once per tenant and cached with its pool.
pub struct TenantRuntime {
    pool: TenantPool,
    keys: Arc<tenant::auth::TenantKeys>,
    storage: Arc<storage::TenantTree>,
    /// Uploads in flight, for the storage quota (see `tenant::ledger`).
    ledger: Arc<StorageLedger>,
    demand: Demand,
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

#[derive(Clone)]
pub enum Resolution {
    Tenant(Arc<Tenant>),
    Unknown,
}

struct ResolutionExpiry;

impl Expiry<String, Resolution> for ResolutionExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Resolution,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match value {
            Resolution::Tenant(_) => KNOWN_TTL,
            Resolution::Unknown => UNKNOWN_TTL,
        })
    }
}

pub struct Gateway {
    owner_hosts: HashSet<String>,
    provisioner: Arc<Provisioner>,
    domains: Cache<String, Resolution>,
    /// The last answer for each domain, kept without expiry for owner-database outages.
    last_known: Cache<String, Arc<Tenant>>,
    pools: Cache<Uuid, Arc<TenantRuntime>>,
    /// Bumped by every `forget`: a lookup that started before a change must not cache
    /// what it read.
    generation: std::sync::atomic::AtomicU64,
    /// Requests served per tenant since metering last took them.
    requests: std::sync::Mutex<HashMap<Uuid, u64>>,
    /// Plan limits by plan code; plans change rarely.
    plans: Cache<String, tenant::Limits>,
    /// Each tenant's upload ledger while anything holds it. Not kept in the runtime
    /// alone: a runtime is rebuilt after eviction or a change of the tenant, and uploads
    /// still in flight on the old one must count against the quota for the new one's.
    ledgers: std::sync::Mutex<HashMap<Uuid, Weak<StorageLedger>>>,
    budget: Arc<Semaphore>,
    budget_limit: usize,
    max_upload_bytes: u64,
    settings: PoolSettings,
    tenant_router: axum::Router,
}

/// Why a tenant request could not be served.
enum Refusal {
    UnknownTenant,
    Suspended,
    Provisioning,
    OwnerUnavailable,
    TenantUnavailable(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Refusal::UnknownTenant => (
                StatusCode::NOT_FOUND,
                "unknown_tenant",
                "no tenant is served on this host".to_string(),
            ),
            Refusal::Suspended => (
                StatusCode::FORBIDDEN,
                "tenant_suspended",
                "this tenant is suspended".to_string(),
            ),
            Refusal::Provisioning => (
                StatusCode::SERVICE_UNAVAILABLE,
                "tenant_provisioning",
                "this tenant is still being set up; retry shortly".to_string(),
            ),
            Refusal::OwnerUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "owner_unavailable",
                "tenant routing is unavailable; retry shortly".to_string(),
            ),
            Refusal::TenantUnavailable(why) => {
                tracing::warn!(error = %why, "tenant unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "tenant_unavailable",
                    "this tenant's database is unavailable; retry shortly".to_string(),
                )
            }
        };
        let mut response = ApiError::new(status, code, message).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

impl Gateway {
    pub fn new(config: &Config, provisioner: Arc<Provisioner>) -> Arc<Self> {
        let pools: Cache<Uuid, Arc<TenantRuntime>> = Cache::builder()
            .name("tenant_pools")
            .max_capacity(config.max_tenant_pools)
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
            provisioner: Arc::clone(&provisioner),
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
            requests: std::sync::Mutex::new(HashMap::new()),
            budget: Arc::new(Semaphore::new(config.tenant_connection_budget)),
            budget_limit: config.tenant_connection_budget,
            max_upload_bytes: config.max_upload_bytes,
            settings: PoolSettings {
                max_size: config.tenant_pool_size,
                wait: POOL_WAIT,
                connect: CONNECT_TIMEOUT,
            },
            tenant_router: tenant::api::router().route_layer(axum::middleware::from_fn(
                crate::http::metrics::track_tenant,
            )),
        });
        // Forget a tenant as soon as this process changes it.
        let weak = Arc::downgrade(&gateway);
        let mut changes = provisioner.subscribe();
        tokio::spawn(async move {
            loop {
                let id = match changes.recv().await {
                    Ok(id) => Some(id),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(gateway) = weak.upgrade() else {
                    return;
                };
                gateway.forget(id).await;
            }
        });
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

    fn count_request(&self, tenant: Uuid) {
        let mut counts = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(tenant).or_default() += 1;
    }

    /// Takes the request counts gathered since the last call, leaving zero behind.
    /// Whoever takes them and fails to record them hands them back with
    /// [`Gateway::restore_request_counts`], so no request is lost or counted twice.
    pub fn take_request_counts(&self) -> HashMap<Uuid, u64> {
        let mut counts = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *counts)
    }

    /// Adds counts back (taken but not recorded) to those gathered since.
    pub fn restore_request_counts(&self, taken: HashMap<Uuid, u64>) {
        let mut counts = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for (id, n) in taken {
            *counts.entry(id).or_default() += n;
        }
    }

    /// The tenant's upload ledger: the one requests still hold, else a new one.
    fn ledger(&self, tenant: Uuid) -> Arc<StorageLedger> {
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

    /// Tenant pools open now.
    pub async fn open_pools(&self) -> u64 {
        // The count is eventually consistent until pending maintenance runs.
        self.pools.run_pending_tasks().await;
        self.pools.entry_count()
    }

    /// Tenant connections open now (each holds a permit of the budget).
    pub fn connections_open(&self) -> usize {
        self.budget_limit
            .saturating_sub(self.budget.available_permits())
    }

    async fn resolve(&self, domain: &str) -> Result<Resolution, Refusal> {
        // A lookup that overlapped a change may have read the old row: drop it and
        // look again (once; a second overlap is served as read, and expires in time).
        let before = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let first = self.resolve_once(domain).await;
        if self.generation.load(std::sync::atomic::Ordering::SeqCst) == before {
            return first;
        }
        self.domains.invalidate(domain).await;
        self.resolve_once(domain).await
    }

    async fn resolve_once(&self, domain: &str) -> Result<Resolution, Refusal> {
        metrics::counter!("gateway_domain_cache_requests_total").increment(1);
        let provisioner = Arc::clone(&self.provisioner);
        let last_known = self.last_known.clone();
        let key = domain.to_string();
        let lookup = self
            .domains
            .try_get_with(key.clone(), async move {
                metrics::counter!("gateway_domain_cache_misses_total").increment(1);
                let conn = provisioner.pool().get().await.map_err(|e| e.to_string())?;
                let tenant = owner::tenants::tenant_fetch_by_domain(&**conn, &key)
                    .await
                    .map_err(|e| e.to_string())?;
                // Only answers read from the owner database update the fallback, and a
                // domain that no longer resolves leaves it.
                Ok::<_, String>(match tenant {
                    Some(t) => {
                        let t = Arc::new(t);
                        last_known.insert(key, Arc::clone(&t)).await;
                        Resolution::Tenant(t)
                    }
                    None => {
                        last_known.invalidate(&key).await;
                        Resolution::Unknown
                    }
                })
            })
            .await;
        match lookup {
            Ok(resolution) => {
                let outcome = match resolution {
                    Resolution::Tenant(_) => "tenant",
                    Resolution::Unknown => "unknown",
                };
                metrics::counter!("gateway_domain_lookups_total", "outcome" => outcome)
                    .increment(1);
                Ok(resolution)
            }
            Err(e) => {
                // The owner database is unreachable: serve a tenant last known active.
                match self.last_known.get(domain).await {
                    Some(t) if t.status == TenantStatus::Active => {
                        tracing::warn!(error = %e, domain, "owner database unreachable; serving from the last known state");
                        Ok(Resolution::Tenant(t))
                    }
                    _ => {
                        tracing::warn!(error = %e, domain, "owner database unreachable");
                        Err(Refusal::OwnerUnavailable)
                    }
                }
            }
        }
    }

    /// The limits of a plan (unlimited for an unknown plan code).
    async fn limits(&self, plan: &str) -> Result<tenant::Limits, Refusal> {
        let provisioner = Arc::clone(&self.provisioner);
        let code = plan.to_string();
        self.plans
            .try_get_with(code.clone(), async move {
                let conn = provisioner.pool().get().await.map_err(|e| e.to_string())?;
                let limits = owner::plans::plan_limits(&**conn, &code)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(match limits {
                    Some((max_users, max_storage_bytes)) => tenant::Limits {
                        max_users,
                        max_storage_bytes,
                        max_file_bytes: None,
                    },
                    None => tenant::Limits::default(),
                })
            })
            .await
            .map(|limits| tenant::Limits {
                max_file_bytes: Some(self.max_upload_bytes),
                ..limits
            })
            .map_err(|_| Refusal::OwnerUnavailable)
    }

    /// The tenant's runtime (pool, token keys, storage tree), built once however many
    /// requests ask at the same time, and kept while the tenant is in use: nothing is
    /// decrypted or derived again per request.
    async fn runtime(&self, tenant: &Arc<Tenant>) -> Result<Arc<TenantRuntime>, Refusal> {
        if let Some(runtime) = self.pools.get(&tenant.id).await {
            return Ok(runtime);
        }
        let provisioner = Arc::clone(&self.provisioner);
        let tenant = Arc::clone(tenant);
        let settings = self.settings;
        let ledger = self.ledger(tenant.id);
        let budget = Arc::clone(&self.budget);
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
            if let Some((runtime, _)) = best
                && runtime.pool.close_longest_idle()
            {
                metrics::counter!("tenant_connections_relieved_total").increment(1);
            }
        });
        self.pools
            .try_get_with(tenant.id, async move {
                metrics::counter!("tenant_pools_created_total").increment(1);
                let endpoint = provisioner
                    .tenant_endpoint(&tenant, TenantRole::Runtime)
                    .map_err(|e| e.to_string())?;
                let pool = build_pool(
                    endpoint.config().clone(),
                    endpoint.tls().clone(),
                    settings,
                    budget,
                    relief,
                )?;
                let secret = provisioner
                    .tenant_token_secret(tenant.id)
                    .map_err(|e| e.to_string())?;
                let keys = tenant::auth::TenantKeys::new(
                    tenant.id,
                    secrecy::ExposeSecret::expose_secret(&secret),
                );
                let storage = provisioner
                    .storage()
                    .tenant(&tenant.slug)
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(Arc::new(TenantRuntime {
                    pool,
                    keys: Arc::new(keys),
                    storage: Arc::new(storage),
                    ledger,
                    demand: Demand::new(),
                }))
            })
            .await
            .map_err(|e| Refusal::TenantUnavailable(e.to_string()))
    }
}

/// Middleware: requests for a tenant host are served by the tenant router with their
/// tenant's context; requests for an owner host go on to the owner routes.
pub async fn dispatch(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let trusted = peer.is_some_and(|ip| state.config.trusted_proxies.contains(&ip));
    let client = client_addr(peer, &state.config.trusted_proxies, req.headers());
    req.extensions_mut().insert(ClientAddr(client));
    let host = match trusted.then(|| forwarded_host(req.headers())).flatten() {
        Some(forwarded) => forwarded,
        None => request_host(&req),
    };
    let host = match host {
        Ok(host) => host,
        Err(why) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_host", why).into_response();
        }
    };
    let gateway = &state.gateway;
    if gateway.is_owner_host(&host) {
        return next.run(req).await;
    }
    match serve_tenant(gateway, &host, req).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

async fn serve_tenant(
    gateway: &Gateway,
    host: &str,
    mut req: Request,
) -> Result<Response, Refusal> {
    let tenant = match gateway.resolve(host).await? {
        Resolution::Unknown => return Err(Refusal::UnknownTenant),
        Resolution::Tenant(t) => t,
    };
    tracing::Span::current().record("tenant_id", tracing::field::display(tenant.id));
    gateway.count_request(tenant.id);
    match tenant.status {
        TenantStatus::Active => {}
        TenantStatus::Suspended => return Err(Refusal::Suspended),
        TenantStatus::Provisioning => return Err(Refusal::Provisioning),
        TenantStatus::Deleting | TenantStatus::Deleted => return Err(Refusal::UnknownTenant),
    }
    let runtime = gateway.runtime(&tenant).await?;
    runtime.demand.record();
    let client_ip = req.extensions().get::<ClientAddr>().and_then(|c| c.0);
    req.extensions_mut().insert(tenant::TenantContext {
        id: tenant.id,
        slug: tenant.slug.clone(),
        pool: runtime.pool.clone(),
        storage: Arc::clone(&runtime.storage),
        keys: Arc::clone(&runtime.keys),
        limits: gateway.limits(&tenant.plan_code).await?,
        ledger: Arc::clone(&runtime.ledger),
        client_ip,
    });
    let response = gateway
        .tenant_router
        .clone()
        .oneshot(req.map(Body::new))
        .await
        .unwrap_or_else(|never| match never {});
    Ok(response)
}
