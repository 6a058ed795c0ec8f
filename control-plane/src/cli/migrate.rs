//! `control-plane migrate`: run the tenant migrations across the fleet, and
//! `control-plane migrate status`: where the fleet is.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use owner::tenants::TenantStatus;
use serde_json::json;

use super::output::emit;
use crate::config::Config;
use crate::fleet::{
    Canary, DEFAULT_CONCURRENCY, FailureBudget, FleetOptions, FleetRun, Progress, fleet_status,
};
use crate::provisioning::Faults;
use crate::wiring::Services;
use crate::{Error, Result};
use owner::migration_runs::RunStatus;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MigrateArgs {
    #[command(subcommand)]
    command: Option<MigrateCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum MigrateCommand {
    /// Versions across the fleet, tenants behind, and (with --verify) drift.
    Status {
        /// Connect to every tenant database and compare it with the source and the record.
        #[arg(long)]
        verify: bool,
        /// Extra tenant migrations on top of the built-in ones.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Extra tenant migrations (V<n>__<name>.sql) on top of the built-in ones.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Tenants migrated at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Halt (letting in-flight tenants finish) once more than N tenants, or a ratio
    /// such as 0.05 or 5%, have failed.
    #[arg(long, value_parser = parse_budget)]
    max_failures: Option<FailureBudget>,
    /// Migrate these first and stop if any fails: a number of tenants, or slugs
    /// separated by commas.
    #[arg(long)]
    canary: Option<String>,
    /// Only this tenant (repeatable).
    #[arg(long = "tenant")]
    tenants: Vec<String>,
    /// Only tenants on this plan.
    #[arg(long)]
    plan: Option<String>,
    /// Only tenants in this status (repeatable; default: active and suspended).
    #[arg(long = "status", value_parser = ["provisioning", "active", "suspended", "deleting"])]
    statuses: Vec<String>,
    /// List, for each tenant, the migrations that would apply; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Back each tenant up right before migrating it (a tenant whose backup fails is not
    /// migrated); `tenants restore SLUG --backup ID` brings one back.
    #[arg(long, conflicts_with = "dry_run")]
    backup: bool,
    /// Put each tenant in maintenance while it is migrated (and backed up): its requests
    /// are answered 503 tenant_maintenance meanwhile instead of racing the change.
    #[arg(long, conflicts_with = "dry_run")]
    maintenance: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_budget(s: &str) -> std::result::Result<FailureBudget, String> {
    FailureBudget::parse(s)
        .ok_or_else(|| format!("{s:?} is neither a count nor a ratio like 0.05 or 5%"))
}

pub async fn run(args: MigrateArgs, mut config: Config) -> Result<()> {
    match args.command {
        Some(MigrateCommand::Status { verify, dir, json }) => {
            if dir.is_some() {
                config.tenant_migrations_dir = dir;
            }
            let services = Services::init(config, Arc::new(Faults::default())).await?;
            let status = fleet_status(&services.fleet, verify).await?;
            emit(json, &json!(status), || {
                let mut out = format!(
                    "target version {} ({})\nmigrations: {}\nversions:",
                    status.target_version,
                    status.source,
                    status.migrations.join(", ")
                );
                for (version, n) in &status.histogram {
                    out.push_str(&format!(
                        "\n  {:>6}  {n}",
                        version
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "none".into())
                    ));
                }
                out.push_str(&format!("\nbehind: {}", status.behind.len()));
                for (slug, v) in status.behind.iter().take(50) {
                    out.push_str(&format!(
                        "\n  {slug} at {}",
                        v.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
                    ));
                }
                if status.verified {
                    out.push_str(&format!("\ndrift: {}", status.drift.len()));
                    for d in &status.drift {
                        out.push_str(&format!(
                            "\n  {}: {}",
                            d.slug,
                            serde_json::to_string(&d.drift).unwrap_or_default()
                        ));
                        if let Some(e) = &d.error {
                            out.push_str(&format!(" error: {e}"));
                        }
                    }
                }
                out
            });
            if status.verified && !status.drift.is_empty() {
                return Err(Error::Internal(format!(
                    "{} tenant(s) drifted",
                    status.drift.len()
                )));
            }
            Ok(())
        }
        None => run_fleet(args.run, config).await,
    }
}

async fn run_fleet(args: RunArgs, mut config: Config) -> Result<()> {
    if args.dir.is_some() {
        config.tenant_migrations_dir = args.dir.clone();
    }
    let canary = args.canary.as_deref().map_or(Canary::None, Canary::parse);
    let statuses = if args.statuses.is_empty() {
        crate::fleet::FleetOptions::default().statuses
    } else {
        args.statuses
            .iter()
            .map(|s| {
                TenantStatus::parse(s)
                    .ok_or_else(|| Error::BadRequest(format!("unknown status {s:?}")))
            })
            .collect::<Result<Vec<_>>>()?
    };
    let options = FleetOptions {
        concurrency: args.concurrency,
        max_failures: args.max_failures,
        canary,
        tenants: args.tenants,
        plan: args.plan,
        statuses,
        dry_run: args.dry_run,
        backup: args.backup,
        maintenance: args.maintenance,
        crash_after: None,
    };
    let services = Services::init(config, Arc::new(Faults::default())).await?;
    let run = FleetRun::start(services.fleet.clone(), options, &crate::audit::cli_label()).await?;
    let run_id = run.run().id;
    let run_source = Arc::clone(run.source());
    let total = run.target_count() as u64;
    let interactive = std::io::stderr().is_terminal() && !args.json;
    let bar = if interactive {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg} (eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    } else {
        eprintln!(
            "run {run_id}: {total} tenant(s) to {}",
            if args.dry_run { "inspect" } else { "migrate" }
        );
        None
    };
    let summary = run
        .execute(|p: &Progress| match &bar {
            Some(bar) => {
                bar.set_position(p.done as u64);
                bar.set_message(format!("ok {} failed {}", p.succeeded, p.failed));
            }
            None => {
                if let Some((slug, ok)) = &p.last {
                    eprintln!(
                        "[{}/{}] {slug} {}",
                        p.done,
                        p.total,
                        if *ok { "ok" } else { "FAILED" }
                    );
                }
            }
        })
        .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let details = if args.dry_run || summary.failed > 0 {
        let conn = services.owner.conn().await?;
        owner::migration_runs::run_tenants_list(&**conn, run_id, 100_000).await?
    } else {
        Vec::new()
    };
    // A dry run shows the SQL a real run would execute, once per migration.
    let pending_sql: Vec<serde_json::Value> = if args.dry_run {
        let source = run_source.as_ref();
        match details.iter().filter_map(|t| t.from_version).min() {
            Some(lowest) => source
                .after(lowest)
                .map(|(v, name, sql)| json!({"version": v, "name": name, "sql": sql}))
                .collect(),
            None => Vec::new(),
        }
    } else {
        Vec::new()
    };
    emit(
        args.json,
        &json!({ "summary": summary, "tenants": details, "pending_migrations": pending_sql }),
        || {
            let mut out = if args.dry_run {
                format!(
                    "dry run {}: target version {}, {} tenant(s) would be migrated, {} could not be inspected, {} not attempted, {} already up to date, {} ms; nothing was changed",
                    summary.run_id,
                    summary.target_version,
                    summary.would_apply,
                    summary.failed,
                    summary.not_attempted,
                    summary.up_to_date,
                    summary.elapsed_ms
                )
            } else {
                format!(
                    "run {} {}: target version {}, {} migrated, {} failed, {} not attempted, {} already up to date, {} ms",
                    summary.run_id,
                    summary.status,
                    summary.target_version,
                    summary.succeeded,
                    summary.failed,
                    summary.not_attempted,
                    summary.up_to_date,
                    summary.elapsed_ms
                )
            };
            if let Some(reason) = &summary.halt_reason {
                out.push_str(&format!("\nhalted: {reason}"));
            }
            for t in &details {
                match (&t.error, &t.pending) {
                    (Some(e), _) => out.push_str(&format!("\n  {} FAILED: {e}", t.slug)),
                    (None, Some(p)) if args.dry_run => out.push_str(&format!(
                        "\n  {} at {}: would apply {p}",
                        t.slug,
                        t.from_version.unwrap_or(0)
                    )),
                    _ => {}
                }
            }
            for m in &pending_sql {
                out.push_str(&format!(
                    "\n\n-- V{}__{}\n{}",
                    m["version"],
                    m["name"].as_str().unwrap_or_default(),
                    m["sql"].as_str().unwrap_or_default().trim_end()
                ));
            }
            out
        },
    );
    if summary.failed > 0 || matches!(summary.status, RunStatus::Halted | RunStatus::Failed) {
        return Err(Error::Internal(format!(
            "fleet migration {}: {} tenant(s) failed",
            summary.status, summary.failed
        )));
    }
    Ok(())
}
