//! Moving a tenant with ~100 MB of rows to another server while writers insert rows
//! through the tenant API the whole time, on two scratch scram-sha-256 clusters (one per
//! server, as in production: every connection pays a password check):
//!
//! - ours: `tenants move` (writes paused at the gateway and revoked on the source, reads
//!   served; `pg_dump | pg_restore` to the target; every table's rows and checksum
//!   compared; the switch). The write pause is what the writers saw: the longest time
//!   between two acknowledged writes, and the move's own record.
//! - the baseline, measured on the same data in the same run: the move done by hand with
//!   the same tools and no writes at all meanwhile, `pg_dump -Fc | pg_restore
//!   --single-transaction` into a new database on the target (its whole duration is the
//!   pause an operator imposes without a verification step).
//!
//! Then every acknowledged row is looked for on the target: none may be lost.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use control_plane::Application;
use control_plane::audit::Actor;
use control_plane::provisioning::{AddServer, CreateTenant, Faults};
use scratch_cluster::ScratchCluster;
use tokio_util::sync::CancellationToken;

const OWNER_DB: &str = "bench_move_owner";
const PREFIX: &str = "bmv_";
const PASSWORD: &str = "bench-admin-password";

#[derive(Parser, Debug)]
struct Args {
    /// Megabytes of rows in the tenant moved.
    #[arg(long, default_value_t = 100)]
    rows_mb: i64,
    /// Writers inserting rows through the tenant API during the move.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let source = ScratchCluster::builder()
        .shared_buffers("256MB")
        .try_start()
        .context("start the source cluster")?;
    let target = ScratchCluster::builder()
        .shared_buffers("256MB")
        .try_start()
        .context("start the target cluster")?;
    let work = source.dir().join("service");
    std::fs::create_dir(&work)?;
    let result = run(&args, &source, &target, &work).await;
    drop((source, target));
    result
}

fn shell(script: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .status()?;
    anyhow::ensure!(status.success(), "failed: {script}");
    Ok(started.elapsed())
}

/// What one writer did: the names it was told were stored, when, and how many writes
/// were refused (503 while the move held the tenant's writes).
struct Written {
    stored: Vec<(String, Instant)>,
    refused: u64,
}

async fn writer(
    address: String,
    token: String,
    n: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Written> {
    let client = reqwest::Client::new();
    let mut out = Written {
        stored: vec![],
        refused: 0,
    };
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let name = format!("w{n}-{i}");
        i += 1;
        let response = client
            .post(format!("{address}/api/v1/practices"))
            .header("host", "big.localhost")
            .bearer_auth(&token)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await?;
        match response.status().as_u16() {
            201 => out.stored.push((name, Instant::now())),
            503 => {
                out.refused += 1;
                // The answer says when to retry; a writer in a hurry tries again soon.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => anyhow::bail!("a write answered {other}: {}", response.text().await?),
        }
    }
    Ok(out)
}

async fn run(
    args: &Args,
    source: &ScratchCluster,
    target: &ScratchCluster,
    work: &Path,
) -> anyhow::Result<()> {
    let mut report = String::new();
    let mut line = |text: String| {
        println!("{text}");
        report.push_str(&text);
        report.push('\n');
    };
    let source_url = source.server_url();
    let mut config = bench::config(&source_url, OWNER_DB, PREFIX, work)?;
    config.listen = "127.0.0.1:0".parse()?;
    config.backup_schedule_interval = Duration::ZERO;
    config.restore_test_interval = Duration::ZERO;
    config.metering_interval = Duration::ZERO;
    config.move_grace = Duration::from_secs(3600);
    let app = Application::build(config, Arc::new(Faults::default())).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let services = app.services().clone();
    let shutdown = CancellationToken::new();
    let server_task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { app.run(shutdown).await }
    });

    let created = services
        .provisioner
        .tenant_create(
            &CreateTenant {
                slug: "big".into(),
                name: "Big".into(),
                admin_email: Some("admin@big.example".into()),
                admin_password: Some(PASSWORD.to_string().into()),
                ..CreateTenant::default()
            },
            &Actor::cli(),
        )
        .await?;
    let big = services.provisioner.drive(created.id).await?;
    services
        .servers
        .add(
            AddServer {
                id: "target".into(),
                url: target.url("postgres").into(),
                max_tenants: None,
                connection_budget: None,
                server_group: None,
            },
            &Actor::cli(),
        )
        .await?;

    // ~100 MB of rows.
    let db = bench::connect(&source.url(&big.db_name)).await?;
    let practice = uuid::Uuid::new_v4();
    db.execute(
        "INSERT INTO practices (id, name) VALUES ($1, 'Main')",
        &[&practice],
    )
    .await?;
    let base: i64 = db
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await?
        .get(0);
    loop {
        let now: i64 = db
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await?
            .get(0);
        if now - base >= args.rows_mb * 1_000_000 {
            break;
        }
        db.execute(
            "INSERT INTO patients (id, practice_id, name, species, notes) \
             SELECT gen_random_uuid(), $1, 'patient ' || i, 'dog', repeat(md5(i::text), 8) \
             FROM generate_series(1, 50000) i",
            &[&practice],
        )
        .await?;
    }
    db.batch_execute("VACUUM ANALYZE").await?;
    db.batch_execute("CHECKPOINT").await?;
    let (bytes, rows): (i64, i64) = {
        let row = db
            .query_one(
                "SELECT pg_database_size(current_database()), (SELECT count(*) FROM patients)",
                &[],
            )
            .await?;
        (row.get(0), row.get(1))
    };
    let version: String = db.query_one("SHOW server_version", &[]).await?.get(0);
    line(format!(
        "move benchmark: PostgreSQL {version} (two scratch clusters, scram-sha-256 over TCP), 2 cores"
    ));
    line(format!(
        "tenant: {rows} rows, database {:.0} MB; {} writers inserting through the tenant API the whole time",
        bytes as f64 / 1e6,
        args.writers
    ));

    // The baseline: by hand, same tools, nothing else running.
    let baseline_db = format!("{PREFIX}baseline");
    let baseline = shell(&format!(
        "createdb --maintenance-db=\"{t}/postgres\" {baseline_db} && \
         pg_dump -Fc -d \"{s}/{db}\" | pg_restore --single-transaction --exit-on-error --no-owner --no-acl -d \"{t}/{baseline_db}\"",
        t = target.server_url(),
        s = source_url,
        db = big.db_name,
    ))?;
    shell(&format!(
        "dropdb --maintenance-db=\"{}/postgres\" {baseline_db}",
        target.server_url()
    ))?;

    // Ours, with writers.
    let login: serde_json::Value = reqwest::Client::new()
        .post(format!("{address}/api/v1/auth/login"))
        .header("host", "big.localhost")
        .json(&serde_json::json!({ "email": "admin@big.example", "password": PASSWORD }))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"]
        .as_str()
        .context("tenant login")?
        .to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..args.writers)
        .map(|n| tokio::spawn(writer(address.clone(), token.clone(), n, Arc::clone(&stop))))
        .collect();
    // Let the writers get going before the move starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let moved = services
        .backups
        .move_tenant(&big, "target", &Actor::system("bench"))
        .await?;
    let move_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let mut stored: Vec<(String, Instant)> = vec![];
    let mut refused = 0;
    for w in writers {
        let w = w.await??;
        stored.extend(w.stored);
        refused += w.refused;
    }
    stored.sort_by_key(|(_, at)| *at);
    let longest_gap = stored
        .windows(2)
        .map(|w| w[1].1.duration_since(w[0].1))
        .max()
        .unwrap_or_default();
    let moved_db = bench::connect(&target.url(&big.db_name)).await?;
    let names: std::collections::HashSet<String> = moved_db
        .query("SELECT name FROM practices", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost = stored.iter().filter(|(n, _)| !names.contains(n)).count();

    line(String::new());
    line(format!(
        "  by hand: pg_dump | pg_restore, no writes meanwhile   pause {:>6.2} s (the whole copy; no check)",
        baseline.as_secs_f64()
    ));
    line(format!(
        "  ours: tenants move                                   pause {:>6.2} s recorded, {:.2} s longest gap between acknowledged writes; move {:.2} s in all; {:.2}x the baseline's pause",
        f64::from(moved.write_pause_ms.unwrap_or_default()) / 1000.0,
        longest_gap.as_secs_f64(),
        move_time.as_secs_f64(),
        longest_gap.as_secs_f64() / baseline.as_secs_f64()
    ));
    line(format!(
        "  writes acknowledged {}, refused with 503 during the move {refused}, lost {lost}",
        stored.len()
    ));
    line(format!(
        "  checked before the switch: {} tables (rows and checksum each)",
        moved
            .tables
            .as_ref()
            .and_then(|t| t.as_object())
            .map_or(0, |t| t.len())
    ));
    if let Some(out) = &args.out {
        std::fs::write(out, &report)?;
    }
    shutdown.cancel();
    let _ = server_task.await;
    anyhow::ensure!(lost == 0, "{lost} acknowledged rows were lost");
    Ok(())
}
