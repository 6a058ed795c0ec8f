//! Dashboard benchmark: how long the tenants page (and the overview) takes to answer with
//! 10,000 tenants: default order, a deep page, free-text search over names, slugs and
//! domains, sorting by name, filters. The baseline, measured in the same run, is the same
//! default page over a fleet of 100 tenants. Each figure is the median and the p99 of
//! sequential requests through the real service (rendering included).
//!
//! Tenant rows are written straight into the owner database (the page reads nothing
//! else), with a primary domain and three usage samples each; no tenant databases exist.
//!
//! ```sh
//! cargo run --release -p bench --bin dashboard -- --tenants 10000
//! ```

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use control_plane::Application;
use control_plane::provisioning::Faults;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    tenants: i64,
    /// Requests per measured page.
    #[arg(long, default_value_t = 100)]
    requests: usize,
    #[arg(long, default_value = "postgres://postgres@localhost:5432")]
    pg: String,
}

const OWNER_DB: &str = "cpbd_owner";
const PREFIX: &str = "cpbd_";
const PASSWORD: &str = "bench-operator-password";

/// Adds tenants `from..to` (rows only): names from a small vocabulary so searches match a
/// realistic share, statuses and plans mixed, a primary domain and usage samples each.
async fn add_tenants(owner: &tokio_postgres::Client, from: i64, to: i64) -> anyhow::Result<()> {
    owner
        .batch_execute(&format!(
            "WITH words(w) AS (SELECT unnest(ARRAY['north','south','east','west','city','valley','river','lake','hill','harbor']))
             INSERT INTO tenants (id, slug, name, status, provisioning_step, plan_code, server_id, db_name,
                 owner_role, runtime_role, owner_password_enc, runtime_password_enc, secret_key_version,
                 schema_version, created_at, activated_at)
             SELECT gen_random_uuid(), 't' || i, initcap((SELECT w FROM words OFFSET i % 10 LIMIT 1)) || ' '
                   || (CASE WHEN i % 3 = 0 THEN 'Vets' WHEN i % 3 = 1 THEN 'Clinic' ELSE 'Animal Care' END) || ' ' || i,
                 CASE WHEN i % 20 = 0 THEN 'suspended' ELSE 'active' END, 'ready',
                 (ARRAY['free','starter','pro','enterprise'])[1 + i % 4], 'default',
                 '{PREFIX}fake_' || i, '{PREFIX}fake_' || i || '_owner', '{PREFIX}fake_' || i || '_app',
                 '\\x00', '\\x00', 1, 1 + (i % 7 = 0)::int,
                 now() - (i || ' minutes')::interval, now() - (i || ' minutes')::interval
             FROM generate_series({from}, {to} - 1) AS i;
             INSERT INTO tenant_domains (domain, tenant_id, is_primary, verified)
             SELECT slug || '.localhost', id, true, true FROM tenants WHERE db_name LIKE '{PREFIX}fake\\_%'
             ON CONFLICT DO NOTHING;
             INSERT INTO tenant_usage (tenant_id, sampled_at, database_bytes, storage_bytes, users, requests)
             SELECT t.id, now() - (k || ' hours')::interval, 8000000 + k * 1000, 1000 * k, 3, 10
             FROM tenants t, generate_series(1, 3) AS k
             WHERE t.db_name LIKE '{PREFIX}fake\\_%'
               AND NOT EXISTS (SELECT 1 FROM tenant_usage u WHERE u.tenant_id = t.id);
             ANALYZE tenants; ANALYZE tenant_domains; ANALYZE tenant_usage;"
        ))
        .await?;
    Ok(())
}

/// Median and p99 of `n` sequential GETs of `path`; every answer must be 200.
async fn measure(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    n: usize,
) -> anyhow::Result<(Duration, Duration, usize)> {
    let mut times = Vec::with_capacity(n);
    let mut bytes = 0;
    for i in 0..n + 5 {
        let start = Instant::now();
        let response = http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "{path}: {}", response.status());
        bytes = response.bytes().await?.len();
        // The first few warm caches and connections.
        if i >= 5 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    let p50 = times[times.len() / 2];
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    Ok((p50, p99, bytes))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin = bench::connect(&format!("{}/postgres", args.pg)).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {OWNER_DB} WITH (FORCE)"))
        .await?;
    let dir = tempfile::tempdir()?;
    let mut config = bench::config(&args.pg, OWNER_DB, PREFIX, dir.path())?;
    config.listen = "127.0.0.1:0".parse()?;
    // Nothing in the background: the fleet's rows have no databases behind them.
    config.metering_interval = Duration::ZERO;
    config.reconcile_interval = Duration::from_secs(24 * 3600);
    let app = Application::build(config, std::sync::Arc::new(Faults::default())).await?;
    let base = format!("http://{}", app.address());
    let state = app.state().clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));

    let owner = bench::connect(&format!("{}/{OWNER_DB}", args.pg)).await?;
    let hash = control_plane::auth::hash_password(PASSWORD)?;
    owner
        .execute(
            "INSERT INTO owner_users (id, email, password_hash, role) VALUES (gen_random_uuid(), 'bench@example.com', $1, 'owner')",
            &[&hash],
        )
        .await?;
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{base}/api/owner/auth/login"))
        .json(&serde_json::json!({"email": "bench@example.com", "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().context("no token")?.to_string();

    let mut lines = vec![format!(
        "dashboard benchmark: sequential GETs through the real service (rendering included), {} requests each after 5 warm-up; median and p99",
        args.requests
    )];
    let mut report = |label: &str, (p50, p99, bytes): (Duration, Duration, usize)| {
        let line = format!(
            "{label:<58} p50 {:>7.2} ms   p99 {:>7.2} ms   ({} kB)",
            ms(p50),
            ms(p99),
            bytes / 1000
        );
        println!("{line}");
        lines.push(line);
    };

    add_tenants(&owner, 0, 100).await?;
    report(
        "baseline: tenants page, 100 tenants",
        measure(&http, &base, &token, "/owner/tenants", args.requests).await?,
    );
    let started = Instant::now();
    add_tenants(&owner, 100, args.tenants).await?;
    println!(
        "added {} tenants in {:.1} s",
        args.tenants - 100,
        started.elapsed().as_secs_f64()
    );
    let n = args.tenants;
    for (label, path) in [
        ("tenants page, newest first", "/owner/tenants".to_string()),
        (
            "tenants page, page 150 (offset 7450)",
            "/owner/tenants?page=150".into(),
        ),
        (
            "search \"river\" (name, slug or domain)",
            "/owner/tenants?q=river".into(),
        ),
        (
            "search by domain \"t4242.localhost\"",
            "/owner/tenants?q=t4242.localhost".into(),
        ),
        ("search with no match", "/owner/tenants?q=zzzz-none".into()),
        ("sorted by name", "/owner/tenants?sort=name&dir=asc".into()),
        (
            "filtered: suspended on pro",
            "/owner/tenants?status=suspended&plan=pro".into(),
        ),
        ("overview page", "/owner".into()),
        (
            "owner API list (JSON, 100 rows)",
            "/api/owner/tenants?limit=100".into(),
        ),
    ] {
        report(
            &format!("{label}, {n} tenants"),
            measure(&http, &base, &token, &path, args.requests).await?,
        );
    }
    std::fs::create_dir_all("bench/results").ok();
    std::fs::write("bench/results/dashboard.txt", lines.join("\n") + "\n")
        .context("write bench/results/dashboard.txt (run from the repository root)")?;

    shutdown.cancel();
    let _ = server.await;
    drop(state);
    drop(owner);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {OWNER_DB} WITH (FORCE)"))
        .await?;
    bench::drop_prefixed(&admin, PREFIX, 4).await?;
    Ok(())
}
