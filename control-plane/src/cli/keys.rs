//! `control-plane keys ...`: which master key version seals what, and rotating it online
//! (see `crate::keys` for the procedure).

use clap::Subcommand;
use serde_json::json;

use super::output::emit;
use crate::Result;
use crate::audit::Actor;
use crate::config::Config;
use crate::provisioning::Faults;
use crate::wiring::Services;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Per key version: configured here, sealing, retired, and what it seals (tenant data
    /// keys, tenants' passwords without a data key, server URLs) with its share.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Seal new secrets with VERSION (default: the newest in CP_MASTER_KEY / the key file)
    /// from now on. Configure it on every replica first. Audited.
    Rotate {
        #[arg(long)]
        version: Option<i32>,
    },
    /// Seal every tenant's data key and every server URL again under the sealing
    /// version, online, one tenant per transaction (run it again to resume). Tenants
    /// without a data key get one. Audited.
    Rewrap {
        /// Stop after this many tenants (to spread the work over several runs).
        #[arg(long)]
        max_tenants: Option<usize>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Record VERSION as retired; refused while it seals anything or is the sealing
    /// version. Then it may leave the configuration. Audited.
    Retire { version: i32 },
}

pub async fn run(cmd: KeysCommand, config: Config) -> Result<()> {
    let services = Services::init(config, std::sync::Arc::new(Faults::default())).await?;
    let keys = &services.keys;
    match cmd {
        KeysCommand::Status { json } => {
            let status = keys.status().await?;
            let value = serde_json::to_value(&status).unwrap_or_default();
            emit(json, &value, || {
                let mut out = format!(
                    "sealing version: {}\ntenants still to rewrap: {}\n\nversion  configured  sealing  retired  data keys  passwords  servers  share\n",
                    status.sealing_version, status.tenants_to_rewrap
                );
                for v in &status.versions {
                    out.push_str(&format!(
                        "{:>7}  {:>10}  {:>7}  {:>7}  {:>9}  {:>9}  {:>7}  {:>4.0}%\n",
                        v.version,
                        yes(v.configured),
                        yes(v.sealing),
                        yes(v.retired),
                        v.usage.tenant_data_keys,
                        v.usage.tenant_passwords,
                        v.usage.servers,
                        v.share
                    ));
                }
                out.trim_end().to_string()
            });
            Ok(())
        }
        KeysCommand::Rotate { version } => {
            let version = keys.rotate(&Actor::cli(), version).await?;
            println!(
                "new secrets are sealed with master key version {version}; run `control-plane keys rewrap` to seal the existing ones with it"
            );
            Ok(())
        }
        KeysCommand::Rewrap { max_tenants, json } => {
            let progress = |done: usize, total: i64| {
                if !json {
                    eprintln!("rewrapped {done} of {total} tenants");
                }
            };
            let report = keys.rewrap(&Actor::cli(), max_tenants, &progress).await?;
            let value = json!(report);
            emit(json, &value, || {
                format!(
                    "version {}: {} tenant data keys sealed again, {} tenants given a data key, {} server URLs sealed again; {} tenants still to do",
                    report.version,
                    report.tenants_rewrapped,
                    report.tenants_given_data_keys,
                    report.servers_rewrapped,
                    report.remaining
                )
            });
            Ok(())
        }
        KeysCommand::Retire { version } => {
            keys.retire(&Actor::cli(), version).await?;
            println!(
                "master key version {version} is retired: remove it from CP_MASTER_KEY or the key file on every process"
            );
            Ok(())
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "" }
}
