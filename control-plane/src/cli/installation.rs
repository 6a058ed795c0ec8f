//! `control-plane installation ...`: what this installation recorded at its first start
//! (master key check values, storage root), and moving the storage root on purpose.

use clap::Subcommand;
use serde_json::json;

use super::output::emit;
use crate::config::Config;
use crate::services::OwnerDb;
use crate::{Error, Result, installation};

#[derive(Debug, Subcommand)]
pub enum InstallationCommand {
    /// Show the recorded key versions and storage root next to this process's.
    Show {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Record the configured CP_STORAGE_ROOT as the installation's, after the tenants'
    /// trees were moved there. Refused while a living tenant's tree is missing there.
    AdoptStorageRoot {
        /// Record it even if some tenants' trees are missing.
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(cmd: InstallationCommand, config: Config) -> Result<()> {
    // Deliberately not `Services::init`: that refuses to start on the very mismatch this
    // command exists to look at or to settle.
    let owner = OwnerDb::new(config.owner_endpoint()?)?;
    let conn = owner.conn().await?;
    let root = installation::absolute(&config.storage_root);
    match cmd {
        InstallationCommand::Show { json } => {
            let (recorded_root, recorded_source, versions) =
                installation::recorded(&**conn).await?;
            let ours = installation::describe_key_source(&config.master_key);
            let value = json!({
                "recorded": {
                    "storage_root": recorded_root,
                    "master_key_source": recorded_source,
                    "master_key_versions": versions,
                },
                "this_process": {
                    "storage_root": root.display().to_string(),
                    "master_key_source": ours,
                },
            });
            emit(json, &value, || {
                format!(
                    "recorded storage root:   {}\nthis process's root:     {}\nrecorded key source:     {}\nthis process's key:      {}\nrecorded key versions:   {:?}",
                    recorded_root.as_deref().unwrap_or("(none yet)"),
                    root.display(),
                    recorded_source.as_deref().unwrap_or("(none yet)"),
                    ours,
                    versions
                )
            });
            Ok(())
        }
        InstallationCommand::AdoptStorageRoot { force } => {
            let tenants = owner::tenants::tenant_list(
                &**conn,
                &owner::tenants::TenantFilter {
                    limit: i64::MAX,
                    ..Default::default()
                },
            )
            .await?;
            let missing: Vec<String> = tenants
                .iter()
                .filter(|t| t.status == owner::tenants::TenantStatus::Active)
                .filter(|t| !root.join("tenants").join(&t.slug).is_dir())
                .map(|t| t.slug.clone())
                .collect();
            if !missing.is_empty() && !force {
                return Err(Error::Config(format!(
                    "{} holds no tree for {} active tenant(s) ({}); move the trees there first, or pass --force",
                    root.display(),
                    missing.len(),
                    missing
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            installation::adopt_storage_root(&**conn, &root).await?;
            crate::audit::record(
                &**conn,
                &crate::audit::Actor::cli(),
                "installation.adopt_storage_root",
                crate::audit::Target("installation", "storage_root"),
                json!({ "storage_root": root.display().to_string(), "missing": missing }),
            )
            .await?;
            println!("recorded {} as the storage root", root.display());
            Ok(())
        }
    }
}
