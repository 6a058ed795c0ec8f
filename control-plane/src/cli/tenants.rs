//! `control-plane tenants ...`: the same operations as the owner API, run against the
//! owner database directly. `create` and `delete` wait until the work is done.

use std::sync::Arc;

use clap::{Args, Subcommand};
use futures::StreamExt;
use owner::tenants::{Tenant, TenantFilter, TenantStatus};
use serde_json::json;

use super::find;
use super::output::emit;
use crate::audit::Actor;
use crate::config::Config;
use crate::provisioning::{CreateTenant, Faults};
use crate::views::TenantInfo;
use crate::wiring::Services;
use crate::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant and wait until it is active.
    Create(CreateArgs),
    /// List tenants.
    List {
        /// Only tenants in this status.
        #[arg(long, value_parser = ["provisioning", "active", "suspended", "deleting", "deleted"])]
        status: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant, with its domains.
    Show {
        /// The tenant, by slug or id.
        slug: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Refuse service to a tenant, keeping everything.
    Suspend {
        /// The tenant, by slug or id.
        slug: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Serve a suspended tenant again.
    Resume {
        /// The tenant, by slug or id.
        slug: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put a tenant in maintenance (`on`) or end it (`off`). While on, its requests are
    /// answered 503 tenant_maintenance with Retry-After (only writes, with
    /// --allow-reads). `on` again changes the note and reads. Refused while a restore or
    /// a migration holds the tenant's maintenance.
    Maintenance {
        /// The tenant, by slug or id.
        slug: String,
        /// on: enter maintenance; off: end it.
        #[arg(value_enum)]
        state: Switch,
        /// A note for other operators (shown on the tenant page).
        #[arg(long)]
        note: Option<String>,
        /// Keep serving reads (GET, HEAD).
        #[arg(long)]
        allow_reads: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move a tenant's database to another server (see `servers list`), and wait until
    /// it is served from there. Its writes pause meanwhile (reads are served); the copy
    /// is checked table by table before the switch, and the old database is dropped
    /// after CP_MOVE_GRACE_SECS.
    Move {
        /// The tenant, by slug or id.
        slug: String,
        /// The server to move it to.
        #[arg(long, value_name = "SERVER")]
        to: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a tenant's database, roles and files, and wait until done. Asks to type
    /// the slug first (or give --yes).
    Delete {
        /// The tenant, by slug or id.
        slug: String,
        /// Do not ask to type the slug.
        #[arg(long)]
        yes: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Give tenants' database roles new passwords, online: requests keep being served,
    /// sessions already open keep working, new logins use the new passwords (whose
    /// verifiers have CP_TENANT_SCRAM_ITERATIONS rounds). Audited.
    RotateCredentials {
        /// Tenants to rotate, by slug or id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        slugs: Vec<String>,
        /// Every active and suspended tenant.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the index of tenant users' emails ("which tenants am I in?") from the
    /// tenant databases: the named tenants, or every active one.
    ReindexUsers {
        /// Tenants by slug; none: all.
        slugs: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Back up a tenant's database and files now, and wait; `--json` prints the backup
    /// record with its id.
    Backup {
        /// The tenant, by slug or id.
        slug: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into its tenant (checked against its checksums first; the
    /// tenant is in maintenance meanwhile), or with --into into a new tenant.
    Restore {
        /// The tenant, by slug or id.
        slug: String,
        /// The backup's id (see `backups list SLUG`).
        #[arg(long)]
        backup: String,
        /// Create tenant NEW_SLUG from the backup instead (same plan, its own id, roles,
        /// database, files and domain).
        #[arg(long, value_name = "NEW_SLUG")]
        into: Option<String>,
        /// Do not ask to type the slug.
        #[arg(long)]
        yes: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write one archive of everything the tenant owns (database dump, each table as
    /// JSON lines, files, manifest), for handing over.
    Export {
        /// The tenant, by slug or id.
        slug: String,
        /// The archive file to write (.tar).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run one reconciler pass: finish every tenant stuck part-way (what `serve` does
    /// every few seconds).
    Reconcile {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The new tenant's slug (lowercase letters, digits, '-'): its subdomain and its
    /// handle on the command line.
    #[arg(long)]
    slug: String,
    /// Its display name.
    #[arg(long)]
    name: String,
    /// Plan code (default: free).
    #[arg(long)]
    plan: Option<String>,
    /// Extra domain (repeatable); `<slug>.<base domain>` is always added.
    #[arg(long = "domain")]
    domains: Vec<String>,
    /// The tenant's first user, an admin. Without --admin-password-stdin a one-time
    /// password is printed once and must be changed at first login.
    #[arg(long)]
    admin_email: Option<String>,
    /// Read the admin's password from the first line of stdin.
    #[arg(long, requires = "admin_email")]
    admin_password_stdin: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(cmd: TenantsCommand, config: Config) -> Result<()> {
    let services = Services::init(config, Arc::new(Faults::default())).await?;
    let provisioner = &services.provisioner;
    let actor = Actor::cli();
    match cmd {
        TenantsCommand::Create(args) => {
            let admin_password = if args.admin_email.is_some() && args.admin_password_stdin {
                let mut line = String::new();
                std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut line).map_err(
                    |e| Error::BadRequest(format!("cannot read the password from stdin: {e}")),
                )?;
                Some(secrecy::SecretString::from(
                    line.trim_end_matches(['\r', '\n']).to_string(),
                ))
            } else {
                None
            };
            let request = CreateTenant {
                slug: args.slug,
                name: args.name,
                plan: args.plan,
                domains: args.domains,
                admin_email: args.admin_email,
                admin_password,
            };
            // In the foreground: the command answers with the settled tenant.
            let created = provisioner.record_create(&request, &actor).await?;
            let tenant = provisioner.drive(created.tenant.id).await?;
            if let Some(password) = created.one_time_password {
                // Printed once, to stderr, so `--json` output stays clean for scripts.
                eprintln!(
                    "one-time password for the admin (shown once; must be changed at first login): {}",
                    secrecy::ExposeSecret::expose_secret(&password)
                );
            }
            show(&services, tenant, args.json).await
        }
        TenantsCommand::List { status, json } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(
                    TenantStatus::parse(s)
                        .ok_or_else(|| Error::BadRequest(format!("unknown status {s:?}")))?,
                ),
            };
            let conn = services.owner.conn().await?;
            let tenants = owner::tenants::tenant_list(
                &**conn,
                &TenantFilter {
                    status,
                    include_deleted: status == Some(TenantStatus::Deleted),
                    limit: 10_000,
                    offset: 0,
                },
            )
            .await?;
            let infos: Vec<TenantInfo> = tenants.iter().map(TenantInfo::from).collect();
            emit(json, &json!(infos), || {
                let mut out = format!(
                    "{:<40} {:<14} {:<10} {:>7}  {}",
                    "SLUG", "STATUS", "PLAN", "SCHEMA", "ID"
                );
                for t in &tenants {
                    out.push_str(&format!(
                        "\n{:<40} {:<14} {:<10} {:>7}  {}",
                        t.slug,
                        t.status.as_str(),
                        t.plan_code,
                        t.schema_version
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "-".into()),
                        t.id
                    ));
                }
                out
            });
            Ok(())
        }
        TenantsCommand::Show { slug, json } => {
            let tenant = find::tenant(&services, &slug).await?;
            show(&services, tenant, json).await
        }
        TenantsCommand::Suspend { slug, json } => {
            let tenant = find::tenant(&services, &slug).await?;
            let tenant = provisioner.tenant_suspend(tenant.id, &actor).await?;
            show(&services, tenant, json).await
        }
        TenantsCommand::Resume { slug, json } => {
            let tenant = find::tenant(&services, &slug).await?;
            let tenant = provisioner.tenant_resume(tenant.id, &actor).await?;
            show(&services, tenant, json).await
        }
        TenantsCommand::Maintenance {
            slug,
            state,
            note,
            allow_reads,
            json,
        } => {
            let tenant = find::tenant(&services, &slug).await?;
            let tenant = match state {
                Switch::On => {
                    provisioner
                        .maintenance_on(tenant.id, note.as_deref(), allow_reads, &actor)
                        .await?
                }
                Switch::Off if note.is_some() || allow_reads => {
                    return Err(Error::BadRequest(
                        "--note and --allow-reads go with `on`".into(),
                    ));
                }
                Switch::Off => provisioner.maintenance_off(tenant.id, &actor).await?,
            };
            show(&services, tenant, json).await
        }
        TenantsCommand::Move { slug, to, json } => {
            let tenant = find::tenant(&services, &slug).await?;
            let moved = services.backups.move_tenant(&tenant, &to, &actor).await?;
            emit(json, &json!(moved), || {
                format!(
                    "moved {} from {} to {}: writes paused {} ms, {} tables checked; the old database is dropped after {} s",
                    tenant.slug,
                    moved.from_server,
                    moved.to_server,
                    moved.write_pause_ms.unwrap_or_default(),
                    moved
                        .tables
                        .as_ref()
                        .and_then(|t| t.as_object())
                        .map_or(0, |t| t.len()),
                    services.config.move_grace.as_secs()
                )
            });
            Ok(())
        }
        TenantsCommand::RotateCredentials { slugs, all, json } => {
            rotate_credentials(&services, slugs, all, json, &actor).await
        }
        TenantsCommand::ReindexUsers { slugs, json } => {
            let (done, failed) = services.finder.reindex(&slugs).await?;
            let value = serde_json::json!({ "reindexed": done, "failed": failed });
            super::output::emit(json, &value, || {
                if failed.is_empty() {
                    format!("reindexed the users of {done} tenants")
                } else {
                    format!(
                        "reindexed the users of {done} tenants; could not read {}",
                        failed.join(", ")
                    )
                }
            });
            if failed.is_empty() {
                Ok(())
            } else {
                Err(crate::Error::Internal(format!(
                    "{} tenants could not be reindexed",
                    failed.len()
                )))
            }
        }
        TenantsCommand::Backup { slug, json } => {
            super::backups::backup(&services, &slug, json, &actor).await
        }
        TenantsCommand::Restore {
            slug,
            backup,
            into,
            yes,
            json,
        } => {
            super::backups::restore(
                &services,
                &slug,
                &backup,
                into.as_deref(),
                yes,
                json,
                &actor,
            )
            .await
        }
        TenantsCommand::Export { slug, out, json } => {
            super::backups::export(&services, &slug, out, json, &actor).await
        }
        TenantsCommand::Reconcile { json } => {
            let report = provisioner.reconcile_once().await?;
            emit(json, &json!(report), || {
                format!(
                    "found {} unfinished, settled {}, skipped {} (busy elsewhere), failed {}",
                    report.found, report.settled, report.skipped, report.failed
                )
            });
            if report.failed > 0 {
                return Err(Error::Internal(format!(
                    "{} tenant(s) failed; see `tenants list` and the log",
                    report.failed
                )));
            }
            Ok(())
        }
        TenantsCommand::Delete { slug, yes, json } => {
            let tenant = find::tenant(&services, &slug).await?;
            if !yes {
                super::confirm::by_slug(
                    &tenant.slug,
                    &format!(
                        "This drops the database, roles and files of {} ({}). It cannot be undone.",
                        tenant.slug, tenant.name
                    ),
                    "deleting a tenant drops its data",
                )?;
            }
            provisioner.tenant_delete(tenant.id, &actor).await?;
            let tenant = provisioner.drive(tenant.id).await?;
            show(&services, tenant, json).await
        }
    }
}

/// Tenants rotated at once with `--all`: each costs two logins' worth of server work.
const ROTATE_CONCURRENCY: usize = 4;

async fn rotate_credentials(
    services: &Services,
    slugs: Vec<String>,
    all: bool,
    json: bool,
    actor: &Actor,
) -> Result<()> {
    let tenants = if all {
        let conn = services.owner.conn().await?;
        let mut tenants = Vec::new();
        for status in [TenantStatus::Active, TenantStatus::Suspended] {
            let filter = TenantFilter {
                status: Some(status),
                limit: i64::MAX,
                ..TenantFilter::default()
            };
            tenants.extend(owner::tenants::tenant_list(&**conn, &filter).await?);
        }
        tenants
    } else {
        let mut tenants = Vec::new();
        for slug in &slugs {
            tenants.push(find::tenant(services, slug).await?);
        }
        tenants
    };
    let results: Vec<(String, Result<Tenant>)> = futures::stream::iter(tenants)
        .map(|t| async move {
            let result = services.provisioner.rotate_credentials(t.id, actor).await;
            (t.slug, result)
        })
        .buffered(ROTATE_CONCURRENCY)
        .collect()
        .await;
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let report: Vec<serde_json::Value> = results
        .iter()
        .map(|(slug, r)| match r {
            Ok(t) => json!({ "slug": slug, "rotated": true, "key_version": t.secret_key_version }),
            Err(e) => json!({ "slug": slug, "rotated": false, "error": e.to_string() }),
        })
        .collect();
    emit(json, &json!(report), || {
        let mut lines: Vec<String> = results
            .iter()
            .map(|(slug, r)| match r {
                Ok(_) => format!("{slug}: rotated"),
                Err(e) => format!("{slug}: FAILED: {e}"),
            })
            .collect();
        lines.push(format!(
            "{} rotated, {failed} failed",
            results.len() - failed
        ));
        lines.join("\n")
    });
    if failed > 0 {
        return Err(Error::Internal(format!(
            "{failed} tenant(s) failed; run the command again for them"
        )));
    }
    Ok(())
}

async fn show(services: &Services, tenant: Tenant, json: bool) -> Result<()> {
    let conn = services.owner.conn().await?;
    let domains = owner::domains::domain_list_for_tenant(&**conn, tenant.id).await?;
    let mut value = json!(TenantInfo::from(&tenant));
    value["domains"] = json!(domains);
    emit(json, &value, || {
        format!(
            "tenant   {}\nslug     {}\nname     {}\nstatus   {} (step {})\nplan     {}\ndatabase {}\nschema   {}\ndomains  {}{}{}",
            tenant.id,
            tenant.slug,
            tenant.name,
            tenant.status.as_str(),
            tenant.provisioning_step.as_str(),
            tenant.plan_code,
            tenant.db_name,
            tenant
                .schema_version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            domains
                .iter()
                .map(|d| d.domain.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            tenant
                .maintenance
                .as_ref()
                .map(|m| format!(
                    "\nmaintenance {}{}{}",
                    m.by.as_str(),
                    if m.allow_reads { ", reads served" } else { "" },
                    m.note
                        .as_ref()
                        .map(|n| format!(": {n}"))
                        .unwrap_or_default()
                ))
                .unwrap_or_default(),
            tenant
                .last_error
                .as_ref()
                .map(|e| format!("\nerror    {e}"))
                .unwrap_or_default(),
        )
    });
    Ok(())
}
