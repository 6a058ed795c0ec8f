//! Gateway benchmark: requests per second, p50/p99 latency, errors and connection churn of
//! a simple tenant read (`GET /api/v1/status` on `<slug>.localhost`) through the real
//! service, for a matrix of tenant counts (Zipf-distributed traffic over the set) and
//! connection budgets (`CP_TENANT_CONNECTION_BUDGET`), next to baseline servers answering
//! the same query with no tenant resolution, from a static pool or from a few connections
//! shared by pipelining (the fastest is the reference). One process, same machine, same
//! load generator.
//!
//! By default the bench starts its own scratch PostgreSQL cluster (max_connections 1200,
//! scram-sha-256 over TCP), so tenant roles log in over TCP with SCRAM as in production;
//! `--pg URL` uses an existing server instead. Tenants are provisioned once, for the
//! largest tenant count, and reused by every run; a new service is built for each budget
//! with every other setting at its default (but `--pool-size`).
//!
//! Per run: req/s and its ratio to the best baseline, p50/p99, answers by status (200, 503
//! busy with Retry-After, anything else), new PostgreSQL sessions per second next to the
//! ideal open rate of the same request trace (one connection kept for each of the
//! `budget` most popular tenants, one open for every other request; and the stricter
//! ideal chosen in hindsight of the trace), and
//! the peak of tenant connections. Per service: the first request of cold tenants next to
//! a bare connect + query + close. After each run: open pools and the process's RSS.
//!
//! ```sh
//! cargo run --release -p bench --bin gateway -- --out bench/results/gateway-fleet.txt
//! # the default matrix: --tenants 1,100,1000 --budgets 40,300,1000 --seconds 10 --warmup 3
//! # a quick check: --seconds 2 --warmup 1 --tenants 1,100 --budgets 40,300
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Parser;
use control_plane::Application;
use control_plane::pg::Endpoint;
use control_plane::provisioning::Faults;
use control_plane::services::TenantRole;
use futures::StreamExt;
use scratch_cluster::ScratchCluster;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// Tenant counts to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    tenants: Vec<usize>,
    /// CP_TENANT_CONNECTION_BUDGET values to run (comma-separated); a service per budget.
    #[arg(long, value_delimiter = ',', default_value = "40,300,1000")]
    budgets: Vec<usize>,
    /// Seconds of each timed run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of load before each timed run (not counted).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// CP_TENANT_POOL_SIZE for the service.
    #[arg(long, default_value_t = 5)]
    pool_size: usize,
    /// Baseline pool sizes to try besides the budgets (the fastest is the reference).
    #[arg(long, value_delimiter = ',', default_value = "5,10,20")]
    baseline_sizes: Vec<usize>,
    /// Pipelined baselines to try: connection counts (see `Baseline::Pipelined`).
    #[arg(long, value_delimiter = ',', default_value = "1,2,5")]
    baseline_pipelined: Vec<usize>,
    /// Direct-fleet baselines to run for each tenant count above 1 (see `Fleet`): limits
    /// on the queries in flight over the fleet, 0 for none.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    fleet_in_flight: Vec<usize>,
    /// Before each gateway row, run the fastest baseline and the fastest static pool
    /// again, for ratios side by side (the machine's speed drifts over a long run).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    neighbours: bool,
    /// Internal: serve alone with this budget (see `service_alone`).
    #[arg(long, hide = true)]
    serve_budget: Option<usize>,
    /// Internal: the storage of the service serving alone.
    #[arg(long, hide = true)]
    serve_storage: Option<PathBuf>,
    /// Cold tenants timed per service (taken from the tail of the tenant set).
    #[arg(long, default_value_t = 20)]
    cold: usize,
    /// An existing server (a URL without a database) instead of a scratch cluster.
    #[arg(long)]
    pg: Option<String>,
    /// With --pg: keep the tenants afterwards (a later run reuses them).
    #[arg(long)]
    keep: bool,
    /// Also write the tables to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

const PREFIX: &str = "cpbg_";
const OWNER_DB: &str = "cpbg_owner";
const QUERY: &str = "SELECT current_database(), current_user, (SELECT count(*) FROM practices), (SELECT count(*) FROM users)";
/// How often the peak of tenant connections is sampled. Reading pg_stat_activity walks
/// every backend: at 1000 backends a sample every 20 ms showed in the server's profile
/// (BackendPidGetProc, pg_stat_get_activity), a cost the fleet rows paid and the
/// single-database baselines hardly did. Connections above a tenant's first live at least
/// `Budget::EXTRA_IDLE` (10 s), so 100 ms still sees every peak that matters.
const PEAK_SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Backends report to the statistics with a delay of up to about a second.
const STATS_SETTLE: Duration = Duration::from_millis(1500);

/// What the load generator saw.
struct Drive {
    /// Latencies of the 200 answers.
    latencies: Vec<Duration>,
    /// 503 with Retry-After: the service said it was busy.
    busy: usize,
    /// Any other status, or no answer.
    other: usize,
    /// Requests per tenant index (the trace, as counts).
    per_tenant: Vec<u64>,
    elapsed: Duration,
}

/// The reference baselines measured again just before a gateway row (req/s).
#[derive(Default)]
struct Neighbours {
    best: Option<f64>,
    pool: Option<f64>,
}

struct RunResult {
    ok: usize,
    busy: usize,
    other: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
    peak_tenant_connections: i64,
    /// New PostgreSQL sessions per second on the bench's databases during the run.
    opens_per_sec: f64,
    /// Opens per second of the ideal that knows the tenants' popularity (see `popular_opens`).
    ideal_opens_per_sec: f64,
    /// Opens per second of the ideal chosen in hindsight of the trace (see `hindsight_opens`).
    hindsight_opens_per_sec: f64,
    /// Tenants that got at least one request.
    tenants_hit: usize,
}

/// Sessions ever opened on the bench's databases (the owner database excepted), from
/// `pg_stat_database.sessions` (PostgreSQL 14+). Backends report it with a delay, so
/// callers let the stats settle before reading.
async fn sessions_opened(watcher: &tokio_postgres::Client) -> anyhow::Result<i64> {
    let row = watcher
        .query_one(
            "SELECT coalesce(sum(sessions), 0)::int8 FROM pg_stat_database \
             WHERE datname LIKE 'cpbg\\_%' AND datname <> $1",
            &[&OWNER_DB],
        )
        .await?;
    Ok(row.get(0))
}

/// Sessions open now as the bench's tenant roles.
async fn tenant_sessions(watcher: &tokio_postgres::Client) -> anyhow::Result<i64> {
    let row = watcher
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'cpbg\\_%'",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Zipf(s = 1) over `n` items: item k with weight 1/k.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                total += 1.0 / k as f64;
                total
            })
            .collect::<Vec<_>>();
        let cumulative = cumulative.into_iter().map(|c| c / total).collect();
        Self { cumulative }
    }

    fn sample(&self) -> usize {
        let u: f64 = rand::random::<f64>();
        self.cumulative
            .partition_point(|c| *c < u)
            .min(self.cumulative.len() - 1)
    }
}

/// Opens the ideal scheduler needs for this trace when it knows the tenants' popularity
/// (the Zipf ranks, which are the tenants' indexes): it keeps one connection for each of
/// the `budget` most popular tenants and opens one for every request of any other. This
/// is the issue's ideal (at 1000 tenants and 300 connections, 16% of requests open one).
fn popular_opens(per_tenant: &[u64], budget: usize) -> u64 {
    per_tenant.iter().skip(budget).sum()
}

/// Opens of a stricter ideal, chosen in hindsight: one connection kept for each of the
/// `budget` tenants this very trace requested most. No scheduler that sees requests as
/// they come can match it: among tenants of similar popularity it keeps exactly those
/// that the trace's sampling happened to favour (at 1000 tenants and 300 connections,
/// about 14% of requests open one instead of 16%).
fn hindsight_opens(per_tenant: &[u64], budget: usize) -> u64 {
    let mut counts = per_tenant.to_vec();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    counts.iter().skip(budget).sum()
}

/// `clients` keep-alive clients sending requests for Zipf-chosen hosts for `length`.
async fn drive(url: &str, hosts: &Arc<Vec<String>>, clients: usize, length: Duration) -> Drive {
    let zipf = Arc::new(Zipf::new(hosts.len()));
    let deadline = Instant::now() + length;
    let started = Instant::now();
    let workers = (0..clients).map(|_| {
        let hosts = Arc::clone(hosts);
        let zipf = Arc::clone(&zipf);
        let url = url.to_string();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut out = Drive {
                latencies: Vec::new(),
                busy: 0,
                other: 0,
                per_tenant: vec![0; hosts.len()],
                elapsed: Duration::ZERO,
            };
            while Instant::now() < deadline {
                let index = zipf.sample();
                out.per_tenant[index] += 1;
                let t = Instant::now();
                match client
                    .get(&url)
                    .header("host", hosts[index].as_str())
                    .send()
                    .await
                {
                    Ok(r) => {
                        let status = r.status();
                        let retry_after = r.headers().contains_key(reqwest::header::RETRY_AFTER);
                        let _ = r.bytes().await;
                        if status == StatusCode::OK {
                            out.latencies.push(t.elapsed());
                        } else if status == StatusCode::SERVICE_UNAVAILABLE && retry_after {
                            out.busy += 1;
                        } else {
                            out.other += 1;
                        }
                    }
                    Err(_) => out.other += 1,
                }
            }
            out
        })
    });
    let mut total = Drive {
        latencies: Vec::new(),
        busy: 0,
        other: 0,
        per_tenant: vec![0; hosts.len()],
        elapsed: Duration::ZERO,
    };
    for worker in futures::future::join_all(workers).await {
        let Ok(d) = worker else {
            total.other += 1;
            continue;
        };
        total.latencies.extend(d.latencies);
        total.busy += d.busy;
        total.other += d.other;
        for (sum, n) in total.per_tenant.iter_mut().zip(d.per_tenant) {
            *sum += n;
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// A warm-up, then a timed run with the peak of tenant connections sampled and the
/// sessions opened counted.
async fn measure(
    url: &str,
    hosts: Vec<String>,
    args: &Args,
    budget: usize,
    stats: &tokio_postgres::Client,
    server: &str,
) -> anyhow::Result<RunResult> {
    let hosts = Arc::new(hosts);
    if args.warmup > 0 {
        drive(url, &hosts, args.clients, Duration::from_secs(args.warmup)).await;
    }
    // Let the warm-up's sessions reach the statistics before counting from here.
    tokio::time::sleep(STATS_SETTLE).await;
    let opened_before = sessions_opened(stats).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        let watcher = bench::connect(&format!("{server}/postgres")).await?;
        tokio::spawn(async move {
            let mut peak = 0i64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = tenant_sessions(&watcher).await {
                    peak = peak.max(n);
                }
                tokio::time::sleep(PEAK_SAMPLE_EVERY).await;
            }
            peak
        })
    };
    let mut d = drive(url, &hosts, args.clients, Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let peak_tenant_connections = sampler.await?;
    tokio::time::sleep(STATS_SETTLE).await;
    let opened = sessions_opened(stats).await? - opened_before;
    let seconds = d.elapsed.as_secs_f64();
    d.latencies.sort();
    let pick = |q: f64| {
        d.latencies
            .get(((d.latencies.len() as f64 * q) as usize).min(d.latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(RunResult {
        ok: d.latencies.len(),
        busy: d.busy,
        other: d.other,
        rps: d.latencies.len() as f64 / seconds,
        p50: pick(0.50),
        p99: pick(0.99),
        peak_tenant_connections,
        opens_per_sec: opened as f64 / seconds,
        ideal_opens_per_sec: popular_opens(&d.per_tenant, budget) as f64 / seconds,
        hindsight_opens_per_sec: hindsight_opens(&d.per_tenant, budget) as f64 / seconds,
        tenants_hit: d.per_tenant.iter().filter(|n| **n > 0).count(),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Resident memory of this process, in MiB.
fn rss_mib() -> f64 {
    memory_mib("self", "VmRSS:")
}

/// A memory figure (`VmRSS:`, `VmHWM:`) of process `pid` ("self" for this one), in MiB.
fn memory_mib(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Where the child serving alone finds the server (not on its command line, where `ps`
/// would show the scratch cluster's password).
const SERVE_SERVER_ENV: &str = "CPBG_SERVE_SERVER";

/// The child's side of [`service_alone`]: the service for `budget`, nothing else in the
/// process; prints its port, serves until its standard input closes.
async fn serve_alone(
    budget: usize,
    storage: &std::path::Path,
    pool_size: usize,
) -> anyhow::Result<()> {
    let server = std::env::var(SERVE_SERVER_ENV).context("the server to serve from")?;
    let service = Service::start(&server, storage, pool_size, budget).await?;
    println!("port {}", service.port);
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut rest).await?;
    let stats = bench::connect(&format!("{server}/postgres")).await?;
    service.stop(&stats).await
}

struct Alone {
    tenants: usize,
    budget: usize,
    rss: f64,
    peak: f64,
    connections: i64,
}

/// The service's own memory: the same service in a process of its own (this binary
/// again, see [`serve_alone`]), every one of `slugs` requested once (a pool and a domain
/// cached for each), then its VmRSS and VmHWM.
async fn service_alone(
    server: &str,
    storage: &std::path::Path,
    slugs: &[String],
    budget: usize,
    args: &Args,
    stats: &tokio_postgres::Client,
) -> anyhow::Result<Alone> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--serve-budget")
        .arg(budget.to_string())
        .arg("--serve-storage")
        .arg(storage)
        .arg("--pool-size")
        .arg(args.pool_size.to_string())
        .env(SERVE_SERVER_ENV, server)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("the child's pid")?.to_string();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("its output")?).lines();
    let port: u16 = loop {
        let line = lines
            .next_line()
            .await?
            .context("the child ended before serving")?;
        if let Some(port) = line.strip_prefix("port ") {
            break port.parse()?;
        }
    };
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/status");
    let failed = futures::stream::iter(slugs)
        .map(|slug| {
            let (client, url) = (&client, &url);
            async move {
                let r = client
                    .get(url)
                    .header("host", format!("{slug}.localhost"))
                    .send()
                    .await;
                !matches!(r, Ok(r) if r.status() == StatusCode::OK)
            }
        })
        .buffer_unordered(32)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    anyhow::ensure!(failed == 0, "{failed} requests failed in the service alone");
    let alone = Alone {
        tenants: slugs.len(),
        budget,
        rss: memory_mib(&pid, "VmRSS:"),
        peak: memory_mib(&pid, "VmHWM:"),
        connections: tenant_sessions(stats).await?,
    };
    drop(child.stdin.take());
    child.wait().await?;
    Ok(alone)
}

async fn baseline_status(
    State(pool): State<deadpool_postgres::Pool>,
) -> Result<axum::Json<serde_json::Value>, StatusCode> {
    let conn = pool
        .get()
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    // Prepared once per connection, as the tenant API does: one round trip per query.
    let statement = conn
        .prepare_cached(QUERY)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    status_answer(&conn, &statement).await
}

/// The prepared status query on `client`, answered as the baselines answer it.
async fn status_answer(
    client: &tokio_postgres::Client,
    statement: &tokio_postgres::Statement,
) -> Result<axum::Json<serde_json::Value>, StatusCode> {
    let row = client
        .query_one(statement, &[])
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let practices: i64 = row.get(2);
    Ok(axum::Json(
        serde_json::json!({ "database": row.get::<_, String>(0), "practices": practices }),
    ))
}

/// A connection to `endpoint` with the status query prepared on it.
async fn prepared(
    endpoint: &Endpoint,
) -> anyhow::Result<(tokio_postgres::Client, tokio_postgres::Statement)> {
    let client = endpoint.connect().await?;
    let statement = client.prepare(QUERY).await?;
    Ok((client, statement))
}

/// Connections opened once, each with the statement prepared, shared by all requests.
struct Pipelined {
    connections: Vec<(tokio_postgres::Client, tokio_postgres::Statement)>,
    next: std::sync::atomic::AtomicUsize,
}

async fn pipelined_status(
    State(shared): State<Arc<Pipelined>>,
) -> Result<axum::Json<serde_json::Value>, StatusCode> {
    let turn = shared.next.fetch_add(1, Ordering::Relaxed) % shared.connections.len();
    let (client, statement) = &shared.connections[turn];
    status_answer(client, statement).await
}

/// How a baseline server reaches the database, logging in as the first tenant's runtime
/// role, behind a bare handler.
#[derive(Clone, Copy, PartialEq)]
enum Baseline {
    /// A static deadpool-postgres pool of this size (fast recycling, statements prepared
    /// once per connection): each query has a connection to itself.
    Pool(usize),
    /// This many connections opened once, statements prepared once, requests spread over
    /// them in turn and pipelined (tokio-postgres sends a statement without waiting for
    /// the ones ahead on the session): what the gateway's shared reads do.
    Pipelined(usize),
}

impl Baseline {
    fn connections(self) -> usize {
        match self {
            Self::Pool(n) | Self::Pipelined(n) => n,
        }
    }
}

impl std::fmt::Display for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pool(n) => write!(f, "pool {n}"),
            Self::Pipelined(n) => write!(f, "pipelined {n}"),
        }
    }
}

/// Serves `router` on a free port, [`measure`]s it, and stops it; the connections it
/// holds close with the router, dropped with the server, so they do not count in the
/// runs after.
async fn serve_and_measure(
    router: Router,
    hosts: Vec<String>,
    args: &Args,
    budget: usize,
    stats: &tokio_postgres::Client,
    server: &str,
) -> anyhow::Result<RunResult> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let stop = CancellationToken::new();
    let served = {
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };
    let result = measure(
        &format!("http://127.0.0.1:{port}/api/v1/status"),
        hosts,
        args,
        budget,
        stats,
        server,
    )
    .await;
    stop.cancel();
    let _ = served.await;
    result
}

/// Runs the `kind` baseline against `endpoint`.
async fn baseline(
    endpoint: &Endpoint,
    kind: Baseline,
    args: &Args,
    stats: &tokio_postgres::Client,
    server: &str,
) -> anyhow::Result<RunResult> {
    let (router, pool) = match kind {
        Baseline::Pool(size) => {
            let manager = deadpool_postgres::Manager::from_config(
                endpoint.config().clone(),
                endpoint.tls().clone(),
                deadpool_postgres::ManagerConfig {
                    recycling_method: deadpool_postgres::RecyclingMethod::Fast,
                },
            );
            let pool = deadpool_postgres::Pool::builder(manager)
                .max_size(size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()?;
            let router = Router::new()
                .route("/api/v1/status", get(baseline_status))
                .with_state(pool.clone());
            (router, Some(pool))
        }
        Baseline::Pipelined(count) => {
            let mut connections = Vec::with_capacity(count);
            for _ in 0..count {
                connections.push(prepared(endpoint).await?);
            }
            let shared = Arc::new(Pipelined {
                connections,
                next: Default::default(),
            });
            let router = Router::new()
                .route("/api/v1/status", get(pipelined_status))
                .with_state(shared);
            (router, None)
        }
    };
    let result = serve_and_measure(
        router,
        vec!["baseline.localhost".into()],
        args,
        kind.connections(),
        stats,
        server,
    )
    .await;
    if let Some(pool) = pool {
        pool.close();
    }
    result
}

/// The fleet without the gateway: one connection per tenant database, opened once with the
/// statement prepared, requests routed by Host straight to their tenant's connection and
/// pipelined on it. What PostgreSQL itself does with this many busy databases on this
/// machine, with no connection ever opened during the run: the ceiling of any gateway.
struct Fleet {
    by_host: std::collections::HashMap<String, usize>,
    connections: Vec<(tokio_postgres::Client, tokio_postgres::Statement)>,
    /// At most this many queries in flight over the whole fleet, if set.
    in_flight: Option<tokio::sync::Semaphore>,
}

async fn fleet_status(
    State(fleet): State<Arc<Fleet>>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<serde_json::Value>, StatusCode> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or(StatusCode::BAD_REQUEST)?;
    let index = *fleet.by_host.get(host).ok_or(StatusCode::NOT_FOUND)?;
    let (client, statement) = &fleet.connections[index];
    let _permit = match &fleet.in_flight {
        Some(s) => Some(
            s.acquire()
                .await
                .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?,
        ),
        None => None,
    };
    status_answer(client, statement).await
}

/// Runs the direct-fleet baseline over the tenants of `endpoints` (see `Fleet`).
async fn fleet_baseline(
    endpoints: &[Endpoint],
    hosts: Vec<String>,
    in_flight: Option<usize>,
    args: &Args,
    stats: &tokio_postgres::Client,
    server: &str,
) -> anyhow::Result<RunResult> {
    let mut connections = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        connections.push(prepared(endpoint).await?);
    }
    let fleet = Arc::new(Fleet {
        by_host: hosts.iter().cloned().zip(0..).collect(),
        connections,
        in_flight: in_flight.map(tokio::sync::Semaphore::new),
    });
    let router = Router::new()
        .route("/api/v1/status", get(fleet_status))
        .with_state(fleet);
    let count = hosts.len();
    serve_and_measure(router, hosts, args, count, stats, server).await
}

/// The CONNECTION LIMIT of `role`.
async fn connection_limit(stats: &tokio_postgres::Client, role: &str) -> anyhow::Result<i32> {
    Ok(stats
        .query_one(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await?
        .get(0))
}

/// [`baseline`] with the first tenant's runtime role's CONNECTION LIMIT (2 x pool size +
/// 5, which would refuse the larger pools) lifted, and put back after, errors included.
async fn lifted_baseline(
    endpoint: &Endpoint,
    role: &str,
    kind: Baseline,
    args: &Args,
    stats: &tokio_postgres::Client,
    server: &str,
) -> anyhow::Result<RunResult> {
    let limit = connection_limit(stats, role).await?;
    stats
        .batch_execute(&format!("ALTER ROLE \"{role}\" CONNECTION LIMIT -1"))
        .await?;
    let result = baseline(endpoint, kind, args, stats, server).await;
    stats
        .batch_execute(&format!("ALTER ROLE \"{role}\" CONNECTION LIMIT {limit}"))
        .await?;
    result
}

/// A service built for `budget` on the bench's owner database, serving.
struct Service {
    port: u16,
    state: control_plane::AppState,
    services: control_plane::Services,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<control_plane::Result<()>>,
}

impl Service {
    async fn start(
        server_url: &str,
        storage: &std::path::Path,
        pool_size: usize,
        budget: usize,
    ) -> anyhow::Result<Self> {
        let mut config = bench::config(server_url, OWNER_DB, PREFIX, storage)?;
        config.listen = "127.0.0.1:0".parse()?;
        config.tenant_pool_size = pool_size;
        config.tenant_connection_budget = Some(budget);
        // Scheduled backups off: they would take the new tenants' first backups during the
        // runs, and their sessions (an admin connection and pg_dump's, per tenant) would
        // count as connections opened and take CPU from the requests.
        config.backup_schedule_interval = Duration::ZERO;
        let app = Application::build(config, Arc::new(Faults::default())).await?;
        let port = app.port();
        let state = app.state().clone();
        let services = app.services().clone();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.run(shutdown.clone()));
        Ok(Self {
            port,
            state,
            services,
            shutdown,
            server,
        })
    }

    /// Stops serving and closes the tenant pools, and waits (a while) for their sessions
    /// to end so the next service starts from none.
    async fn stop(self, stats: &tokio_postgres::Client) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server.await??;
        self.state.gateway.forget(None).await;
        self.state.gateway.open_pools().await;
        drop(self.state);
        drop(self.services);
        for _ in 0..50 {
            if tenant_sessions(stats).await? == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let left = tenant_sessions(stats).await?;
        eprintln!("note: {left} tenant sessions still open after the service stopped; ending them");
        stats
            .batch_execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename LIKE 'cpbg\\_%'",
            )
            .await?;
        Ok(())
    }
}

struct Cold {
    gateway: Duration,
    bare: Duration,
    samples: usize,
}

/// The first request of each of `slugs` on a service that has not served them yet, next
/// to a bare connect + the same query + close as the same role (after one untimed connect,
/// so both find the database's caches equally warm).
async fn cold_requests(service: &Service, slugs: &[String]) -> anyhow::Result<Cold> {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/api/v1/status", service.port);
    // Open the keep-alive connection first (any answer will do): only the tenant's cold
    // path is timed, not a TCP connect to the service.
    let _ = client.get(&url).send().await?.bytes().await;
    let mut gateway = Vec::new();
    let mut bare = Vec::new();
    for slug in slugs {
        let tenant = {
            let conn = service.state.owner.conn().await?;
            owner::tenants::tenant_fetch_by_slug(&**conn, slug).await?
        };
        let endpoint = service
            .services
            .access
            .endpoint(&tenant, TenantRole::Runtime)
            .await?;
        for timed in [false, true] {
            let t = Instant::now();
            let (pg, connection) = endpoint.config().connect(endpoint.tls().clone()).await?;
            let connection = tokio::spawn(connection);
            pg.query_one(QUERY, &[]).await?;
            drop(pg);
            let _ = connection.await;
            if timed {
                bare.push(t.elapsed());
            }
        }
        let t = Instant::now();
        let response = client
            .get(&url)
            .header("host", format!("{slug}.localhost"))
            .send()
            .await?;
        let status = response.status();
        let _ = response.bytes().await;
        anyhow::ensure!(
            status == StatusCode::OK,
            "cold request for {slug}: {status}"
        );
        gateway.push(t.elapsed());
    }
    Ok(Cold {
        samples: gateway.len(),
        gateway: median(gateway),
        bare: median(bare),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let (Some(budget), Some(storage)) = (args.serve_budget, &args.serve_storage) {
        return serve_alone(budget, storage, args.pool_size).await;
    }
    anyhow::ensure!(
        !args.tenants.is_empty() && !args.budgets.is_empty(),
        "--tenants and --budgets need at least one value each"
    );
    anyhow::ensure!(
        args.tenants.iter().all(|n| *n > 0),
        "tenant counts must be positive"
    );
    anyhow::ensure!(
        args.baseline_sizes
            .iter()
            .chain(&args.baseline_pipelined)
            .all(|n| *n > 0),
        "baseline pool sizes and pipelined connection counts must be positive"
    );
    // The cluster lives until the end of main, errors included; Drop stops and removes it.
    let cluster = match &args.pg {
        Some(_) => None,
        None => Some(
            ScratchCluster::builder()
                .max_connections(1200)
                .try_start()
                .context("start a scratch cluster")?,
        ),
    };
    let (server, where_) = match (&args.pg, &cluster) {
        (Some(pg), _) => (pg.clone(), "an existing server (--pg)".to_string()),
        (None, Some(c)) => (
            c.server_url(),
            "a scratch cluster (max_connections 1200, scram-sha-256 over TCP)".to_string(),
        ),
        (None, None) => unreachable!(),
    };
    // The service's data and storage: inside the scratch cluster's directory, so the sweep
    // removes them too after a killed run.
    let (_storage_dir, storage) = match &cluster {
        Some(c) => {
            let path = c.dir().join("service");
            std::fs::create_dir(&path)?;
            (None, path)
        }
        None => {
            let dir = tempfile::tempdir()?;
            let path = dir.path().to_path_buf();
            (Some(dir), path)
        }
    };
    let result = run(&args, &server, &where_, &storage).await;
    if args.pg.is_some() && !args.keep {
        let admin = bench::connect(&format!("{server}/postgres"))
            .await
            .context("connect as admin")?;
        bench::drop_prefixed(&admin, PREFIX, 4).await?;
    }
    // The scratch cluster, if any, goes with everything on it.
    drop(cluster);
    result
}

async fn run(
    args: &Args,
    server: &str,
    where_: &str,
    storage: &std::path::Path,
) -> anyhow::Result<()> {
    let stats = bench::connect(&format!("{server}/postgres"))
        .await
        .context("connect as admin")?;
    let version: String = stats.query_one("SHOW server_version", &[]).await?.get(0);
    let most = *args.tenants.iter().max().expect("checked");

    // The fleet, provisioned once for the largest count (reused if a kept run left it).
    let (slugs, endpoints, first_role) = {
        let mut config = bench::config(server, OWNER_DB, PREFIX, storage)?;
        config.listen = "127.0.0.1:0".parse()?;
        // The runtime roles' CONNECTION LIMIT follows the pool size.
        config.tenant_pool_size = args.pool_size;
        config.backup_schedule_interval = Duration::ZERO;
        let app = Application::build(config, Arc::new(Faults::default())).await?;
        let owner = app.state().owner.clone();
        let existing: Vec<String> = {
            let conn = owner.conn().await?;
            conn.query(
                "SELECT slug FROM tenants WHERE status = 'active' ORDER BY slug",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
        };
        let mut slugs = existing;
        if slugs.len() < most {
            let missing: Vec<String> = (slugs.len()..most).map(|i| format!("g{i:05}")).collect();
            bench::provision_many(&app.state().provisioner, &missing).await?;
            slugs.extend(missing);
            slugs.sort();
        }
        slugs.truncate(most);
        // Every tenant's runtime endpoint, for the direct-fleet baselines (the first
        // tenant's alone when there are none).
        let fleet_wanted = !args.fleet_in_flight.is_empty() && most > 1;
        let conn = owner.conn().await?;
        let mut endpoints = Vec::new();
        let mut first_role = String::new();
        for slug in slugs.iter().take(if fleet_wanted { most } else { 1 }) {
            let tenant = owner::tenants::tenant_fetch_by_slug(&**conn, slug).await?;
            if first_role.is_empty() {
                first_role = tenant.runtime_role.clone();
            }
            endpoints.push(
                app.services()
                    .access
                    .endpoint(&tenant, TenantRole::Runtime)
                    .await?,
            );
        }
        (slugs, endpoints, first_role)
    };
    let first_endpoint = &endpoints[0];

    let mut out = String::new();
    let _ = writeln!(
        out,
        "gateway benchmark: GET /api/v1/status, {} keep-alive clients, {} s timed after {} s warm-up per run, \
         Zipf(s=1) over the tenant set; PostgreSQL {version} on {where_}; tenant roles log in over {}; \
         service settings at their defaults but CP_TENANT_POOL_SIZE={} and CP_TENANT_CONNECTION_BUDGET per row.",
        args.clients,
        args.seconds,
        args.warmup,
        if args.pg.is_some() {
            "the URL's transport"
        } else {
            "TCP with SCRAM"
        },
        args.pool_size,
    );
    println!("{out}");

    // The baseline: the first tenant's database, as its runtime role, one static pool.
    let mut sizes: Vec<usize> = args
        .baseline_sizes
        .iter()
        .chain(&args.budgets)
        .copied()
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let kinds = sizes.into_iter().map(Baseline::Pool).chain(
        args.baseline_pipelined
            .iter()
            .map(|&n| Baseline::Pipelined(n)),
    );
    let role_limit = connection_limit(&stats, &first_role).await?;
    let mut baselines = Vec::new();
    for kind in kinds {
        let r = lifted_baseline(first_endpoint, &first_role, kind, args, &stats, server).await?;
        println!(
            "baseline {:>13}: {:>7.0} req/s  p50 {:>6.2} ms  p99 {:>7.2} ms  errors {}  new connections {:.1}/s  peak tenant connections {}",
            kind.to_string(),
            r.rps,
            ms(r.p50),
            ms(r.p99),
            r.busy + r.other,
            r.opens_per_sec,
            r.peak_tenant_connections
        );
        baselines.push((kind, r));
    }
    let fastest = |pools_only: bool| {
        baselines
            .iter()
            .filter(|(kind, _)| !pools_only || matches!(kind, Baseline::Pool(_)))
            .max_by(|(_, a), (_, b)| a.rps.total_cmp(&b.rps))
            .map(|(kind, r)| (*kind, r.rps))
    };
    let (best_kind, best) = fastest(false).context("no baseline ran")?;
    // The best where each query has a connection to itself, the reference of earlier runs.
    let best_pool_kind = fastest(true).map(|(kind, _)| kind);
    let best_pool = fastest(true).map_or(0.0, |(_, rps)| rps);

    let mut counts = args.tenants.clone();
    counts.sort_unstable();
    counts.dedup();
    let mut fleets = Vec::new();
    for &n in counts.iter().filter(|n| **n > 1 && **n <= endpoints.len()) {
        for &limit in &args.fleet_in_flight {
            let hosts: Vec<String> = slugs[..n]
                .iter()
                .map(|s| format!("{s}.localhost"))
                .collect();
            let in_flight = (limit > 0).then_some(limit);
            let r = fleet_baseline(&endpoints[..n], hosts, in_flight, args, &stats, server).await?;
            println!(
                "direct fleet {n:>4} tenants, in flight {:>4}: {:>7.0} req/s ({:.2}x the best pool)  p50 {:>6.2} ms  p99 {:>7.2} ms  errors {}  new connections {:.1}/s  peak tenant connections {}",
                in_flight.map_or("any".to_string(), |l| l.to_string()),
                r.rps,
                r.rps / best_pool,
                ms(r.p50),
                ms(r.p99),
                r.busy + r.other,
                r.opens_per_sec,
                r.peak_tenant_connections
            );
            fleets.push((n, in_flight, r));
        }
    }

    let mut rows = Vec::new();
    let mut colds = Vec::new();
    for &budget in &args.budgets {
        let service = Service::start(server, storage, args.pool_size, budget).await?;
        let cold_slugs = &slugs[slugs.len() - args.cold.min(slugs.len())..];
        if !cold_slugs.is_empty() {
            let cold = cold_requests(&service, cold_slugs).await?;
            println!(
                "budget {budget}: cold tenant first request median {:.2} ms, bare connect+query+close {:.2} ms ({:.2}x, {} tenants)",
                ms(cold.gateway),
                ms(cold.bare),
                cold.gateway.as_secs_f64() / cold.bare.as_secs_f64(),
                cold.samples
            );
            colds.push((budget, cold));
            // Their pools would hold budget permits through the runs: closed, and the
            // domain cache emptied, as a change of every tenant would.
            service.state.gateway.forget(None).await;
            service.state.gateway.open_pools().await;
        }
        for &n in &counts {
            let hosts: Vec<String> = slugs[..n]
                .iter()
                .map(|s| format!("{s}.localhost"))
                .collect();
            // The machine's speed drifts over a run of many minutes: the two reference
            // baselines again, just before the row, for ratios taken side by side.
            let mut neighbours = Neighbours::default();
            if args.neighbours {
                let neighbour = |kind: Baseline| {
                    let (first_role, stats) = (&first_role, &stats);
                    async move {
                        let r =
                            lifted_baseline(first_endpoint, first_role, kind, args, stats, server)
                                .await?;
                        println!("  neighbour {kind}: {:.0} req/s", r.rps);
                        anyhow::Ok(r.rps)
                    }
                };
                let best_now = neighbour(best_kind).await?;
                neighbours.best = Some(best_now);
                // When a static pool is the fastest baseline, one run serves as both.
                neighbours.pool = match best_pool_kind {
                    Some(kind) if kind == best_kind => Some(best_now),
                    Some(kind) => Some(neighbour(kind).await?),
                    None => None,
                };
            }
            let r = measure(
                &format!("http://127.0.0.1:{}/api/v1/status", service.port),
                hosts,
                args,
                budget,
                &stats,
                server,
            )
            .await?;
            let pools = service.state.gateway.open_pools().await;
            let rss = rss_mib();
            println!(
                "tenants {n:>4} budget {budget:>4}: {:>7.0} req/s ({:.2}x, {:.2}x the best pool)  p50 {:>6.2} ms  p99 {:>7.2} ms  200 {}  503 busy {}  other {}  \
                 new connections {:.1}/s (ideal {:.1}/s, in hindsight {:.1}/s)  peak tenant connections {}  pools open {pools}  RSS {rss:.0} MiB",
                r.rps,
                r.rps / best,
                r.rps / best_pool,
                ms(r.p50),
                ms(r.p99),
                r.ok,
                r.busy,
                r.other,
                r.opens_per_sec,
                r.ideal_opens_per_sec,
                r.hindsight_opens_per_sec,
                r.peak_tenant_connections,
            );
            if let (Some(b), Some(p)) = (neighbours.best, neighbours.pool) {
                println!(
                    "  side by side: {:.2}x the best baseline, {:.2}x the best pool",
                    r.rps / b,
                    r.rps / p
                );
            }
            rows.push((n, budget, r, pools, rss, neighbours));
        }
        service.stop(&stats).await?;
    }

    // The service's own memory, in a process of its own, at the most tenants and budget.
    let largest_budget = args.budgets.iter().copied().max().expect("checked");
    let alone = service_alone(server, storage, &slugs, largest_budget, args, &stats).await?;
    println!(
        "service alone, {} tenants requested once each, budget {}: RSS {:.0} MiB (peak {:.0} MiB), {} tenant connections",
        alone.tenants, alone.budget, alone.rss, alone.peak, alone.connections
    );

    // The tables.
    let _ = writeln!(
        out,
        "\nBaselines, logged in as the first tenant's runtime role with its CONNECTION LIMIT ({role_limit}) lifted, \
         no tenant resolution, the statement prepared once per connection. pool N: a static deadpool-postgres pool \
         (fast recycling), each query on a connection of its own; pools larger than the {} clients never grow past \
         them. pipelined N: N connections opened once, requests spread over them in turn and pipelined on them, as \
         the gateway's shared reads are:\n",
        args.clients
    );
    let _ = writeln!(
        out,
        "| baseline | req/s | p50 ms | p99 ms | errors | new conn/s | peak tenant conns |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
    for (kind, r) in &baselines {
        let mark = if r.rps == best { " (best)" } else { "" };
        let _ = writeln!(
            out,
            "| {kind}{mark} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {} |",
            r.rps,
            ms(r.p50),
            ms(r.p99),
            r.busy + r.other,
            r.opens_per_sec,
            r.peak_tenant_connections
        );
    }
    if !fleets.is_empty() {
        let _ = writeln!(
            out,
            "\nDirect fleet, no gateway: one connection per tenant database opened before the run (statement prepared), \
             requests routed by Host to their tenant's connection and pipelined on it, optionally at most N queries in \
             flight over the fleet. What PostgreSQL does with this many busy databases here, with no connection opened: \
             the ceiling of any gateway.\n"
        );
        let _ = writeln!(
            out,
            "| tenants | in flight | req/s | x best baseline | x best pool | p50 ms | p99 ms | errors | new conn/s | peak tenant conns |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (n, in_flight, r) in &fleets {
            let _ = writeln!(
                out,
                "| {n} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {} |",
                in_flight.map_or("any".to_string(), |l| l.to_string()),
                r.rps,
                r.rps / best,
                r.rps / best_pool,
                ms(r.p50),
                ms(r.p99),
                r.busy + r.other,
                r.opens_per_sec,
                r.peak_tenant_connections
            );
        }
    }
    let _ = writeln!(
        out,
        "\nGateway (the real service, in-process). \"x best baseline\" and \"x best pool\" are against the baselines above, \
         measured at the start of the run; \"side by side\" against the fastest baseline ({best_kind}) and the fastest static \
         pool run again just before the row, with the service up and idle (the machine's speed drifts by tens of percent \
         over a run of many minutes):\n"
    );
    let _ = writeln!(
        out,
        "| tenants | budget | req/s | x best baseline | x best pool | x best baseline, side by side | x best pool, side by side | p50 ms | p99 ms | 200 | 503 busy | other | new conn/s | ideal conn/s | actual/ideal | hindsight conn/s | actual/hindsight | peak tenant conns | tenants hit | pools open | RSS MiB |"
    );
    let _ = writeln!(
        out,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (n, budget, r, pools, rss, neighbours) in &rows {
        let side = |rps: Option<f64>| rps.map_or("-".to_string(), |b| format!("{:.2}", r.rps / b));
        let (side_best, side_pool) = (side(neighbours.best), side(neighbours.pool));
        let ratio = |ideal: f64| {
            if ideal > 0.0 {
                format!("{:.2}", r.opens_per_sec / ideal)
            } else {
                "- (ideal 0)".to_string()
            }
        };
        let (ratio, hindsight_ratio) = (
            ratio(r.ideal_opens_per_sec),
            ratio(r.hindsight_opens_per_sec),
        );
        let _ = writeln!(
            out,
            "| {n} | {budget} | {:.0} | {:.2} | {:.2} | {side_best} | {side_pool} | {:.2} | {:.2} | {} | {} | {} | {:.1} | {:.1} | {ratio} | {:.1} | {hindsight_ratio} | {} | {} | {pools} | {rss:.0} |",
            r.rps,
            r.rps / best,
            r.rps / best_pool,
            ms(r.p50),
            ms(r.p99),
            r.ok,
            r.busy,
            r.other,
            r.opens_per_sec,
            r.ideal_opens_per_sec,
            r.hindsight_opens_per_sec,
            r.peak_tenant_connections,
            r.tenants_hit,
        );
    }
    if !colds.is_empty() {
        let _ = writeln!(
            out,
            "\nCold tenant, first request on a service that has not served it (median; tenants from the tail of the set), \
             next to a bare tokio_postgres connect + the same query + close as the same role over the same transport:\n"
        );
        let _ = writeln!(
            out,
            "| budget | tenants | first request ms | bare connect+query+close ms | ratio |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|");
        for (budget, c) in &colds {
            let _ = writeln!(
                out,
                "| {budget} | {} | {:.2} | {:.2} | {:.2} |",
                c.samples,
                ms(c.gateway),
                ms(c.bare),
                c.gateway.as_secs_f64() / c.bare.as_secs_f64()
            );
        }
    }
    let _ = writeln!(
        out,
        "\nnew conn/s: pg_stat_database.sessions summed over the tenant databases, read {:.1} s after the warm-up and after the run \
         (a statistics delay). ideal conn/s: for the same request trace, one connection kept for each of the `budget` most \
         popular tenants (by their Zipf rank) and one opened for every request of any other tenant (0 when tenants <= budget). \
         hindsight conn/s: the same with the `budget` tenants this trace requested most, a bound no online scheduler reaches. \
         RSS: VmRSS of this process after the run; the service runs in-process, so it includes the load generator, \
         the baselines' leftovers and earlier services: an upper bound on the service's own.",
        STATS_SETTLE.as_secs_f64()
    );
    if let Some((_, _, _, pools, rss, _)) = rows.iter().find(|(n, b, ..)| *n == 1000 && *b == 1000)
    {
        let _ = writeln!(
            out,
            "With 1000 tenants and budget 1000: RSS {rss:.0} MiB (upper bound, see above), {pools} tenant pools open."
        );
    }
    let _ = writeln!(
        out,
        "The service alone (the same service in a process of its own, each of the {} tenants requested once, so a pool \
         and a domain are cached for each; budget {}): RSS {:.0} MiB, peak {:.0} MiB, {} tenant connections open.",
        alone.tenants, alone.budget, alone.rss, alone.peak, alone.connections
    );
    println!("\n{out}");
    if let Some(path) = &args.out {
        std::fs::write(path, &out).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
