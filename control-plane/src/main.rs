//! `control-plane`: parse the command line, set up logging, dispatch.

use std::io::Write;

use clap::Parser;
use control_plane::cli::Cli;
use control_plane::{Config, telemetry};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => {
            // stderr may be a closed pipe; failing to say so must not panic.
            let _ = writeln!(std::io::stderr(), "error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let quiet = if matches!(cli.command, control_plane::cli::Command::Serve) {
        telemetry::DEFAULT_FILTER
    } else {
        telemetry::QUIET_FILTER
    };
    telemetry::init(
        config.log_format,
        telemetry::default_filter(quiet, cli.verbose),
    );
    for name in &config.unknown_variables {
        tracing::warn!(
            "{name} is set but names no setting (a typo?); it is ignored. `control-plane config` lists the settings in force"
        );
    }
    match cli.run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
