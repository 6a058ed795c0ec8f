//! `control-plane servers ...`: the database servers tenants live on.

use std::io::BufRead;
use std::sync::Arc;

use clap::Subcommand;
use owner::servers::{ServerChange, ServerStatus};
use secrecy::SecretString;
use serde_json::json;

use super::output::emit;
use crate::audit::Actor;
use crate::config::Config;
use crate::provisioning::ServerReport;
use crate::provisioning::{AddServer, Faults};
use crate::wiring::Services;
use crate::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum ServersCommand {
    /// Register a PostgreSQL server for new tenants. It is checked first (it answers; its
    /// role is a superuser or has CREATEROLE and CREATEDB), hardened and given the
    /// template database. Its admin URL is stored sealed under the master key.
    Add {
        /// Its name (lowercase letters, digits, '-').
        name: String,
        /// The admin connection URL, e.g. postgres://admin:secret@db2:5432/postgres.
        /// Prefer --url-stdin: a URL on the command line is visible to other users.
        #[arg(
            long,
            required_unless_present = "url_stdin",
            conflicts_with = "url_stdin"
        )]
        url: Option<String>,
        /// Read the admin connection URL from the first line of stdin.
        #[arg(long)]
        url_stdin: bool,
        /// Most tenants it may hold (default: no limit).
        #[arg(long)]
        max_tenants: Option<i32>,
        /// Tenant connections it may hold (default: derived from its max_connections).
        #[arg(long)]
        connection_budget: Option<i32>,
        /// Its server group: only plans pinned to the group place tenants here.
        #[arg(long)]
        group: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every server: status, tenants, databases, connections, disk used, reachable.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One server.
    Show {
        /// The server, by name (see `servers list`).
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Take no new tenants on this server and move every tenant off it (two at a time,
    /// each where a new tenant would go; see `tenants move`). A tenant whose move fails
    /// stays, and the command exits non-zero.
    Drain {
        /// The server, by name (see `servers list`).
        name: String,
        /// Only stop placing new tenants here; move nobody.
        #[arg(long)]
        keep_tenants: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Take no new tenants and skip the server in fleet-wide passes (template upgrades,
    /// hardening). Its tenants stay recorded; their requests fail while it is down.
    Disable {
        /// The server, by name (see `servers list`).
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Take new tenants again.
    Activate {
        /// The server, by name (see `servers list`).
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Change a server's limits or group ("none" removes one).
    Set {
        /// The server, by name (see `servers list`).
        name: String,
        /// Most tenants it may hold, or "none" for no limit.
        #[arg(long, value_parser = parse_limit)]
        max_tenants: Option<Limit>,
        /// Tenant connections it may hold, or "none" to derive it from max_connections.
        #[arg(long, value_parser = parse_limit)]
        connection_budget: Option<Limit>,
        /// Its server group, or "none".
        #[arg(long)]
        group: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn status_change(status: ServerStatus) -> ServerChange {
    ServerChange {
        status: Some(status),
        ..ServerChange::default()
    }
}

/// A limit, or none.
#[derive(Debug, Clone, Copy)]
pub struct Limit(Option<i32>);

fn parse_limit(text: &str) -> std::result::Result<Limit, String> {
    if text == "none" {
        return Ok(Limit(None));
    }
    match text.parse::<i32>() {
        Ok(n) if n >= 1 => Ok(Limit(Some(n))),
        _ => Err(format!(
            "{text:?}: a whole number of at least 1, or \"none\""
        )),
    }
}

pub async fn run(cmd: ServersCommand, config: Config) -> Result<()> {
    let services = Services::init(config, Arc::new(Faults::default())).await?;
    let servers = &services.servers;
    let actor = Actor::cli();
    let (name, status, json) = match cmd {
        ServersCommand::Add {
            name,
            url,
            url_stdin: _,
            max_tenants,
            connection_budget,
            group,
            json,
        } => {
            let url = match url {
                Some(url) => url,
                None => read_url()?,
            };
            servers
                .add(
                    AddServer {
                        id: name.clone(),
                        url: SecretString::from(url),
                        max_tenants,
                        connection_budget,
                        server_group: group,
                    },
                    &actor,
                )
                .await?;
            (name, None, json)
        }
        ServersCommand::List { json } => {
            let reports = servers.report().await?;
            emit(json, &json!({ "servers": reports }), || {
                let mut out = format!(
                    "{:<16} {:<9} {:<22} {:>8} {:>9} {:>12} {:>10}  {}",
                    "NAME",
                    "STATUS",
                    "ADDRESS",
                    "TENANTS",
                    "DATABASES",
                    "CONNECTIONS",
                    "DISK",
                    "REACHABLE"
                );
                for r in &reports {
                    out.push('\n');
                    out.push_str(&line(r));
                }
                out
            });
            return Ok(());
        }
        ServersCommand::Show { name, json } => (name, None, json),
        ServersCommand::Drain {
            name,
            keep_tenants: false,
            json,
        } => {
            servers
                .update(&name, &status_change(ServerStatus::Draining), &actor)
                .await
                .map_err(|e| not_found_names(e, &name))?;
            let drained = services.backups.drain(&name, &actor).await?;
            emit(json, &json!(drained), || {
                let mut out = format!(
                    "{name}: {} tenant(s) moved, {} failed, {} skipped (being provisioned or deleted)",
                    drained.moved.len(),
                    drained.failed.len(),
                    drained.skipped.len()
                );
                for (slug, to) in &drained.moved {
                    out.push_str(&format!("\n  moved  {slug} -> {to}"));
                }
                for (slug, why) in &drained.failed {
                    out.push_str(&format!("\n  failed {slug}: {why}"));
                }
                out
            });
            if drained.failed.is_empty() {
                return Ok(());
            }
            return Err(Error::Internal(format!(
                "{} tenant(s) could not be moved off {name}",
                drained.failed.len()
            )));
        }
        ServersCommand::Drain {
            name,
            keep_tenants: true,
            json,
        } => (name, Some(ServerStatus::Draining), json),
        ServersCommand::Disable { name, json } => (name, Some(ServerStatus::Disabled), json),
        ServersCommand::Activate { name, json } => (name, Some(ServerStatus::Active), json),
        ServersCommand::Set {
            name,
            max_tenants,
            connection_budget,
            group,
            json,
        } => {
            if max_tenants.is_none() && connection_budget.is_none() && group.is_none() {
                return Err(Error::BadRequest(
                    "nothing to set: give --max-tenants, --connection-budget or --group".into(),
                ));
            }
            let change = ServerChange {
                status: None,
                max_tenants: max_tenants.map(|l| l.0),
                connection_budget: connection_budget.map(|l| l.0),
                server_group: group.map(|g| (g != "none").then_some(g)),
            };
            servers
                .update(&name, &change, &actor)
                .await
                .map_err(|e| not_found_names(e, &name))?;
            (name, None, json)
        }
    };
    if let Some(status) = status {
        servers
            .update(&name, &status_change(status), &actor)
            .await
            .map_err(|e| not_found_names(e, &name))?;
    }
    let report = servers
        .show(&name)
        .await
        .map_err(|e| not_found_names(e, &name))?;
    emit(json, &json!(report), || {
        let s = &report.load.server;
        let limit = |n: Option<i32>| n.map_or_else(|| "none".to_string(), |n| n.to_string());
        let live = report.live.as_ref();
        format!(
            "server      {}\nstatus      {}\naddress     {}:{}\ntenants     {} (max {})\nbudget      {}\nreachable   {}\nversion     {}\ndatabases   {}\nconnections {}\ndisk        {}",
            s.id,
            s.status,
            s.host,
            s.port,
            report.load.tenants,
            limit(s.max_tenants),
            s.connection_budget
                .map_or_else(|| "auto".to_string(), |n| n.to_string()),
            if report.reachable { "yes" } else { "no" },
            live.map_or("-".into(), |l| l.version.clone()),
            live.map_or("-".into(), |l| l.databases.to_string()),
            live.map_or("-".into(), |l| format!(
                "{} of max_connections {}",
                l.connections, l.max_connections
            )),
            live.map_or("-".into(), |l| crate::views::human_bytes(l.database_bytes)),
        )
    });
    Ok(())
}

fn line(r: &ServerReport) -> String {
    let s = &r.load.server;
    let live = r.live.as_ref();
    format!(
        "{:<16} {:<9} {:<22} {:>8} {:>9} {:>12} {:>10}  {}",
        s.id,
        s.status.as_str(),
        format!("{}:{}", s.host, s.port),
        r.load.tenants,
        live.map_or("-".into(), |l| l.databases.to_string()),
        live.map_or("-".into(), |l| l.connections.to_string()),
        live.map_or("-".into(), |l| crate::views::human_bytes(l.database_bytes)),
        if r.reachable { "yes" } else { "no" },
    )
}

/// "not found" says which server.
fn not_found_names(e: Error, name: &str) -> Error {
    match e {
        Error::Owner(owner::Error::NotFound) => Error::BadRequest(format!(
            "no database server named {name:?} (see `servers list`)"
        )),
        e => e,
    }
}

fn read_url() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::BadRequest(format!("cannot read the URL from stdin: {e}")))?;
    let url = line.trim_end_matches(['\r', '\n']).to_string();
    if url.is_empty() {
        return Err(Error::BadRequest("--url-stdin: stdin gave no URL".into()));
    }
    Ok(url)
}
