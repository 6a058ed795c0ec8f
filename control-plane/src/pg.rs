//! PostgreSQL plumbing shared by the service and the CLI: connections, the owner pool,
//! identifier and literal quoting, and server hardening.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{Client, NoTls};

use crate::{Error, Result};

pub const OWNER_POOL_SIZE: usize = 16;
pub const OWNER_POOL_WAIT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens one connection and drives it on a background task. Dropping the client ends
/// the session (and releases its session-level advisory locks).
pub async fn connect(config: &tokio_postgres::Config) -> Result<Client> {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed with an error");
        }
    });
    Ok(client)
}

/// The owner-database pool. Connections are verified on recycle, so one killed by a
/// server restart is replaced instead of failing the next request; `get` waits at most
/// [`OWNER_POOL_WAIT`].
pub fn owner_pool(config: &tokio_postgres::Config) -> Result<Pool> {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        },
    );
    Pool::builder(manager)
        .max_size(OWNER_POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(OWNER_POOL_WAIT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| Error::Internal(format!("cannot build the owner pool: {e}")))
}

/// `"name"` with inner quotes doubled. Names we build are plain already; quoting is the
/// second fence, not the first.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with inner quotes doubled, for the few statements (COMMENT, PASSWORD) that
/// take no parameters.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Creates the owner database if it does not exist yet.
pub async fn ensure_database_exists(admin: &tokio_postgres::Config, db: &str) -> Result<()> {
    let client = connect(admin).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await?
        .is_some();
    if !exists {
        match client
            .batch_execute(&format!("CREATE DATABASE {}", ident(db)))
            .await
        {
            Ok(()) => tracing::info!(database = db, "created the owner database"),
            // Another process created it between our check and our create.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Takes `CONNECT` away from `PUBLIC` on the databases tenant roles must never reach:
/// `postgres`, `template1` and the owner database. Superusers are unaffected.
pub async fn harden_server(admin: &tokio_postgres::Config, owner_db: &str) -> Result<()> {
    let client = connect(admin).await?;
    for db in ["postgres", "template1", owner_db] {
        let public_can_connect = "SELECT has_database_privilege('public', $1, 'CONNECT')";
        let open: bool = client.query_one(public_can_connect, &[&db]).await?.get(0);
        if !open {
            continue;
        }
        let revoke = client
            .batch_execute(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
                ident(db)
            ))
            .await;
        if let Err(e) = revoke {
            // Two processes starting together race on the same catalog row
            // ("tuple concurrently updated"); what matters is the outcome.
            let open: bool = client.query_one(public_can_connect, &[&db]).await?.get(0);
            if open {
                return Err(e.into());
            }
        }
    }
    Ok(())
}
