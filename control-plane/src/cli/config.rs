//! `control-plane config`: the configuration in force, checked, secrets masked. Reads no
//! database, so it answers even when PostgreSQL is down.

use clap::Args;

use crate::Result;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Print JSON (`{"CP_LISTEN": "...", ...}`).
    #[arg(long)]
    json: bool,
}

pub fn run(args: ConfigArgs, config: &Config) -> Result<()> {
    let settings = config.effective();
    let json: serde_json::Map<String, serde_json::Value> = settings
        .iter()
        .map(|(k, v)| ((*k).to_string(), serde_json::Value::String(v.clone())))
        .collect();
    super::output::emit(args.json, &serde_json::Value::Object(json), || {
        let width = settings.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        settings
            .iter()
            .map(|(k, v)| format!("{k:width$}  {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}
