//! `database_servers`: the registry of PostgreSQL servers that hold tenant databases.
//! The first, [`DEFAULT_SERVER`], is CP_ADMIN_DATABASE_URL's; the others keep their
//! admin connection URL here, sealed by the caller.

use serde::Serialize;
use tokio_postgres::{GenericClient, Row};

use crate::{Error, Result};

/// The id of the server configured by `CP_ADMIN_DATABASE_URL`.
pub const DEFAULT_SERVER: &str = "default";

text_status! {
    /// Whether new tenants may be placed on a server.
    ServerStatus {
        /// Takes new tenants while it has room.
        Active = "active",
        /// Keeps its tenants, takes no new ones.
        Draining = "draining",
        /// Takes none and is skipped by fleet-wide passes (its tenants stay recorded).
        Disabled = "disabled",
    }
}

/// A server as recorded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DatabaseServer {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub status: ServerStatus,
    pub max_tenants: Option<i32>,
    pub connection_budget: Option<i32>,
    /// The plans pinned to this group place their tenants here (and only those).
    pub server_group: Option<String>,
    /// The sealed admin URL and the key version it is sealed under (none for the
    /// default server).
    #[serde(skip)]
    pub admin_url: Option<(i32, Vec<u8>)>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

const COLUMNS: &str = "id, host, port, status, max_tenants, connection_budget, server_group, \
    secret_key_version, admin_url_enc, created_at, updated_at";

impl TryFrom<&Row> for DatabaseServer {
    type Error = Error;

    fn try_from(row: &Row) -> Result<Self> {
        let status: String = row.try_get("status")?;
        let port: i32 = row.try_get("port")?;
        let version: Option<i32> = row.try_get("secret_key_version")?;
        let sealed: Option<Vec<u8>> = row.try_get("admin_url_enc")?;
        Ok(Self {
            id: row.try_get("id")?,
            host: row.try_get("host")?,
            port: u16::try_from(port).map_err(|_| Error::Invalid {
                field: "database_servers.port",
                reason: port.to_string(),
            })?,
            status: ServerStatus::parse(&status).ok_or_else(|| Error::Invalid {
                field: "database_servers.status",
                reason: status.clone(),
            })?,
            max_tenants: row.try_get("max_tenants")?,
            connection_budget: row.try_get("connection_budget")?,
            server_group: row.try_get("server_group")?,
            admin_url: version.zip(sealed),
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// Creates or refreshes the default server's row (its address may change between
/// restarts).
pub async fn server_upsert(
    client: &impl GenericClient,
    id: &str,
    host: &str,
    port: u16,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO database_servers (id, host, port) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, port = EXCLUDED.port, updated_at = now() \
             WHERE database_servers.host <> EXCLUDED.host OR database_servers.port <> EXCLUDED.port",
            &[&id, &host, &i32::from(port)],
        )
        .await?;
    Ok(())
}

/// What it takes to register a server.
pub struct NewServer<'a> {
    pub id: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub key_version: i32,
    pub admin_url_enc: &'a [u8],
    pub max_tenants: Option<i32>,
    pub connection_budget: Option<i32>,
    pub server_group: Option<&'a str>,
}

/// Registers a server; an id taken is [`Error::Conflict`].
pub async fn server_insert(
    client: &impl GenericClient,
    new: &NewServer<'_>,
) -> Result<DatabaseServer> {
    let row = client
        .query_opt(
            &format!(
                "INSERT INTO database_servers (id, host, port, secret_key_version, admin_url_enc, \
                 max_tenants, connection_budget, server_group) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}"
            ),
            &[
                &new.id,
                &new.host,
                &i32::from(new.port),
                &new.key_version,
                &new.admin_url_enc,
                &new.max_tenants,
                &new.connection_budget,
                &new.server_group,
            ],
        )
        .await?
        .ok_or(Error::Conflict)?;
    DatabaseServer::try_from(&row)
}

pub async fn server_fetch(client: &impl GenericClient, id: &str) -> Result<DatabaseServer> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM database_servers WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or(Error::NotFound)?;
    DatabaseServer::try_from(&row)
}

/// A server with how many living (not deleted) tenants it holds.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServerLoad {
    #[serde(flatten)]
    pub server: DatabaseServer,
    pub tenants: i64,
}

/// Every server, the default first, with its tenant count.
pub async fn server_list(client: &impl GenericClient) -> Result<Vec<ServerLoad>> {
    let rows = client
        .query(
            &format!(
                "SELECT {}, (SELECT count(*) FROM tenants t WHERE t.server_id = s.id \
                 AND t.status <> 'deleted') AS tenants FROM database_servers s \
                 ORDER BY s.id <> 'default', s.id",
                COLUMNS
                    .split(", ")
                    .map(|c| format!("s.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ServerLoad {
                server: DatabaseServer::try_from(r)?,
                tenants: r.try_get("tenants")?,
            })
        })
        .collect()
}

/// What may change on a registered server: `None` leaves a value as it is, `Some(None)`
/// removes a limit or the group.
#[derive(Debug, Clone, Default)]
pub struct ServerChange {
    pub status: Option<ServerStatus>,
    pub max_tenants: Option<Option<i32>>,
    pub connection_budget: Option<Option<i32>>,
    pub server_group: Option<Option<String>>,
}

/// Sets a server's status, limits and group.
pub async fn server_update(
    client: &impl GenericClient,
    id: &str,
    change: &ServerChange,
) -> Result<DatabaseServer> {
    let ServerChange {
        status,
        max_tenants,
        connection_budget,
        server_group,
    } = change;
    let row = client
        .query_opt(
            &format!(
                "UPDATE database_servers SET \
                 status = COALESCE($2, status), \
                 max_tenants = CASE WHEN $3 THEN $4 ELSE max_tenants END, \
                 connection_budget = CASE WHEN $5 THEN $6 ELSE connection_budget END, \
                 server_group = CASE WHEN $7 THEN $8 ELSE server_group END, \
                 updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &status.map(ServerStatus::as_str),
                &max_tenants.is_some(),
                &max_tenants.flatten(),
                &connection_budget.is_some(),
                &connection_budget.flatten(),
                &server_group.is_some(),
                &server_group.clone().flatten(),
            ],
        )
        .await?
        .ok_or(Error::NotFound)?;
    DatabaseServer::try_from(&row)
}

/// A server group's name: the shape of a server's.
pub fn valid_group(group: &str) -> bool {
    let mut chars = group.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && group.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Where a new tenant goes: among the active servers of `group` (or without a group)
/// with room, the one that holds the fewest living tenants for its capacity (servers
/// without a limit compare by count alone), the default first on a tie. Its row stays
/// locked until the transaction ends, so concurrent creations count each other. `None`
/// when no such server has room.
pub async fn server_place(
    client: &impl GenericClient,
    group: Option<&str>,
) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "WITH load AS ( \
                 SELECT s.id, s.max_tenants, \
                        (SELECT count(*) FROM tenants t WHERE t.server_id = s.id \
                         AND t.status <> 'deleted') AS tenants \
                 FROM database_servers s WHERE s.status = 'active' \
                 AND s.server_group IS NOT DISTINCT FROM $1) \
             SELECT id FROM load \
             WHERE max_tenants IS NULL OR tenants < max_tenants \
             ORDER BY CASE WHEN max_tenants IS NULL THEN tenants::float8 \
                           ELSE tenants::float8 / max_tenants END, \
                      id <> 'default', id \
             LIMIT 1",
            &[&group],
        )
        .await?;
    let Some(id) = row.map(|r| r.get::<_, String>(0)) else {
        return Ok(None);
    };
    client
        .execute(
            "SELECT 1 FROM database_servers WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    Ok(Some(id))
}
