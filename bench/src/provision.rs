//! Provisioning benchmark: how long signup waits for a tenant, next to the floor of a
//! bare `CREATE DATABASE` and to the naive way (an empty database plus migrations),
//! all measured in the same run on the same server.
//!
//! ```sh
//! cargo run --release -p bench --bin provision -- --runs 20
//! ```
//!
//! Needs a PostgreSQL superuser at `--pg` (default: postgres@localhost:5432). It makes
//! its own owner database and tenant names (prefix `cpbench_`) and drops them after.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use control_plane::Services;
use control_plane::audit::Actor;
use control_plane::provisioning::{CreateTenant, Faults};

#[derive(Parser)]
struct Args {
    /// Measurements per variant.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Server URL without a database name.
    #[arg(long, default_value = "postgres://postgres@localhost:5432")]
    pg: String,
}

const PREFIX: &str = "cpbench_";

fn stats(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let median = samples[samples.len() / 2];
    let min = samples[0];
    let max = samples[samples.len() - 1];
    println!(
        "{label:<52} median {:>8.1} ms   min {:>8.1} ms   max {:>8.1} ms   (n={})",
        ms(median),
        ms(min),
        ms(max),
        samples.len()
    );
    median
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin_url = format!("{}/postgres", args.pg);
    let admin = bench::connect(&admin_url)
        .await
        .context("connect as admin")?;
    bench::drop_prefixed(&admin, PREFIX, 4).await?;

    let storage = tempfile::tempdir()?;
    let config = bench::config(&args.pg, &format!("{PREFIX}owner"), PREFIX, storage.path())?;
    let services = Services::init(config, Arc::new(Faults::default())).await?;
    let provisioner = &services.provisioner;
    // The template is built once per process; do it before timing anything.
    services
        .servers
        .default_cluster()
        .await?
        .ensure_template()
        .await?;

    let mut bare = Vec::new();
    let mut naive = Vec::new();
    let mut ours = Vec::new();
    for i in 0..args.runs {
        // Interleave the variants so drift on the server affects them alike.
        let name = format!("{PREFIX}bare_{i}");
        let started = Instant::now();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        bare.push(started.elapsed());

        let name = format!("{PREFIX}naive_{i}");
        let started = Instant::now();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        let mut db = bench::connect(&format!("{}/{name}", args.pg)).await?;
        tenant::migrations::migrate(&mut db).await?;
        naive.push(started.elapsed());
        drop(db);

        let slug = format!("bench-{i}");
        let started = Instant::now();
        let tenant = provisioner
            .tenant_create(
                &CreateTenant {
                    slug: slug.clone(),
                    name: slug,
                    ..CreateTenant::default()
                },
                &Actor::cli(),
            )
            .await?;
        let tenant = provisioner.drive(tenant.id).await?;
        ours.push(started.elapsed());
        anyhow::ensure!(tenant.status.as_str() == "active", "tenant not active");
    }

    println!(
        "provisioning benchmark, {} runs each, PostgreSQL at {}",
        args.runs, args.pg
    );
    let bare = stats("bare CREATE DATABASE (baseline)", bare);
    let naive = stats("CREATE DATABASE + tenant migrations (naive)", naive);
    let ours = stats("full tenant provisioning (row..roles..clone..active)", ours);
    println!(
        "ratio full provisioning / bare CREATE DATABASE: {:.2}x",
        ms(ours) / ms(bare)
    );
    println!(
        "ratio naive / bare CREATE DATABASE:             {:.2}x",
        ms(naive) / ms(bare)
    );

    // Where the time of a provisioning goes, from the per-step timings in the audit log.
    let owner_db = bench::connect(&format!("{}/{PREFIX}owner", args.pg)).await?;
    println!("per step (median over the runs, from the audit log):");
    for row in owner_db
        .query(
            "SELECT action, percentile_disc(0.5) WITHIN GROUP (ORDER BY (details->>'ms')::int) \
             FROM audit_log WHERE action LIKE 'tenant.step.%' GROUP BY action ORDER BY min(id)",
            &[],
        )
        .await?
    {
        let action: String = row.get(0);
        let ms: Option<i32> = row.get(1);
        println!("  {action:<40} {:>5} ms", ms.unwrap_or(0));
    }
    drop(owner_db);
    drop(services);
    bench::drop_prefixed(&admin, PREFIX, 4).await?;
    Ok(())
}
