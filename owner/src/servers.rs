//! `database_servers`: the PostgreSQL servers that hold tenant databases.

use tokio_postgres::GenericClient;

use crate::Result;

/// The id of the server configured by `CP_ADMIN_DATABASE_URL`.
pub const DEFAULT_SERVER: &str = "default";

#[derive(Debug, Clone)]
pub struct DatabaseServer {
    pub id: String,
    pub host: String,
    pub port: u16,
}

/// Creates or refreshes a server row (its address may change between restarts).
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
