//! Backups from the command line: `tenants backup|restore|export` and `backups ...`.
//! Every command waits until the work is done, and calls the same service functions as
//! the owner API and the dashboard.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use owner::backups::BackupKind;
use serde_json::json;
use uuid::Uuid;

use super::find;
use super::output::emit;
use crate::audit::Actor;
use crate::backups::BackupRequest as Request;
use crate::config::Config;
use crate::provisioning::Faults;
use crate::views::{BackupInfo, TenantInfo, human_bytes};
use crate::wiring::Services;
use crate::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum BackupsCommand {
    /// List backups, newest first: of one tenant, or of every tenant.
    List {
        /// A tenant's slug or id.
        slug: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run one pass of the backup schedule now: every tenant whose plan says a backup
    /// is due is backed up, then pruned by its plan's retention.
    RunSchedule {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Each plan's backup schedule and retention.
    Policies {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set a plan's backup schedule and retention.
    SetPolicy {
        /// The plan's code.
        plan: String,
        /// Seconds between scheduled backups (at least 300).
        #[arg(long)]
        every_secs: i32,
        /// Days whose newest scheduled backup is kept.
        #[arg(long)]
        keep_daily: i32,
        /// ISO weeks whose newest scheduled backup is kept.
        #[arg(long)]
        keep_weekly: i32,
    },
    /// Restore one random recent backup into a scratch database and check its row
    /// counts against its manifest (what `serve` does every day).
    TestRestore {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Finish what a stopped process left: backups marked failed (files removed),
    /// restores undone or finished (what `serve` does every few seconds).
    Recover {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: BackupsCommand, config: Config) -> Result<()> {
    let services = Services::init(config, Arc::new(Faults::default())).await?;
    let backups = &services.backups;
    match cmd {
        BackupsCommand::List { slug, limit, json } => {
            let tenant_id = match slug {
                Some(slug) => Some(find::tenant(&services, &slug).await?.id),
                None => None,
            };
            let list = backups.list(tenant_id, limit).await?;
            let infos: Vec<BackupInfo> = list.iter().map(BackupInfo::from).collect();
            emit(json, &json!(infos), || {
                let mut out = format!(
                    "{:<36}  {:<24} {:<13} {:<10} {:>12} {:>9}  {}",
                    "ID", "TENANT", "KIND", "STATUS", "SIZE", "SECONDS", "STARTED"
                );
                for b in &infos {
                    out.push_str(&format!(
                        "\n{:<36}  {:<24} {:<13} {:<10} {:>12} {:>9}  {}",
                        b.backup.id,
                        b.backup.tenant_slug,
                        b.backup.kind.as_str(),
                        b.backup.status.as_str(),
                        b.size_bytes.map(human_bytes).unwrap_or_else(|| "-".into()),
                        b.duration_ms
                            .map(|ms| format!("{:.1}", ms as f64 / 1000.0))
                            .unwrap_or_else(|| "-".into()),
                        b.backup.started_at.format("%Y-%m-%d %H:%M:%S"),
                    ));
                }
                out
            });
            Ok(())
        }
        BackupsCommand::RunSchedule { json } => {
            let report = backups.schedule_once().await?;
            emit(json, &json!(report), || {
                format!(
                    "{} due, {} taken, {} failed, {} pruned",
                    report.due, report.taken, report.failed, report.pruned
                )
            });
            if report.failed > 0 {
                return Err(Error::Internal(format!(
                    "{} backup(s) failed; see `backups list` and the log",
                    report.failed
                )));
            }
            Ok(())
        }
        BackupsCommand::Policies { json } => {
            let conn = services.owner.conn().await?;
            let policies = owner::backups::policy_list(&**conn).await?;
            let value: Vec<serde_json::Value> = policies
                .iter()
                .map(|(plan, p)| json!({ "plan": plan, "every_secs": p.every_secs, "keep_daily": p.keep_daily, "keep_weekly": p.keep_weekly }))
                .collect();
            emit(json, &json!(value), || {
                let mut out = format!(
                    "{:<16} {:>12} {:>11} {:>12}",
                    "PLAN", "EVERY (S)", "KEEP DAILY", "KEEP WEEKLY"
                );
                for (plan, p) in &policies {
                    out.push_str(&format!(
                        "\n{:<16} {:>12} {:>11} {:>12}",
                        plan, p.every_secs, p.keep_daily, p.keep_weekly
                    ));
                }
                out
            });
            Ok(())
        }
        BackupsCommand::SetPolicy {
            plan,
            every_secs,
            keep_daily,
            keep_weekly,
        } => {
            let mut conn = services.owner.conn().await?;
            let tx = crate::services::owner_db::begin(&mut conn).await?;
            owner::plans::plan_fetch(&tx, &plan).await?;
            let policy = owner::backups::Policy {
                every_secs,
                keep_daily,
                keep_weekly,
            };
            owner::backups::policy_set(&tx, &plan, &policy).await?;
            crate::audit::record(
                &tx,
                &Actor::cli(),
                "plan.backup_policy",
                crate::audit::Target("plan", &plan),
                json!(policy),
            )
            .await?;
            crate::services::owner_db::commit(tx).await?;
            println!(
                "plan {plan}: a backup every {every_secs} s, the newest of {keep_daily} days and {keep_weekly} weeks kept"
            );
            Ok(())
        }
        BackupsCommand::TestRestore { json } => {
            let test = backups.test_restore_once().await?;
            emit(json, &json!(test), || match &test {
                None => "no backup of the last 7 days to test".into(),
                Some(t) if t.ok => format!("backup {} restored: {}", t.backup_id, t.detail),
                Some(t) => format!(
                    "backup {} FAILED its restore test: {}",
                    t.backup_id, t.detail
                ),
            });
            match test {
                Some(t) if !t.ok => Err(Error::Internal("the restore test failed".into())),
                _ => Ok(()),
            }
        }
        BackupsCommand::Recover { json } => {
            let report = backups.recover_left().await?;
            emit(json, &json!(report), || {
                format!(
                    "{} backup(s) marked failed, {} restore(s) undone, {} restore(s) finished",
                    report.backups_failed, report.restores_undone, report.restores_finished
                )
            });
            Ok(())
        }
    }
}

/// `tenants backup SLUG`.
pub async fn backup(services: &Services, slug: &str, json: bool, actor: &Actor) -> Result<()> {
    let tenant = find::tenant(services, slug).await?;
    let backup = services
        .backups
        .take(
            &tenant,
            &Request {
                kind: BackupKind::Manual,
                actor,
                migration_run_id: None,
            },
        )
        .await?;
    let info = BackupInfo::from(&backup);
    emit(json, &json!(info), || {
        format!(
            "backup {} of {} taken: {} in {:.1} s, at {}",
            backup.id,
            tenant.slug,
            info.size_bytes.map(human_bytes).unwrap_or_default(),
            info.duration_ms.unwrap_or_default() as f64 / 1000.0,
            backup.location
        )
    });
    Ok(())
}

/// `tenants restore SLUG --backup ID [--into NEW_SLUG] [--yes]`.
pub async fn restore(
    services: &Services,
    slug: &str,
    backup: &str,
    into: Option<&str>,
    yes: bool,
    json: bool,
    actor: &Actor,
) -> Result<()> {
    let tenant = find::tenant(services, slug).await?;
    let backup_id = Uuid::parse_str(backup)
        .map_err(|_| Error::BadRequest(format!("{backup:?} is not a backup id")))?;
    // Checked before asking, so nobody confirms a restore that cannot happen.
    let checked = services.backups.check(&tenant, backup_id).await?;
    let found = &checked.backup;
    match into {
        None => {
            if !yes {
                super::confirm::by_slug(
                    &tenant.slug,
                    &format!(
                        "This replaces the data and files of {} with backup {} of {} (the tenant is in maintenance meanwhile).",
                        tenant.slug,
                        found.id,
                        found.started_at.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                    "a restore replaces the tenant's data",
                )?;
            }
            let restore = services.backups.restore(&tenant, &checked, actor).await?;
            emit(json, &json!(restore), || {
                format!("{} restored from backup {}", tenant.slug, backup_id)
            });
        }
        Some(new_slug) => {
            let (clone, restore) = services
                .backups
                .restore_as_new(&checked, new_slug, actor)
                .await?;
            let mut value = json!(TenantInfo::from(&clone));
            value["restore"] = json!(restore);
            emit(json, &value, || {
                format!(
                    "{} created from backup {} of {} (tenant {})",
                    clone.slug, backup_id, tenant.slug, clone.id
                )
            });
        }
    }
    Ok(())
}

/// `tenants export SLUG --out FILE`.
pub async fn export(
    services: &Services,
    slug: &str,
    out: PathBuf,
    json: bool,
    actor: &Actor,
) -> Result<()> {
    let tenant = find::tenant(services, slug).await?;
    let export = services.backups.export(&tenant, actor).await?;
    // A rename when both are on one file system, else a copy.
    if std::fs::rename(&export.path, &out).is_err() {
        std::fs::copy(&export.path, &out)
            .map_err(|e| Error::BadRequest(format!("cannot write {}: {e}", out.display())))?;
    }
    let value =
        json!({ "tenant": tenant.slug, "file": out.display().to_string(), "bytes": export.bytes });
    emit(json, &value, || {
        format!(
            "export of {} written to {} ({})",
            tenant.slug,
            out.display(),
            human_bytes(i64::try_from(export.bytes).unwrap_or(i64::MAX))
        )
    });
    Ok(())
}
