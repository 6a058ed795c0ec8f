//! What the benchmark binaries share: connections, a configuration for a throwaway
//! installation, and dropping everything an installation made.

use std::path::Path;

use control_plane::Config;
use control_plane::config::MasterKeySource;
use futures::StreamExt;
use secrecy::SecretString;
use tokio_postgres::NoTls;

/// A fixed master key: benchmark installations are thrown away after each run.
const BENCH_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The configuration of a benchmark installation: its own owner database and name prefix
/// on the server at `pg` (a URL without a database), storage under `dir`.
pub fn config(pg: &str, owner_db: &str, prefix: &str, dir: &Path) -> anyhow::Result<Config> {
    let mut config = Config::defaults()?;
    config.database_url = SecretString::from(format!("{pg}/{owner_db}"));
    config.admin_database_url = SecretString::from(format!("{pg}/postgres"));
    config.storage_root = dir.join("storage");
    config.data_dir = dir.to_path_buf();
    config.master_key = MasterKeySource::Inline(SecretString::from(BENCH_KEY.to_string()));
    config.tenant_db_prefix = prefix.to_string();
    Ok(config)
}

/// Drops every database and role whose name starts with `prefix` (`concurrency` drops at a
/// time: each DROP DATABASE waits for a checkpoint).
pub async fn drop_prefixed(
    admin: &tokio_postgres::Client,
    prefix: &str,
    concurrency: usize,
) -> anyhow::Result<()> {
    let pattern = format!("{}%", prefix.replace('_', "\\_"));
    let dbs: Vec<String> = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            &[&pattern],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let dropped: Vec<Result<(), tokio_postgres::Error>> = futures::stream::iter(dbs)
        .map(|name| async move {
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    dropped.into_iter().collect::<Result<Vec<()>, _>>()?;
    for row in admin
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE $1",
            &[&pattern],
        )
        .await?
    {
        let name: String = row.get(0);
        admin
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
            .await?;
    }
    Ok(())
}

/// Provisions tenants with these slugs through the real provisioner, four at a time, and
/// says how long it took.
pub async fn provision_many(
    provisioner: &control_plane::provisioning::Provisioner,
    slugs: &[String],
) -> anyhow::Result<()> {
    use control_plane::audit::Actor;
    use control_plane::provisioning::CreateTenant;
    let started = std::time::Instant::now();
    let made: Vec<anyhow::Result<()>> = futures::stream::iter(slugs)
        .map(|slug| async move {
            let request = CreateTenant {
                slug: slug.clone(),
                name: slug.clone(),
                ..CreateTenant::default()
            };
            let tenant = provisioner.tenant_create(&request, &Actor::cli()).await?;
            provisioner.drive(tenant.id).await?;
            Ok(())
        })
        .buffer_unordered(4)
        .collect()
        .await;
    made.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    eprintln!(
        "provisioned {} tenants in {:.1} s",
        slugs.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
