//! Backups at fleet scale, on a scratch scram-sha-256 cluster (as in production: every
//! connection pg_dump and the job open pays a password check):
//!
//! 1. Backing up N tenants with the backup job (`schedule_once`, the default concurrency)
//!    against a shell loop of `pg_dump` per database, and against `xargs -P` running
//!    `pg_dump` at the same concurrency (the floor: no files archived, no manifest, no
//!    records).
//! 2. The gateway's throughput on other tenants while the job runs, against the same load
//!    without it.
//! 3. Backup and restore throughput (MB/s of database) for one tenant with ~100 MB of
//!    rows, against `pg_dump -Fc` and `createdb` + `pg_restore` of the same database.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use control_plane::Application;
use control_plane::audit::Actor;
use control_plane::backups::BackupRequest;
use control_plane::config::DEFAULT_BACKUP_CONCURRENCY;
use control_plane::provisioning::Faults;
use owner::backups::BackupKind;
use scratch_cluster::ScratchCluster;
use tokio_util::sync::CancellationToken;

const OWNER_DB: &str = "bench_backup_owner";
const PREFIX: &str = "bbk_";

#[derive(Parser, Debug)]
struct Args {
    /// Tenants the job backs up.
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// The job's concurrency (the service's default unless given).
    #[arg(long, default_value_t = DEFAULT_BACKUP_CONCURRENCY)]
    concurrency: usize,
    /// Megabytes of rows in the tenant of the throughput measurement.
    #[arg(long, default_value_t = 100)]
    rows_mb: i64,
    /// Tenants the load generator requests while the job runs (not backed up).
    #[arg(long, default_value_t = 50)]
    load_tenants: usize,
    /// Seconds of load, with and without the job.
    #[arg(long, default_value_t = 10)]
    load_secs: u64,
    /// Keep-alive clients of the load generator.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Lines printed as they come and kept for `--out`.
#[derive(Default)]
struct Report(String);

impl Report {
    fn line(&mut self, text: impl AsRef<str>) {
        println!("{}", text.as_ref());
        let _ = writeln!(self.0, "{}", text.as_ref());
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
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

/// `clients` keep-alive clients requesting `GET /api/v1/status` on random `hosts` for
/// `length`; successful requests per second.
async fn load(
    address: &str,
    hosts: &Arc<Vec<String>>,
    clients: usize,
    length: Duration,
) -> (f64, u64) {
    let deadline = Instant::now() + length;
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let hosts = Arc::clone(hosts);
            let url = format!("{address}/api/v1/status");
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .expect("client");
                let (mut ok, mut failed) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let host = &hosts[rand::random_range(0..hosts.len())];
                    match client.get(&url).header("host", host.as_str()).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            ok += 1;
                        }
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for w in futures::future::join_all(workers).await {
        let (o, f) = w.unwrap_or((0, 1));
        ok += o;
        failed += f;
    }
    (ok as f64 / started.elapsed().as_secs_f64(), failed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cluster = ScratchCluster::builder()
        .max_connections(300)
        .shared_buffers("256MB")
        .try_start()
        .context("start a scratch cluster")?;
    let server = cluster.server_url();
    let work = cluster.dir().join("service");
    std::fs::create_dir(&work)?;
    let result = run(&args, &server, &work).await;
    drop(cluster);
    result
}

async fn run(args: &Args, server: &str, work: &Path) -> anyhow::Result<()> {
    let mut report = Report::default();
    let admin = bench::connect(&format!("{server}/postgres")).await?;
    let version: String = admin.query_one("SHOW server_version", &[]).await?.get(0);
    let pg_dump = control_plane::pg::tools::version("pg_dump").await?;

    let mut config = bench::config(server, OWNER_DB, PREFIX, work)?;
    config.listen = "127.0.0.1:0".parse()?;
    config.backup_root = Some(work.join("backups"));
    config.backup_concurrency = args.concurrency;
    config.backup_schedule_interval = Duration::ZERO;
    config.restore_test_interval = Duration::ZERO;
    config.metering_interval = Duration::ZERO;
    config.reconcile_interval = Duration::from_secs(3600);
    let app = Application::build(config, Arc::new(Faults::default())).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let services = app.services().clone();
    let shutdown = CancellationToken::new();
    let server_task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { app.run(shutdown).await }
    });

    let fleet: Vec<String> = (0..args.tenants).map(|i| format!("b{i:05}")).collect();
    let loaded: Vec<String> = (0..args.load_tenants).map(|i| format!("l{i:03}")).collect();
    let mut all = fleet.clone();
    all.extend(loaded.iter().cloned());
    all.push("big".into());
    bench::provision_many(&services.provisioner, &all).await?;
    let owner = bench::connect(&format!("{server}/{OWNER_DB}")).await?;
    // The load's tenants and the big one count as just backed up, so the job leaves them.
    owner
        .execute(
            "INSERT INTO tenant_backups (id, tenant_id, kind, status, location, requested_by, \
             manifest_sha256, finished_at) SELECT gen_random_uuid(), id, 'scheduled', \
             'succeeded', '/nonexistent', 'bench', 'none', now() FROM tenants \
             WHERE slug LIKE 'l%' OR slug = 'big'",
            &[],
        )
        .await?;
    let dbs: Vec<String> = owner
        .query(
            "SELECT db_name FROM tenants WHERE slug LIKE 'b%' AND slug <> 'big' ORDER BY slug",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();

    report.line(format!(
        "backup benchmark: PostgreSQL {version} (scratch cluster, scram-sha-256 over TCP), {pg_dump}, 2 cores"
    ));

    // 1. The fleet: shell loop, the job, the floor.
    let list = work.join("dbs.txt");
    std::fs::write(&list, dbs.join("\n"))?;
    let loop_dir = work.join("loop");
    std::fs::create_dir_all(&loop_dir)?;
    let shell_loop = shell(&format!(
        "while read -r db; do pg_dump -Fc -f {dir}/$db.dump -d \"{server}/$db\" || exit 1; done < {list}",
        dir = loop_dir.display(),
        list = list.display()
    ))?;
    let started = Instant::now();
    let job = services.backups.schedule_once().await?;
    let ours = started.elapsed();
    anyhow::ensure!(
        job.taken == dbs.len() && job.failed == 0,
        "the job: {job:?}"
    );
    let floor_dir = work.join("floor");
    std::fs::create_dir_all(&floor_dir)?;
    let floor = shell(&format!(
        "xargs -P {p} -I{{}} pg_dump -Fc -f {dir}/{{}}.dump -d \"{server}/{{}}\" < {list}",
        p = args.concurrency,
        dir = floor_dir.display(),
        list = list.display()
    ))?;
    report.line(format!(
        "\n1. backing up {} tenants (each: pg_dump of its database; ours also archives its files, checksums both, writes a manifest and records it)",
        dbs.len()
    ));
    report.line(format!(
        "  shell loop, pg_dump once per database        {:>8.1} s  {:>6.1} tenants/s",
        secs(shell_loop),
        dbs.len() as f64 / secs(shell_loop)
    ));
    report.line(format!(
        "  backup job, concurrency {} (ours)              {:>8.1} s  {:>6.1} tenants/s  {:.2}x faster than the shell loop",
        args.concurrency,
        secs(ours),
        dbs.len() as f64 / secs(ours),
        secs(shell_loop) / secs(ours)
    ));
    report.line(format!(
        "  xargs -P {} pg_dump (the floor: dumps only)    {:>8.1} s  {:>6.1} tenants/s  ours takes {:.2}x the floor",
        args.concurrency,
        secs(floor),
        dbs.len() as f64 / secs(floor),
        secs(ours) / secs(floor)
    ));

    // 2. The gateway on other tenants, without and with the job.
    let hosts = Arc::new(
        loaded
            .iter()
            .map(|s| format!("{s}.localhost"))
            .collect::<Vec<_>>(),
    );
    let length = Duration::from_secs(args.load_secs);
    load(&address, &hosts, args.clients, Duration::from_secs(2)).await;
    let (quiet, quiet_failed) = load(&address, &hosts, args.clients, length).await;
    owner
        .execute(
            "UPDATE tenant_backups SET started_at = started_at - interval '2 days' \
             WHERE requested_by <> 'bench'",
            &[],
        )
        .await?;
    let backups = Arc::clone(&services.backups);
    let job_task = tokio::spawn(async move {
        let started = Instant::now();
        let r = backups.schedule_once().await;
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (busy, busy_failed) = load(&address, &hosts, args.clients, length).await;
    let still_running = !job_task.is_finished();
    let (job2, job2_time) = job_task.await?;
    let job2 = job2?;
    report.line(format!(
        "\n2. the gateway on {} other tenants, GET /api/v1/status, {} keep-alive clients, {} s each",
        loaded.len(),
        args.clients,
        args.load_secs
    ));
    report.line(format!(
        "  without backups                              {quiet:>8.0} req/s  ({quiet_failed} failed)"
    ));
    report.line(format!(
        "  while the job backs up {} tenants            {busy:>8.0} req/s  ({busy_failed} failed)  {:.2}x of the figure without{}",
        job2.taken,
        busy / quiet,
        if still_running {
            String::new()
        } else {
            format!(" (the job ended before the load did, after {:.1} s)", secs(job2_time))
        }
    ));

    // 3. One tenant with rows: backup and restore throughput.
    let big = {
        let conn = services.owner.conn().await?;
        owner::tenants::tenant_fetch_by_slug(&**conn, "big").await?
    };
    let big_db = bench::connect(&format!("{server}/{}", big.db_name)).await?;
    let practice = uuid::Uuid::new_v4();
    big_db
        .execute(
            "INSERT INTO practices (id, name) VALUES ($1, 'Main')",
            &[&practice],
        )
        .await?;
    let base: i64 = big_db
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await?
        .get(0);
    while big_db
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await?
        .get::<_, i64>(0)
        - base
        < args.rows_mb * 1_000_000
    {
        big_db
            .execute(
                "INSERT INTO patients (id, practice_id, name, species, notes) \
                 SELECT gen_random_uuid(), $1, 'patient ' || i, 'dog', repeat(md5(i::text), 8) \
                 FROM generate_series(1, 50000) i",
                &[&practice],
            )
            .await?;
    }
    big_db.batch_execute("VACUUM ANALYZE").await?;
    big_db.batch_execute("CHECKPOINT").await?;
    let size: i64 = big_db
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await?
        .get(0);
    let rows: i64 = big_db
        .query_one("SELECT count(*) FROM patients", &[])
        .await?
        .get(0);
    let mb = size as f64 / 1e6;
    let dump_file = work.join("big.dump");
    let pg_dump_time = shell(&format!(
        "pg_dump -Fc -f {} -d \"{server}/{}\"",
        dump_file.display(),
        big.db_name
    ))?;
    let actor = Actor::system("bench");
    let started = Instant::now();
    let backup = services
        .backups
        .take(
            &big,
            &BackupRequest {
                kind: BackupKind::Manual,
                actor: &actor,
                migration_run_id: None,
            },
        )
        .await?;
    let ours_backup = started.elapsed();
    let scratch = format!("{PREFIX}restore_baseline");
    let pg_restore_time = shell(&format!(
        "createdb --maintenance-db=\"{server}/postgres\" {scratch} && pg_restore --single-transaction --exit-on-error -d \"{server}/{scratch}\" {}",
        dump_file.display()
    ))?;
    admin
        .batch_execute(&format!("DROP DATABASE {scratch} WITH (FORCE)"))
        .await?;
    let started = Instant::now();
    let checked = services.backups.check(&big, backup.id).await?;
    let verify_time = started.elapsed();
    services.backups.restore(&big, &checked, &actor).await?;
    let ours_restore = started.elapsed();
    report.line(format!(
        "\n3. one tenant with {rows} rows: database {mb:.0} MB, dump {:.0} MB",
        backup.database_bytes.unwrap_or(0) as f64 / 1e6
    ));
    report.line(format!(
        "  pg_dump -Fc                                  {:>8.1} s  {:>6.1} MB/s",
        secs(pg_dump_time),
        mb / secs(pg_dump_time)
    ));
    report.line(format!(
        "  backup (ours: snapshot, counts, dump, files, checksums) {:>5.1} s  {:>6.1} MB/s  {:.2}x pg_dump's time",
        secs(ours_backup),
        mb / secs(ours_backup),
        secs(ours_backup) / secs(pg_dump_time)
    ));
    report.line(format!(
        "  createdb + pg_restore --single-transaction   {:>8.1} s  {:>6.1} MB/s",
        secs(pg_restore_time),
        mb / secs(pg_restore_time)
    ));
    report.line(format!(
        "  restore (ours: verify {:.1} s, load aside, grants, counts, swap)  {:>5.1} s  {:>6.1} MB/s  {:.2}x pg_restore's time",
        secs(verify_time),
        secs(ours_restore),
        mb / secs(ours_restore),
        secs(ours_restore) / secs(pg_restore_time)
    ));

    if let Some(out) = &args.out {
        std::fs::write(out, &report.0)?;
    }
    shutdown.cancel();
    let _ = server_task.await;
    Ok(())
}
