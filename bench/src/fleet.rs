//! Fleet migration benchmark: apply one small migration (an added column and an index)
//! to N tenant databases (default 1000) with our runner, next to the ways it is done
//! today, all in the same run on the same server:
//!
//! - a sequential loop that connects to each tenant database and runs the SQL
//!   (what tenancy frameworks do);
//! - a shell loop running `psql` once per tenant database (what ops scripts do);
//! - concurrent `psql` sessions over all databases at our concurrency (the floor: no
//!   bookkeeping at all);
//! - and our no-op re-run over the up-to-date fleet.
//!
//! ```sh
//! cargo run --release -p bench --bin fleet -- --tenants 1000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use control_plane::fleet::{DEFAULT_CONCURRENCY, FleetOptions, FleetRun};
use control_plane::provisioning::Faults;
use control_plane::{Config, Services};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Server URL without a database name (a superuser).
    #[arg(long, default_value = "postgres://postgres@localhost:5432")]
    pg: String,
    /// Keep the tenants afterwards (for repeated runs); they are reused if present.
    #[arg(long)]
    keep: bool,
}

const PREFIX: &str = "cpbf_";
const OWNER_DB: &str = "cpbf_owner";

fn sql(column: &str) -> String {
    format!(
        "ALTER TABLE patients ADD COLUMN {column} text; CREATE INDEX patients_{column} ON patients ({column});"
    )
}

fn config(
    args: &Args,
    storage: &std::path::Path,
    dir: Option<&std::path::Path>,
) -> anyhow::Result<Config> {
    let mut config = bench::config(&args.pg, OWNER_DB, PREFIX, storage)?;
    config.tenant_migrations_dir = dir.map(|d| d.to_path_buf());
    Ok(config)
}

fn line(label: &str, d: Duration, base: Duration) {
    println!(
        "{label:<62} {:>9.2} s   {:>6.2}x the floor",
        d.as_secs_f64(),
        d.as_secs_f64() / base.as_secs_f64()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin = bench::connect(&format!("{}/postgres", args.pg))
        .await
        .context("connect as admin")?;
    let storage = tempfile::tempdir()?;

    // The fleet: N tenants at the latest embedded version, made by the real provisioner.
    let base = tenant::migrations::latest_version();
    let services = Services::init(
        config(&args, storage.path(), None)?,
        Arc::new(Faults::default()),
    )
    .await?;
    let existing: i64 = {
        let conn = services.owner.conn().await?;
        conn.query_one(
            "SELECT count(*) FROM tenants WHERE status = 'active' AND schema_version = $1",
            &[&base],
        )
        .await?
        .get(0)
    };
    if existing as usize != args.tenants {
        drop(services);
        bench::drop_prefixed(&admin, PREFIX, 4).await?;
        let services = Services::init(
            config(&args, storage.path(), None)?,
            Arc::new(Faults::default()),
        )
        .await?;
        let slugs: Vec<String> = (0..args.tenants).map(|i| format!("t{i:05}")).collect();
        bench::provision_many(&services.provisioner, &slugs).await?;
    }
    let dbs: Vec<String> = {
        let conn = bench::connect(&format!("{}/{OWNER_DB}", args.pg)).await?;
        conn.query(
            "SELECT db_name FROM tenants WHERE status = 'active' ORDER BY created_at",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let n = dbs.len();

    // 1. Ours.
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join(format!("V{}__add_microchip.sql", base + 1)),
        sql("microchip"),
    )?;
    let ours_services = Services::init(
        config(&args, storage.path(), Some(dir.path()))?,
        Arc::new(Faults::default()),
    )
    .await?;
    let options = FleetOptions {
        concurrency: args.concurrency,
        ..FleetOptions::default()
    };
    let started = Instant::now();
    let summary = FleetRun::start(ours_services.fleet.clone(), options.clone(), "bench")
        .await?
        .execute(|_| {})
        .await?;
    let ours = started.elapsed();
    anyhow::ensure!(
        summary.succeeded == n && summary.failed == 0,
        "run: {summary:?}"
    );

    // 2. Our no-op re-run over the up-to-date fleet.
    let started = Instant::now();
    let noop = FleetRun::start(ours_services.fleet.clone(), options, "bench")
        .await?
        .execute(|_| {})
        .await?;
    let noop_time = started.elapsed();
    anyhow::ensure!(noop.total == 0 && noop.up_to_date == n, "no-op: {noop:?}");

    // 3. A sequential loop: connect to each database and run the SQL.
    let started = Instant::now();
    for db in &dbs {
        let client = bench::connect(&format!("{}/{db}", args.pg)).await?;
        client.batch_execute(&sql("bench_seq")).await?;
    }
    let sequential = started.elapsed();

    // 4. A shell loop running psql once per database.
    let list = storage.path().join("dbs.txt");
    std::fs::write(&list, dbs.join("\n"))?;
    let psql_sql = sql("bench_sh");
    let started = Instant::now();
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("while read -r db; do psql -X -q -v ON_ERROR_STOP=1 -d \"{}/$db\" -c \"{psql_sql}\" || exit 1; done < {}", args.pg, list.display()))
        .status()?;
    anyhow::ensure!(status.success(), "psql loop failed");
    let shell = started.elapsed();

    // 5. The floor: concurrent psql sessions at the same concurrency, no bookkeeping.
    let psql_sql = sql("bench_par");
    let started = Instant::now();
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "xargs -P {} -I{{}} psql -X -q -v ON_ERROR_STOP=1 -d \"{}/{{}}\" -c \"{psql_sql}\" < {}",
            args.concurrency,
            args.pg,
            list.display()
        ))
        .status()?;
    anyhow::ensure!(status.success(), "parallel psql failed");
    let floor = started.elapsed();

    println!(
        "fleet migration benchmark: {n} tenant databases, one migration (ADD COLUMN + CREATE INDEX), concurrency {}",
        args.concurrency
    );
    line(
        &format!(
            "concurrent psql sessions, -P {} (the floor)",
            args.concurrency
        ),
        floor,
        floor,
    );
    line(
        &format!(
            "control-plane migrate, concurrency {} (ours)",
            args.concurrency
        ),
        ours,
        floor,
    );
    line(
        "sequential loop: connect to each database, run the SQL",
        sequential,
        floor,
    );
    line("shell loop: psql once per database", shell, floor);
    line(
        "control-plane migrate, no-op re-run over the up-to-date fleet",
        noop_time,
        floor,
    );
    println!(
        "ours vs sequential loop: {:.1}x faster; vs shell loop: {:.1}x faster",
        sequential.as_secs_f64() / ours.as_secs_f64(),
        shell.as_secs_f64() / ours.as_secs_f64()
    );

    drop(ours_services);
    if !args.keep {
        bench::drop_prefixed(&admin, PREFIX, 4).await?;
    }
    Ok(())
}
