//! A tenant's connection pool, logging in as the tenant's runtime role, whose every open
//! connection holds a permit of a fleet-wide budget: however many tenant pools exist,
//! the service never holds more tenant connections than the budget.
//!
//! The pool knows nothing of other tenants: it is handed the budget and a way to ask
//! for relief (closing an idle connection elsewhere) when the budget is spent.
//!
//! Scheduling, once the budget is spent (measured in bench/src/gateway.rs: opening a
//! PostgreSQL connection costs a backend fork and a login, milliseconds, while a query
//! on an open one costs a fraction of a millisecond, so the aim is to open as few as
//! possible):
//! - a tenant that already holds a connection never takes budget from another tenant: when
//!   all its connections are busy it waits for one of its own to come back (within the
//!   same bounded wait), which is much sooner than a new connection would be ready;
//! - only a tenant holding no connection at all asks for relief, and only one request of
//!   that tenant at a time (the others wait for the connection it opens);
//! - a tenant grows past its first connection (up to its pool size) only while requests
//!   of its own wait (deadpool opens a connection only then) and the budget has more free
//!   than its reserve, so tenants with none can still open their first without relief;
//! - those extra connections are the first closed: after [`Budget::EXTRA_IDLE`] idle
//!   (connections are handed out last-in first-out, so a tenant's extras are the ones that
//!   go idle) and first when relief is asked for.
//!
//! Connections are recycled without a round trip (as deadpool's fast method: a connection
//! whose socket closed is dropped); dead ones are found by [`TenantPool::sweep`] in the
//! background, and a request that meets one anyway is retried once by the gateway when it
//! is safe to (see `ConnectionLost` in the tenant API).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult, TimeoutType};
use deadpool_postgres::ClientWrapper;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How soon a connection waiting for budget asks for relief again after relief found
/// nothing to close.
const RELIEF_INTERVAL: Duration = Duration::from_millis(20);
/// How often a request waiting for its tenant's own busy connections looks again even
/// without being woken (budget may have been freed, or its connections closed meanwhile).
const SATURATED_RECHECK: Duration = Duration::from_millis(20);

/// How soon it asks again after relief closed a connection: the permit freed normally
/// reaches it at once, unless an earlier waiter took it (whose own relief found nothing).
/// Asking sooner would close connections nobody needs, each re-opened later by its
/// tenant.
const RELIEF_AFTER_CLOSE: Duration = Duration::from_millis(100);

/// Asked to free budget (close an idle connection of another pool) before waiting for
/// it; says whether it closed one.
pub type Relief = Arc<dyn Fn() -> bool + Send + Sync>;

/// The fleet-wide limit on tenant connections: one permit per open connection.
#[derive(Debug)]
pub struct Budget {
    permits: Arc<Semaphore>,
    limit: usize,
    /// Permits a tenant's extra connection may not take: kept for first connections.
    reserve: usize,
}

impl Budget {
    /// How long a tenant's extra connection (beyond its first) stays open unused.
    pub const EXTRA_IDLE: Duration = Duration::from_secs(10);

    /// A budget of `limit` connections. A tenth of it (none below ten) is kept for
    /// tenants opening their first connection: an extra connection saves a tenant a short
    /// wait on its own, while a tenant with none cannot be served at all without one.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            reserve: limit / 10,
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The part of the budget outside the reserve.
    pub fn beyond_reserve(&self) -> usize {
        self.limit - self.reserve
    }

    /// Connections open (or being opened) now.
    pub fn in_use(&self) -> usize {
        self.limit.saturating_sub(self.permits.available_permits())
    }

    /// A permit for a tenant's extra connection, if the budget has more free than its
    /// reserve.
    fn try_extra(&self) -> Option<OwnedSemaphorePermit> {
        if self.permits.available_permits() <= self.reserve {
            return None;
        }
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }
}

/// Counts a connection of one pool, open or being opened, while it lives.
struct Held(Arc<AtomicUsize>);

impl Held {
    /// Counts one more connection; returns it with how many were counted before.
    fn count(held: &Arc<AtomicUsize>) -> (Self, usize) {
        let before = held.fetch_add(1, Ordering::SeqCst);
        (Self(Arc::clone(held)), before)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Asked for the tenant's logins again when the server refuses every password the pool
/// has: another process may have rotated them (`tenants rotate-credentials`).
pub type Relogin = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = Option<Vec<tokio_postgres::Config>>> + Send>>
        + Send
        + Sync,
>;

pub struct BudgetedManager {
    /// How to log in: the tenant's current password, then (while a rotation is in
    /// flight) its new one. Replaced when a relogin finds others.
    logins: std::sync::RwLock<Arc<[tokio_postgres::Config]>>,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    relogin: Option<Relogin>,
    budget: Arc<Budget>,
    budget_wait: Duration,
    relief: Relief,
    /// This pool's connections, open or being opened.
    held: Arc<AtomicUsize>,
}

/// A connection and the budget permit it holds; the permit returns when it closes.
pub struct BudgetedClient {
    client: ClientWrapper,
    _permit: OwnedSemaphorePermit,
    _held: Held,
}

impl Deref for BudgetedClient {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        &self.client
    }
}

/// For transactions (`Client::transaction` takes `&mut self`).
impl DerefMut for BudgetedClient {
    fn deref_mut(&mut self) -> &mut ClientWrapper {
        &mut self.client
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("tenant database: {}", crate::chain(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("the tenant connection budget is spent")]
    Budget,
    /// The budget is spent and this pool already holds connections: wait for one of
    /// them rather than take budget from another tenant. Handled inside
    /// [`TenantPool::get`], never returned by it.
    #[error("every connection of this tenant is busy and the budget is spent")]
    Saturated,
}

impl managed::Manager for BudgetedManager {
    type Type = BudgetedClient;
    type Error = ConnectError;

    async fn create(&self) -> Result<BudgetedClient, ConnectError> {
        let (held, before) = Held::count(&self.held);
        let permit = if before > 0 {
            // An extra connection: only from free budget beyond the reserve. Otherwise
            // this tenant waits for one of its own (see `TenantPool::get`): closing another
            // tenant's connection to open one here would cost two connection set-ups to
            // save a wait of one query.
            self.budget.try_extra().ok_or(ConnectError::Saturated)?
        } else if let Ok(permit) = Arc::clone(&self.budget.permits).try_acquire_owned() {
            permit
        } else {
            // This tenant holds nothing: it cannot be served without relief. Permits are
            // held by open connections, idle ones included, and idle connections only
            // close when asked: ask again while waiting, since connections keep going idle
            // in other pools. One acquire future kept for the whole wait holds this
            // request's place in the semaphore's FIFO queue (a fresh one per attempt would
            // go to the back each time and let later requests overtake: a long tail of
            // waits).
            let acquire = Arc::clone(&self.budget.permits).acquire_owned();
            tokio::pin!(acquire);
            let deadline = tokio::time::sleep(self.budget_wait);
            tokio::pin!(deadline);
            let mut ask_at = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    // In this order: a permit already granted is taken before relief would
                    // close one more connection for nothing.
                    biased;
                    permit = &mut acquire => break permit.map_err(|_| ConnectError::Budget)?,
                    _ = &mut deadline => return Err(ConnectError::Budget),
                    _ = tokio::time::sleep_until(ask_at) => {
                        let closed = (self.relief)();
                        let again = if closed { RELIEF_AFTER_CLOSE } else { RELIEF_INTERVAL };
                        ask_at = tokio::time::Instant::now() + again;
                    }
                }
            }
        };
        metrics::counter!("tenant_connections_opened_total").increment(1);
        let client = self.log_in().await?;
        Ok(BudgetedClient {
            client,
            _permit: permit,
            _held: held,
        })
    }

    async fn recycle(&self, obj: &mut BudgetedClient, _: &Metrics) -> RecycleResult<ConnectError> {
        // No round trip: a connection whose socket closed is dropped here, one that died
        // unnoticed is found by `TenantPool::sweep` or fails its request, which the
        // gateway retries once when it is safe to.
        if obj.client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        Ok(())
    }
}

/// Whether the server refused the password (not the network, not the database).
fn password_refused(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD)
}

impl BudgetedManager {
    /// A new session, with the first login the server accepts; when it refuses them all,
    /// with the logins a relogin finds (kept for the next connections).
    async fn log_in(&self) -> Result<ClientWrapper, tokio_postgres::Error> {
        let logins = Arc::clone(&self.logins.read().unwrap_or_else(|p| p.into_inner()));
        match self.first_accepted(&logins).await {
            Err(e) if password_refused(&e) => {
                let Some(fresh) = (match &self.relogin {
                    Some(relogin) => relogin().await,
                    None => None,
                }) else {
                    return Err(e);
                };
                if fresh.is_empty() {
                    return Err(e);
                }
                let fresh: Arc<[tokio_postgres::Config]> = fresh.into();
                *self.logins.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&fresh);
                tracing::info!("tenant pool logs in with credentials read again");
                self.first_accepted(&fresh).await
            }
            other => other,
        }
    }

    async fn first_accepted(
        &self,
        logins: &[tokio_postgres::Config],
    ) -> Result<ClientWrapper, tokio_postgres::Error> {
        let mut refused = None;
        for config in logins {
            match config.connect(self.tls.clone()).await {
                Ok((client, connection)) => {
                    let task = tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "tenant connection ended");
                        }
                    });
                    return Ok(ClientWrapper::new(client, task));
                }
                Err(e) if password_refused(&e) => refused = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(refused.expect("a pool has at least one login"))
    }
}

type Inner = managed::Pool<BudgetedManager>;
pub type PoolError = managed::PoolError<ConnectError>;

/// A tenant's pool. Cheap to clone (all clones share one pool).
#[derive(Clone)]
pub struct TenantPool {
    inner: Inner,
    /// Woken each time a connection of this pool is handed back.
    returned: Arc<Notify>,
    wait: Duration,
    /// The connection most recently checked out for shared reads, while it is out.
    shared: Arc<std::sync::Mutex<Weak<Serving>>>,
    /// Requests waiting for a connection of their own while the tenant may not grow.
    exclusive_waiting: Arc<AtomicUsize>,
    /// Shared connections whose last holder is handing them back.
    returning: Arc<AtomicUsize>,
    /// Held by the read choosing the next serving connection.
    choosing: Arc<tokio::sync::Mutex<()>>,
}

/// Statements a shared connection may have queued before a read takes another
/// connection of its tenant (if it may have one). One session pipelining many small reads
/// answers them faster than as many sessions each running one: on the 2-core bench
/// machine, one pipelined connection served about 1.9x the requests per second of the
/// best static pool, and the gateway with a depth of 64 about 1.2x what it served with
/// 16 (bench/src/gateway.rs, 1 tenant, 64 clients). A statement waits for those ahead
/// of it on the session, so the depth bounds that wait; only small reads share (the
/// status check, the user behind a token).
pub const PIPELINE_DEPTH: usize = 64;

/// A connection serving single statements that read outside any transaction, possibly
/// several requests' at once: tokio-postgres pipelines them on the one session, which
/// runs them one after another. It goes back to the pool when its last holder drops
/// it. Only [`TenantPool::shared`] makes one, and nothing that holds one can open a
/// transaction (that takes the connection exclusively), so a statement pipelined here
/// never runs inside another request's transaction.
pub struct SharedConnection(Option<Arc<Serving>>);

/// A connection out for shared reads, and how many hold it (counted apart from the
/// `Arc`'s references, which a look at the serving connection takes too).
struct Serving {
    connection: TenantConnection,
    holders: AtomicUsize,
    /// The pool's count of shared connections being handed back (see `shared`).
    returning: Arc<AtomicUsize>,
}

impl SharedConnection {
    /// A hold on `serving`, unless it has `limit` holders already.
    fn join(serving: Arc<Serving>, limit: Option<usize>) -> Option<Self> {
        let before = serving.holders.fetch_add(1, Ordering::SeqCst);
        if limit.is_some_and(|limit| before >= limit) {
            serving.holders.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Self(Some(serving)))
    }

    fn serving(&self) -> &Serving {
        self.0.as_ref().expect("held until dropped")
    }
}

impl Drop for SharedConnection {
    fn drop(&mut self) {
        let Some(serving) = self.0.take() else {
            return;
        };
        serving.holders.fetch_sub(1, Ordering::SeqCst);
        // Announced before the last reference goes: a read that then finds no serving
        // connection knows this one is on its way back to the pool, and waits for it
        // rather than opening another.
        let returning = Arc::clone(&serving.returning);
        returning.fetch_add(1, Ordering::SeqCst);
        drop(Arc::into_inner(serving));
        returning.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Deref for SharedConnection {
    type Target = BudgetedClient;

    fn deref(&self) -> &BudgetedClient {
        &self.serving().connection
    }
}

/// A connection of a tenant's pool; handed back to the pool when dropped.
pub struct TenantConnection {
    object: Option<managed::Object<BudgetedManager>>,
    returned: Arc<Notify>,
}

impl Deref for TenantConnection {
    type Target = BudgetedClient;

    fn deref(&self) -> &BudgetedClient {
        self.object.as_ref().expect("a connection until dropped")
    }
}

impl DerefMut for TenantConnection {
    fn deref_mut(&mut self) -> &mut BudgetedClient {
        self.object.as_mut().expect("a connection until dropped")
    }
}

impl Drop for TenantConnection {
    fn drop(&mut self) {
        // Hand the connection back first, then wake a request waiting for one.
        drop(self.object.take());
        self.returned.notify_one();
    }
}

impl TenantPool {
    /// A connection of this tenant, waiting at most the pool's wait for one. When the
    /// budget is spent and every connection of the tenant is busy, waits for one of them
    /// to come back (see the module notes) instead of failing or taking another
    /// tenant's budget.
    pub async fn get(&self) -> Result<TenantConnection, PoolError> {
        self.wait_for(true, tokio::time::Instant::now() + self.wait)
            .await
    }

    /// [`Self::get`]; an `exclusive` caller that cannot have a connection at once counts
    /// as waiting until it has one, which stops shared reads from joining busy
    /// connections, so they come back to the pool.
    async fn wait_for(
        &self,
        exclusive: bool,
        deadline: tokio::time::Instant,
    ) -> Result<TenantConnection, PoolError> {
        let mut waiting: Option<Held> = None;
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            // Registered before looking, so a connection handed back meanwhile wakes us.
            returned.as_mut().enable();
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(PoolError::Timeout(TimeoutType::Wait));
            }
            // An exclusive caller's first look does not wait, so it is counted as waiting
            // (below) before it waits for the pool too.
            let first_look = exclusive && waiting.is_none();
            let timeouts = managed::Timeouts {
                wait: Some(if first_look {
                    Duration::ZERO
                } else {
                    remaining
                }),
                ..self.inner.timeouts()
            };
            match self.inner.timeout_get(&timeouts).await {
                Ok(object) => return Ok(self.connection(object)),
                Err(managed::PoolError::Timeout(TimeoutType::Wait)) if first_look => {
                    waiting = Some(Held::count(&self.exclusive_waiting).0);
                }
                Err(managed::PoolError::Backend(ConnectError::Saturated)) => {
                    if exclusive && waiting.is_none() {
                        waiting = Some(Held::count(&self.exclusive_waiting).0);
                    }
                    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let _ = tokio::time::timeout(SATURATED_RECHECK.min(remaining), returned).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A connection for one statement that reads outside any transaction (see
    /// [`SharedConnection`]): the connection already serving such reads, this statement
    /// pipelined behind theirs, while fewer than [`PIPELINE_DEPTH`] are queued there;
    /// else an idle connection of this tenant, or a new one when the policy lets the
    /// tenant grow; else the serving connection however deep its queue. A busy tenant's
    /// reads are then not held up by its connection count (a tenant of a full budget has
    /// one): waiting costs the statements ahead on that session, not whole requests.
    /// While a request waits for a connection of its own, reads join no connection.
    pub async fn shared(&self) -> Result<SharedConnection, PoolError> {
        if let Some(joined) = self.join_serving(Some(PIPELINE_DEPTH)) {
            return Ok(joined);
        }
        // One read at a time picks the next serving connection; the others then join it
        // instead of each taking (or opening) one of their own.
        let deadline = tokio::time::Instant::now() + self.wait;
        let _turn = tokio::time::timeout_at(deadline, self.choosing.lock())
            .await
            .map_err(|_| managed::PoolError::Timeout(TimeoutType::Wait))?;
        loop {
            if let Some(joined) = self.join_serving(Some(PIPELINE_DEPTH)) {
                return Ok(joined);
            }
            // The serving connection's last holder is handing it back, on another thread:
            // a matter of instructions. Without this wait, the read would find no idle
            // connection and open one, to be closed idle later (churn under steady load).
            if self.returning.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let now = managed::Timeouts {
            wait: Some(Duration::ZERO),
            ..self.inner.timeouts()
        };
        let connection = match self.inner.timeout_get(&now).await {
            Ok(object) => self.connection(object),
            Err(
                managed::PoolError::Timeout(TimeoutType::Wait)
                | managed::PoolError::Backend(ConnectError::Saturated),
            ) => {
                if let Some(joined) = self.join_serving(None) {
                    return Ok(joined);
                }
                self.wait_for(false, deadline).await?
            }
            Err(e) => return Err(e),
        };
        let serving = Arc::new(Serving {
            connection,
            holders: AtomicUsize::new(1),
            returning: Arc::clone(&self.returning),
        });
        *self.shared.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(&serving);
        Ok(SharedConnection(Some(serving)))
    }

    /// A hold on the connection serving shared reads now, unless it is gone, its session
    /// closed, or it has `limit` holders already.
    fn join_serving(&self, limit: Option<usize>) -> Option<SharedConnection> {
        // A request waiting for a connection of its own would otherwise wait for as long
        // as reads keep coming.
        if self.exclusive_waiting.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let serving = self
            .shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()?;
        if serving.connection.client.is_closed() {
            return None;
        }
        SharedConnection::join(serving, limit)
    }

    fn connection(&self, object: managed::Object<BudgetedManager>) -> TenantConnection {
        TenantConnection {
            object: Some(object),
            returned: Arc::clone(&self.returned),
        }
    }

    /// Requests waiting for a connection of their own while the tenant may not grow;
    /// while there are any, shared reads do not join busy connections.
    pub fn exclusive_waiting(&self) -> usize {
        self.exclusive_waiting.load(Ordering::SeqCst)
    }

    pub fn status(&self) -> managed::Status {
        self.inner.status()
    }

    /// How long the connection idle longest in this pool has been idle (`None` without
    /// idle connections).
    pub fn longest_idle(&self) -> Option<Duration> {
        let mut longest = None;
        let _ = self.inner.retain(|_, metrics| {
            longest = longest.max(Some(metrics.last_used()));
            true
        });
        longest
    }

    /// Closes the connection idle longest in this pool, if any is idle; returns whether
    /// one was closed. Connections in use are never closed.
    pub fn close_longest_idle(&self) -> bool {
        let Some(longest) = self.longest_idle() else {
            return false;
        };
        let mut closed = false;
        let _ = self.inner.retain(|_, metrics| {
            if !closed && metrics.last_used() >= longest {
                closed = true;
                return false;
            }
            true
        });
        closed
    }

    /// Drops idle connections whose server side is gone, and closes idle extra
    /// connections (beyond the tenant's first) unused for `extra_idle`; returns how many
    /// extras it closed. Run in the background for every pool.
    pub fn sweep(&self, extra_idle: Duration) -> usize {
        let size = self.inner.status().size;
        let (mut kept, mut extras_closed) = (size, 0);
        // Idle connections come least recently used first (handed out last-in first-out),
        // so the tenant keeps the one it used last.
        let _ = self.inner.retain(|client, metrics| {
            let dead = client.client.is_closed();
            let extra = !dead && kept > 1 && metrics.last_used() >= extra_idle;
            if dead || extra {
                kept -= 1;
                extras_closed += usize::from(extra);
            }
            !(dead || extra)
        });
        if extras_closed > 0 {
            metrics::counter!("tenant_extra_connections_closed_total")
                .increment(extras_closed as u64);
        }
        extras_closed
    }

    /// Closes every idle connection; those in use close when handed back, once the last
    /// clone of the pool is gone.
    pub fn close_idle(&self) {
        let _ = self.inner.retain(|_, _| false);
    }
}

/// Sizes and waits of one tenant pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_size: usize,
    /// Longest a request waits for a connection of its tenant.
    pub wait: Duration,
    /// Longest opening a connection may take (budget wait included).
    pub connect: Duration,
}

/// Builds a pool for one tenant. Connections are recycled without a round trip: one
/// whose socket closed (a server restart, `pg_terminate_backend`) is dropped, not handed
/// out; see the module notes for the rest.
pub fn build_pool(
    logins: Vec<tokio_postgres::Config>,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    settings: PoolSettings,
    budget: Arc<Budget>,
    relief: Relief,
    relogin: Option<Relogin>,
) -> Result<TenantPool, String> {
    if logins.is_empty() {
        return Err("a tenant pool needs a login".into());
    }
    let manager = BudgetedManager {
        logins: std::sync::RwLock::new(logins.into()),
        tls,
        relogin,
        budget,
        budget_wait: settings.connect,
        relief,
        held: Arc::new(AtomicUsize::new(0)),
    };
    let inner = managed::Pool::builder(manager)
        .max_size(settings.max_size)
        // Last in, first out: a tenant's busiest connection serves it again, and the ones
        // it needed only for a burst go idle and are closed by `sweep`.
        .queue_mode(managed::QueueMode::Lifo)
        .wait_timeout(Some(settings.wait))
        .create_timeout(Some(settings.connect + Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(TenantPool {
        inner,
        returned: Arc::new(Notify::new()),
        wait: settings.wait,
        shared: Arc::default(),
        exclusive_waiting: Arc::default(),
        returning: Arc::default(),
        choosing: Arc::default(),
    })
}
