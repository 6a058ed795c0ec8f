//! How soon a serving process sees a change made by another process (the CLI, another
//! replica), on a scratch scram-sha-256 cluster: a second set of services suspends and
//! resumes a tenant N times, and after each change a client polls the serving process
//! until its answer follows (403 `tenant_suspended`, then 200). Reported: the time from
//! the change's commit to the first answer that follows it, p50, p95 and max. Without the
//! change feed the same answer waits for the domain cache's entry to expire: up to
//! `KNOWN_TTL` (30 s), which is the baseline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use control_plane::audit::Actor;
use control_plane::provisioning::{CreateTenant, Faults};
use control_plane::{Application, Services};
use scratch_cluster::ScratchCluster;
use tokio_util::sync::CancellationToken;

const OWNER_DB: &str = "bench_replicas_owner";
const PREFIX: &str = "brp_";

#[derive(Parser, Debug)]
struct Args {
    /// Changes made (half suspensions, half resumptions).
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cluster = ScratchCluster::builder()
        .try_start()
        .context("start a scratch cluster")?;
    let work = cluster.dir().join("service");
    std::fs::create_dir(&work)?;
    let result = run(&args, &cluster.server_url(), &work).await;
    drop(cluster);
    result
}

/// Polls until the serving process answers `want` for the tenant's status.
async fn until(client: &reqwest::Client, url: &str, want: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = client
            .get(url)
            .header("host", "watched.localhost")
            .send()
            .await?
            .status()
            .as_u16();
        if status == want {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "still {status}, not {want}");
    }
}

async fn run(args: &Args, server: &str, work: &std::path::Path) -> anyhow::Result<()> {
    let mut config = bench::config(server, OWNER_DB, PREFIX, work)?;
    config.listen = "127.0.0.1:0".parse()?;
    config.backup_schedule_interval = Duration::ZERO;
    config.restore_test_interval = Duration::ZERO;
    config.metering_interval = Duration::ZERO;
    let app = Application::build(config.clone(), Arc::new(Faults::default())).await?;
    let url = format!("http://127.0.0.1:{}/api/v1/status", app.port());
    let services = app.services().clone();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { app.run(shutdown).await }
    });
    // The other process: its own services on the same owner database.
    let other = Services::init(config, Arc::new(Faults::default())).await?;
    let created = services
        .provisioner
        .tenant_create(
            &CreateTenant {
                slug: "watched".into(),
                name: "Watched".into(),
                ..CreateTenant::default()
            },
            &Actor::cli(),
        )
        .await?;
    let tenant = services.provisioner.drive(created.id).await?;
    let client = reqwest::Client::new();
    until(&client, &url, 200).await?;

    let mut seen = Vec::with_capacity(args.changes);
    for i in 0..args.changes {
        let (suspend, want) = (i % 2 == 0, if i % 2 == 0 { 403 } else { 200 });
        if suspend {
            other
                .provisioner
                .tenant_suspend(tenant.id, &Actor::cli())
                .await?;
        } else {
            other
                .provisioner
                .tenant_resume(tenant.id, &Actor::cli())
                .await?;
        }
        let committed = Instant::now();
        until(&client, &url, want).await?;
        seen.push(committed.elapsed());
    }
    seen.sort();
    let at = |q: f64| seen[((seen.len() as f64 - 1.0) * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let version: String = bench::connect(&format!("{server}/postgres"))
        .await?
        .query_one("SHOW server_version", &[])
        .await?
        .get(0);
    let report = format!(
        "replica propagation benchmark: PostgreSQL {version} (scratch cluster, scram-sha-256 over TCP), 2 cores\n\
         {} changes (suspend / resume) made by a second process; time from its commit to the serving process's first answer that follows it:\n\
         \x20 with the change feed (LISTEN/NOTIFY)   p50 {:.1} ms   p95 {:.1} ms   max {:.1} ms\n\
         \x20 without it (the domain cache's TTL)    up to {} s\n",
        seen.len(),
        ms(at(0.5)),
        ms(at(0.95)),
        ms(at(1.0)),
        control_plane::gateway::KNOWN_TTL.as_secs()
    );
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report)?;
    }
    shutdown.cancel();
    let _ = serving.await;
    Ok(())
}
