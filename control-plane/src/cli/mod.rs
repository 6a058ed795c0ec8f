//! The command line: one binary, one module per subcommand.

mod backups;
mod completions;
mod config;
mod confirm;
mod demo;
mod find;
mod healthcheck;
mod installation;
mod keys;
mod migrate;
mod operators;
mod output;
mod serve;
mod servers;
mod tenants;

use clap::{Parser, Subcommand};

use crate::Result;
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "control-plane",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("CP_GIT_COMMIT"), ")"),
    about = "A database-per-tenant control plane"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log more: commands other than `serve` log warnings only; -v adds progress, -vv
    /// debugging (RUST_LOG, when set, decides instead).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service and the provisioning reconciler.
    Serve,
    /// Create, inspect, suspend, resume and delete tenants (works on the owner database
    /// directly; no running service needed).
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// List backups, and run the backup job's passes by hand (`tenants backup`,
    /// `tenants restore` and `tenants export` work on one tenant).
    #[command(subcommand)]
    Backups(backups::BackupsCommand),
    /// Run the tenant migrations across the fleet (`migrate status` shows where it is).
    Migrate(migrate::MigrateArgs),
    /// The PostgreSQL servers tenants live on: add one, list them, drain or disable one.
    #[command(subcommand)]
    Servers(servers::ServersCommand),
    /// Manage operator accounts.
    #[command(subcommand)]
    Operators(operators::OperatorsCommand),
    /// What this installation recorded at its first start (key check values, storage
    /// root), and moving the storage root on purpose.
    #[command(subcommand)]
    Installation(installation::InstallationCommand),
    /// The master key: what each version seals, rotating to a new one, sealing
    /// everything again under it (online), retiring an old one.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Print the configuration in force (secrets masked) after checking it; touches no
    /// database.
    Config(config::ConfigArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to print the script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Ask the service running on this host (CP_LISTEN) whether it is ready; exit 0 if
    /// so. For container health checks.
    Healthcheck,
    /// Dev only: create a demo operator and three demo tenants with sample patients and
    /// appointments, and print how to log in. Safe to run again.
    Demo,
}

impl Cli {
    pub async fn run(self, config: Config) -> Result<()> {
        match self.command {
            Command::Serve => serve::run(config).await,
            Command::Tenants(cmd) => tenants::run(cmd, config).await,
            Command::Backups(cmd) => backups::run(cmd, config).await,
            Command::Operators(cmd) => operators::run(cmd, config).await,
            Command::Servers(cmd) => servers::run(cmd, config).await,
            Command::Migrate(args) => migrate::run(args, config).await,
            Command::Demo => demo::run(config).await,
            Command::Healthcheck => healthcheck::run(&config).await,
            Command::Completions { shell } => {
                completions::run(shell, <Cli as clap::CommandFactory>::command());
                Ok(())
            }
            Command::Config(args) => config::run(args, &config),
            Command::Installation(cmd) => installation::run(cmd, config).await,
            Command::Keys(cmd) => keys::run(cmd, config).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every command says what it does and every flag and argument what it means, so
    /// `--help` is the manual.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && path.contains(' ') && path != " control-plane" {
                missing.push(format!("{path}: no about"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}: no help"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &path, missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
