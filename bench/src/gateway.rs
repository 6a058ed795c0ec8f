//! Gateway benchmark: requests per second and p50/p99 latency of a simple tenant read
//! (`GET /api/v1/status` on `<slug>.localhost`) through the real service with 1, 100 and
//! 1000 tenants (Zipf-distributed over the set), next to a baseline server answering the
//! same query from one static pool with no tenant resolution, and the peak number of
//! PostgreSQL connections during each run. One process, same machine, same load generator.
//!
//! ```sh
//! cargo run --release -p bench --bin gateway -- --tenants 1000 --seconds 10
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use clap::Parser;
use control_plane::Application;
use control_plane::provisioning::Faults;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value = "postgres://postgres@localhost:5432")]
    pg: String,
    /// Keep the tenants afterwards.
    #[arg(long)]
    keep: bool,
    /// CP_TENANT_POOL_SIZE for the service.
    #[arg(long, default_value_t = 5)]
    pool_size: usize,
    /// CP_TENANT_CONNECTION_BUDGET for the service (and the baseline's pool size).
    #[arg(long, default_value_t = 40)]
    budget: usize,
}

const PREFIX: &str = "cpbg_";
const OWNER_DB: &str = "cpbg_owner";
const QUERY: &str = "SELECT current_database(), current_user, (SELECT count(*) FROM practices), (SELECT count(*) FROM users)";

struct RunResult {
    requests: usize,
    errors: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
    peak_connections: i64,
    /// Connections logged in as tenant roles (what the budget bounds).
    peak_tenant_connections: i64,
    /// New PostgreSQL sessions per second on the bench's databases during the run: each
    /// costs a backend fork and authentication, so churn here is lost throughput.
    opens_per_sec: f64,
}

/// Sessions ever opened on the bench's databases (the owner database excepted), from
/// `pg_stat_database.sessions` (PostgreSQL 14+). Backends report it with a delay of up to
/// about a second, so callers let the stats settle before reading.
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

async fn load(
    url: &str,
    hosts: Arc<Vec<String>>,
    args: &Args,
    pg: &str,
) -> anyhow::Result<RunResult> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = bench::connect(&format!("{pg}/postgres")).await?;
    // Let sessions of the previous run reach the statistics before counting from here.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let opened_before = sessions_opened(&stats).await?;
    let sampler = {
        let stop = Arc::clone(&stop);
        let watcher = bench::connect(&format!("{pg}/postgres")).await?;
        tokio::spawn(async move {
            let (mut peak, mut peak_tenant) = (0i64, 0i64);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(row) = watcher
                    .query_one(
                        "SELECT count(*), count(*) FILTER (WHERE usename LIKE 'cpbg\\_%') FROM pg_stat_activity \
                         WHERE backend_type = 'client backend'",
                        &[],
                    )
                    .await
                {
                    peak = peak.max(row.get(0));
                    peak_tenant = peak_tenant.max(row.get(1));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (peak, peak_tenant)
        })
    };
    let zipf = Arc::new(Zipf::new(hosts.len()));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let workers = (0..args.clients).map(|_| {
        let hosts = Arc::clone(&hosts);
        let zipf = Arc::clone(&zipf);
        let url = url.to_string();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let host = &hosts[zipf.sample()];
                let t = Instant::now();
                match client.get(&url).header("host", host.as_str()).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        })
    });
    let mut latencies = Vec::new();
    let mut errors = 0;
    for result in futures::future::join_all(workers).await {
        let (l, e) = result?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (peak_connections, peak_tenant_connections) = sampler.await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let opened = sessions_opened(&stats).await? - opened_before;
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(RunResult {
        requests: latencies.len(),
        errors,
        rps: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        peak_connections,
        peak_tenant_connections,
        opens_per_sec: opened as f64 / elapsed.as_secs_f64(),
    })
}

fn report(label: &str, r: &RunResult) {
    println!(
        "{label:<44} {:>8.0} req/s   p50 {:>6.2} ms   p99 {:>7.2} ms   peak PG connections {:>3} (tenant roles {:>3})   new connections {:>6.1}/s   ({} ok, {} errors)",
        r.rps,
        r.p50.as_secs_f64() * 1000.0,
        r.p99.as_secs_f64() * 1000.0,
        r.peak_connections,
        r.peak_tenant_connections,
        r.opens_per_sec,
        r.requests,
        r.errors
    );
}

async fn baseline_status(
    State(pool): State<deadpool_postgres::Pool>,
) -> axum::Json<serde_json::Value> {
    let conn = pool.get().await.expect("connection");
    let row = conn.query_one(QUERY, &[]).await.expect("query");
    let practices: i64 = row.get(2);
    axum::Json(serde_json::json!({ "database": row.get::<_, String>(0), "practices": practices }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin = bench::connect(&format!("{}/postgres", args.pg))
        .await
        .context("connect as admin")?;
    let storage = tempfile::tempdir()?;
    let mut config = bench::config(&args.pg, OWNER_DB, PREFIX, storage.path())?;
    config.listen = "127.0.0.1:0".parse()?;
    config.tenant_pool_size = args.pool_size;
    config.tenant_connection_budget = Some(args.budget);
    let budget = args.budget;
    let app = Application::build(config, Arc::new(Faults::default())).await?;
    let port = app.port();
    let provisioner = Arc::clone(&app.state().provisioner);
    let owner = app.state().owner.clone();

    // The fleet (reused if a kept run left it).
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
    if slugs.len() < args.tenants {
        let missing: Vec<String> = (slugs.len()..args.tenants)
            .map(|i| format!("g{i:05}"))
            .collect();
        bench::provision_many(&provisioner, &missing).await?;
        slugs.extend(missing);
        slugs.sort();
    }
    slugs.truncate(args.tenants);

    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));

    // The baseline: one static pool on one tenant database, no resolution at all.
    let first_db: String = {
        let conn = owner.conn().await?;
        conn.query_one("SELECT db_name FROM tenants WHERE slug = $1", &[&slugs[0]])
            .await?
            .get(0)
    };
    let mut pg_config = deadpool_postgres::Config::new();
    pg_config.url = Some(format!("{}/{first_db}", args.pg));
    pg_config.pool = Some(deadpool_postgres::PoolConfig::new(budget));
    let pool = pg_config.create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )?;
    let baseline = Router::new()
        .route("/api/v1/status", get(baseline_status))
        .with_state(pool.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let baseline_port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, baseline).await });

    println!(
        "gateway benchmark: GET /api/v1/status, {} clients, {} s per run, Zipf(s=1) over the tenant set; tenant connection budget {budget}, tenant pool size {}",
        args.clients, args.seconds, args.pool_size
    );
    let base = load(
        &format!("http://127.0.0.1:{baseline_port}/api/v1/status"),
        Arc::new(vec!["baseline.localhost".into()]),
        &args,
        &args.pg,
    )
    .await?;
    report("baseline: one static pool, no resolution", &base);
    // Close the baseline's connections: left open, they would take `budget` of the
    // server's max_connections during the gateway runs and count in their peaks.
    pool.close();
    for n in [1usize, 100, 1000]
        .into_iter()
        .filter(|n| *n <= slugs.len())
    {
        let hosts: Vec<String> = slugs[..n]
            .iter()
            .map(|s| format!("{s}.localhost"))
            .collect();
        let r = load(
            &format!("http://127.0.0.1:{port}/api/v1/status"),
            Arc::new(hosts),
            &args,
            &args.pg,
        )
        .await?;
        report(&format!("gateway, {n} tenant(s)"), &r);
        println!(
            "{:<44} {:.2}x the baseline's throughput",
            "",
            r.rps / base.rps
        );
    }

    shutdown.cancel();
    let _ = server.await;
    if !args.keep {
        bench::drop_prefixed(&admin, PREFIX, 4).await?;
    }
    Ok(())
}
