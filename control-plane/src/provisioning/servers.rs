//! The database servers tenants live on: the registry (`database_servers`), where a new
//! tenant is placed, and a [`Cluster`] per server for the work done there. The default
//! server is CP_ADMIN_DATABASE_URL's, so an installation with one server works as before.
//!
//! `servers add` checks the server before it is recorded: it must answer, its role must
//! be able to create roles and databases, and it gets the same hardening and template
//! database as the default. A server's URL never changes once registered; its status
//! (active, draining, disabled) and limits do.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use owner::servers::{
    DEFAULT_SERVER, DatabaseServer, NewServer, ServerChange, ServerLoad, ServerStatus,
};
use owner::tenants::Tenant;
use secrecy::SecretString;
use serde_json::json;
use tokio_postgres::GenericClient;

use super::Cluster;
use crate::audit::{self, Actor, Target};
use crate::services::{MigrationSource, OwnerDb, ServerDirectory, owner_db};
use crate::{Error, Result, pg};

/// What every server's [`Cluster`] shares.
pub struct ClusterSettings {
    pub prefix: String,
    pub installation_id: String,
    pub source: Arc<MigrationSource>,
    pub runtime_connection_limit: i32,
    pub scram_iterations: u32,
}

pub struct Servers {
    owner: OwnerDb,
    directory: Arc<ServerDirectory>,
    settings: ClusterSettings,
    clusters: RwLock<HashMap<String, Arc<Cluster>>>,
}

/// A server to register.
pub struct AddServer {
    pub id: String,
    pub url: SecretString,
    pub max_tenants: Option<i32>,
    pub connection_budget: Option<i32>,
    /// Only plans pinned to this group place tenants here.
    pub server_group: Option<String>,
}

/// A server's name: what `database_servers.id` accepts.
fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && id.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn group_ok(group: Option<&str>) -> Result<()> {
    match group {
        Some(g) if !owner::servers::valid_group(g) => Err(Error::BadRequest(
            "server group: a lowercase letter, then lowercase letters, digits or '-', at most 40"
                .into(),
        )),
        _ => Ok(()),
    }
}

fn positive(what: &str, n: Option<i32>) -> Result<()> {
    match n {
        Some(n) if n < 1 => Err(Error::BadRequest(format!("{what} must be at least 1"))),
        _ => Ok(()),
    }
}

impl Servers {
    pub fn new(owner: OwnerDb, directory: Arc<ServerDirectory>, settings: ClusterSettings) -> Self {
        Self {
            owner,
            directory,
            settings,
            clusters: RwLock::new(HashMap::new()),
        }
    }

    /// The prefix of every database and role the control plane makes, on every server.
    pub fn prefix(&self) -> &str {
        &self.settings.prefix
    }

    fn build(&self, id: &str, endpoint: pg::Endpoint) -> Arc<Cluster> {
        Arc::new(Cluster::new(
            endpoint,
            id.to_string(),
            self.settings.prefix.clone(),
            self.settings.installation_id.clone(),
            Arc::clone(&self.settings.source),
            self.settings.runtime_connection_limit,
            self.settings.scram_iterations,
        ))
    }

    /// Server `id`'s cluster (read from the registry on first use).
    pub async fn cluster(&self, id: &str) -> Result<Arc<Cluster>> {
        if let Some(known) = self
            .clusters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(Arc::clone(known));
        }
        let endpoint = self.directory.endpoint(id).await?;
        let mut clusters = self.clusters.write().unwrap_or_else(|p| p.into_inner());
        let cluster = clusters
            .entry(id.to_string())
            .or_insert_with(|| self.build(id, endpoint));
        Ok(Arc::clone(cluster))
    }

    /// The cluster of the server `tenant` lives on.
    pub async fn of(&self, tenant: &Tenant) -> Result<Arc<Cluster>> {
        self.cluster(&tenant.server_id).await
    }

    /// The default server's cluster.
    pub async fn default_cluster(&self) -> Result<Arc<Cluster>> {
        self.cluster(DEFAULT_SERVER).await
    }

    /// Every server not disabled, for fleet-wide passes (template upgrades, hardening).
    pub async fn in_service(&self) -> Result<Vec<Arc<Cluster>>> {
        let servers = {
            let conn = self.owner.conn().await?;
            owner::servers::server_list(&**conn).await?
        };
        let mut out = Vec::new();
        for load in servers {
            if load.server.status != ServerStatus::Disabled {
                out.push(self.cluster(&load.server.id).await?);
            }
        }
        Ok(out)
    }

    /// Where a new tenant of a plan pinned to `group` (or of no group) goes (see
    /// `owner::servers::server_place`), inside the transaction that records it.
    pub async fn place(&self, client: &impl GenericClient, group: Option<&str>) -> Result<String> {
        owner::servers::server_place(client, group)
            .await?
            .ok_or_else(|| {
                let which = group.map_or_else(
                    || "no active database server outside the server groups".to_string(),
                    |g| format!("no active database server of group {g}"),
                );
                Error::Conflict(
                    "no_server_capacity",
                    format!(
                        "{which} has room for a new tenant: add a server \
                         (`control-plane servers add`) or raise a server's max tenants"
                    ),
                )
            })
    }

    /// Every server with its tenant count.
    pub async fn list(&self) -> Result<Vec<ServerLoad>> {
        let conn = self.owner.conn().await?;
        Ok(owner::servers::server_list(&**conn).await?)
    }

    /// Every server as recorded and as it answers now (a server that does not answer
    /// within a few seconds is shown unreachable; the others are not held up).
    pub async fn report(&self) -> Result<Vec<ServerReport>> {
        let servers = self.list().await?;
        let reports = servers.into_iter().map(|load| async move {
            let live = match self.cluster(&load.server.id).await {
                Ok(cluster) => tokio::time::timeout(PROBE_TIMEOUT, probe(&cluster))
                    .await
                    .unwrap_or_else(|_| Err(Error::Internal("timed out".into()))),
                Err(e) => Err(e),
            };
            ServerReport {
                load,
                reachable: live.is_ok(),
                live: live
                    .inspect_err(|e| tracing::debug!(error = %e, "database server probe failed"))
                    .ok(),
            }
        });
        Ok(futures::future::join_all(reports).await)
    }

    /// One server's report; an unknown name is `NotFound`.
    pub async fn show(&self, id: &str) -> Result<ServerReport> {
        self.report()
            .await?
            .into_iter()
            .find(|r| r.load.server.id == id)
            .ok_or_else(|| owner::Error::NotFound.into())
    }

    /// Registers a server once it is checked (it answers, its role can create roles and
    /// databases) and prepared (hardened, template built). Audited.
    pub async fn add(&self, req: AddServer, actor: &Actor) -> Result<DatabaseServer> {
        if !valid_id(&req.id) {
            return Err(Error::BadRequest(
                "server name: a lowercase letter, then lowercase letters, digits or '-', at most 40"
                    .into(),
            ));
        }
        positive("max tenants", req.max_tenants)?;
        positive("connection budget", req.connection_budget)?;
        group_ok(req.server_group.as_deref())?;
        let endpoint = self.directory.parse(&req.id, &req.url)?;
        {
            let conn = self.owner.conn().await?;
            match owner::servers::server_fetch(&**conn, &req.id).await {
                Ok(_) => {
                    return Err(Error::Conflict(
                        "server_exists",
                        format!("a database server named {} is registered already", req.id),
                    ));
                }
                Err(owner::Error::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        check_admin(&endpoint, &req.id).await?;
        pg::harden_server(&endpoint, None).await?;
        let cluster = self.build(&req.id, endpoint.clone());
        cluster.ensure_template().await?;
        let (host, port) = pg::server_address(endpoint.config());
        let (key_version, sealed) = self.directory.seal(&req.id, &req.url)?;
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        let server = owner::servers::server_insert(
            &tx,
            &NewServer {
                id: &req.id,
                host: &host,
                port,
                key_version,
                admin_url_enc: &sealed,
                max_tenants: req.max_tenants,
                connection_budget: req.connection_budget,
                server_group: req.server_group.as_deref(),
            },
        )
        .await
        .map_err(|e| match e {
            owner::Error::Conflict => Error::Conflict(
                "server_exists",
                format!("a database server named {} is registered already", req.id),
            ),
            e => e.into(),
        })?;
        audit::record(
            &tx,
            actor,
            "server.add",
            Target("server", &req.id),
            json!({ "host": host, "port": port, "max_tenants": req.max_tenants,
                    "connection_budget": req.connection_budget, "server_group": req.server_group }),
        )
        .await?;
        owner_db::commit(tx).await?;
        self.clusters
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(req.id.clone(), cluster);
        tracing::info!(server = %req.id, %host, port, "database server added");
        Ok(server)
    }

    /// Changes a server's status, limits or group. Audited.
    pub async fn update(
        &self,
        id: &str,
        change: &ServerChange,
        actor: &Actor,
    ) -> Result<DatabaseServer> {
        positive("max tenants", change.max_tenants.flatten())?;
        positive("connection budget", change.connection_budget.flatten())?;
        group_ok(change.server_group.clone().flatten().as_deref())?;
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        let before = owner::servers::server_fetch(&tx, id).await?;
        let server = owner::servers::server_update(&tx, id, change).await?;
        audit::record(
            &tx,
            actor,
            "server.update",
            Target("server", id),
            json!({
                "status": { "from": before.status, "to": server.status },
                "max_tenants": { "from": before.max_tenants, "to": server.max_tenants },
                "connection_budget": { "from": before.connection_budget, "to": server.connection_budget },
                "server_group": { "from": before.server_group, "to": server.server_group },
            }),
        )
        .await?;
        owner_db::commit(tx).await?;
        tracing::info!(server = %id, status = %server.status, "database server updated");
        Ok(server)
    }
}

/// How long a server gets to answer for a report.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A server as recorded, and what it says of itself when it answers.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ServerReport {
    #[serde(flatten)]
    pub load: ServerLoad,
    pub reachable: bool,
    /// `None` when it did not answer.
    #[serde(flatten)]
    pub live: Option<ServerFacts>,
}

/// What a server says of the databases the control plane keeps there. Its fields are
/// absent from a report when the server did not answer, hence not required.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ServerFacts {
    #[schema(required = false)]
    pub version: String,
    /// Databases carrying this installation's prefix (tenants, template, scratch).
    #[schema(required = false)]
    pub databases: i64,
    #[schema(required = false)]
    pub database_bytes: i64,
    /// Sessions open in those databases now.
    #[schema(required = false)]
    pub connections: i64,
    #[schema(required = false)]
    pub max_connections: i64,
}

async fn probe(cluster: &Cluster) -> Result<ServerFacts> {
    let client = pg::connect(cluster.admin_endpoint()).await?;
    let pattern = format!("{}%", cluster.prefix().replace('_', "\\_"));
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), count(d.oid),              COALESCE(sum(pg_database_size(d.oid)), 0)::bigint,              COALESCE(sum(s.numbackends), 0)::bigint,              current_setting('max_connections')::bigint              FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid              WHERE d.datname LIKE $1",
            &[&pattern],
        )
        .await?;
    Ok(ServerFacts {
        version: row.get(0),
        databases: row.get(1),
        database_bytes: row.get(2),
        connections: row.get(3),
        max_connections: row.get(4),
    })
}

/// A server may hold tenants if its role can create roles and databases.
async fn check_admin(endpoint: &pg::Endpoint, id: &str) -> Result<()> {
    let client = pg::connect(endpoint)
        .await
        .map_err(|e| Error::BadRequest(format!("database server {id} cannot be reached: {e}")))?;
    let row = client
        .query_one(
            "SELECT rolsuper OR (rolcreaterole AND rolcreatedb), \
             current_setting('server_version_num')::int FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let (able, version): (bool, i32) = (row.get(0), row.get(1));
    if !able {
        return Err(Error::BadRequest(format!(
            "database server {id}: its role must be a superuser or have CREATEROLE and CREATEDB"
        )));
    }
    if version < 140_000 {
        return Err(Error::BadRequest(format!(
            "database server {id}: PostgreSQL 14 or later is needed (it runs {version})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::valid_id;

    #[test]
    fn server_names() {
        for ok in ["default", "eu-1", "b", "pg15-east"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", "1eu", "EU", "eu_1", "eu 1", &"x".repeat(41)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
